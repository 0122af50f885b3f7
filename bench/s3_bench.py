#!/usr/bin/env python3
"""S3 figures against upstream Litestream 0.3.13, on the same SeaweedFS, alternating A B A B.

  python3 bench/s3_bench.py [--reps 3] [--tx 5000] [--rate 1000] [--restore-mb 200] [--launcher PATH] [--write]

Starts SeaweedFS with scripts/start-seaweedfs.sh and puts Tests/Tools/faultproxy.py (counting mode) in front
of it, so both tools' requests are counted. Scenarios: replicate `--tx` one-row transactions at `--rate`/s
with sync-interval 1s (replicator CPU, requests per 1,000 tx); restore a `--restore-mb` database plus 3,000
transactions from S3 (bench/suite.py's restore scenario through the proxy: wall time; every restore checked with
integrity_check and a content hash). The helpers (build, install, writer, /proc readers) are bench/suite.py's.
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time, uuid
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402

ROOT = suite.ROOT
log = suite.log


def summarize(values):
    return statistics.median(values), min(values), max(values)


def start_proxy(endpoint, work):
    ctl, stats, portf = (os.path.join(work, n) for n in ("ctl", "stats.json", "port"))
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests", "Tools", "faultproxy.py"), "--upstream",
                          endpoint.removeprefix("http://"), "--control", ctl, "--stats", stats, "--port-file", portf,
                          "--max-seconds", "3600"], stdout=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(portf) and open(portf).read().strip():
            return p, int(open(portf).read()), stats
        time.sleep(0.05)
    raise RuntimeError("faultproxy did not start")


def requests(stats):
    with open(stats) as f:
        return json.load(f)["requests"]


def config(path, db, port, bucket, prefix):
    with open(path, "w") as f:
        f.write(f"dbs:\n  - path: {db}\n    replicas:\n      - url: s3://{bucket}.localhost:{port}/{prefix}\n"
                f"        sync-interval: 1s\n")


def replicate_run(name, exe, s3, port, stats, tx, rate):
    work = tempfile.mkdtemp(prefix=f"s3bench-{name}-")
    try:
        db, cfg = os.path.join(work, "db"), os.path.join(work, "litestream.yml")
        suite.make_events_db(db)
        config(cfg, db, port, s3["RK_S3_BUCKET"], f"bench-{name}-{uuid.uuid4().hex[:8]}")
        p = subprocess.Popen([exe, "replicate", "-config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)
        r0 = requests(stats)
        suite.write_events(db, tx, rate)
        time.sleep(2.0)
        st = suite.read_proc(p.pid)
        r1 = requests(stats)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        return {"cpu_per_1k": st["cpu"] / (tx / 1000), "requests_per_1k": (r1 - r0) / (tx / 1000),
                "rss_mb": st["VmHWM"] / 2**20}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def restore_run(name, exe, s3, port, big, work):
    """bench/suite.py's restore scenario (file and S3 replica, every restore verified), S3 through the proxy."""
    via_proxy = dict(s3, RK_S3_ENDPOINT=f"http://127.0.0.1:{port}")
    r = suite.restore_once(name, exe, work, big, 3000, via_proxy, s3["RK_S3_BUCKET"])
    return {"restore_s": r["s3_wall"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tx", type=int, default=5000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--restore-mb", type=int, default=200)
    ap.add_argument("--launcher", help="our launcher binary (default: build it as bench/suite.py does)")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv-bench"))
    a = ap.parse_args()
    launcher = os.path.abspath(a.launcher) if a.launcher else suite.build_ours()
    upstream = suite.install_upstream(a.venv)
    s3 = suite.start_s3()
    work = tempfile.mkdtemp(prefix="s3bench-")
    proxy = None
    try:
        proxy, port, stats = start_proxy(s3["RK_S3_ENDPOINT"], work)
        suite.s3_use(s3)
        impls = [("ours", launcher), ("upstream", upstream)]
        results = {n: {} for n, _ in impls}
        for rep in range(a.reps):
            for name, exe in impls:
                log(f"S3 replicate {name} rep {rep + 1}/{a.reps}")
                for k, v in replicate_run(name, exe, s3, port, stats, a.tx, a.rate).items():
                    results[name].setdefault(k, []).append(v)
        big = os.path.join(work, "big.db")
        log(f"building a {a.restore_mb} MB database")
        suite.build_big_db(big, a.restore_mb)
        for rep in range(a.reps):
            for name, exe in impls:
                log(f"S3 restore {name} rep {rep + 1}/{a.reps}")
                for k, v in restore_run(name, exe, s3, port, big, work).items():
                    results[name].setdefault(k, []).append(v)
    finally:
        if proxy:
            proxy.kill()
        suite.kill_all()
        os.kill(int(s3["RK_S3_PID"]), signal.SIGKILL)
        shutil.rmtree(s3["RK_S3_DIR"], ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    labels = [("cpu_per_1k", "replicator CPU s per 1,000 tx (S3)"), ("requests_per_1k", "S3 requests per 1,000 tx"),
              ("rss_mb", "peak RSS MB (S3)"), ("restore_s", f"restore wall time s from S3 ({a.restore_mb} MB + 3,000 tx)")]
    lines = ["| figure | ours median (min–max) | upstream 0.3.13 median (min–max) | ours/upstream |", "|---|---|---|---|"]
    for key, label in labels:
        o, u = summarize(results["ours"][key]), summarize(results["upstream"][key])
        lines.append(f"| {label} | {o[0]:.3f} ({o[1]:.3f}–{o[2]:.3f}) | {u[0]:.3f} ({u[1]:.3f}–{u[2]:.3f}) | {o[0] / u[0]:.2f} |")
    table = "\n".join(lines)
    print(table)
    if a.write:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(f"\n## S3 (SeaweedFS on loopback)\n\nCommand: `python3 bench/s3_bench.py --reps {a.reps} --tx {a.tx} "
                    f"--rate {a.rate} --restore-mb {a.restore_mb} --write`\n\n{table}\n")


if __name__ == "__main__":
    main()
