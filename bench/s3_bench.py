#!/usr/bin/env python3
"""S3 figures against upstream Litestream 0.3.13, on the same SeaweedFS, alternating A B A B.

  python3 bench/s3_bench.py [--reps 3] [--tx 5000] [--rate 1000] [--restore-mb 200] [--write]

Starts SeaweedFS with scripts/start-seaweedfs.sh and puts Tests/Tools/faultproxy.py (counting mode) in front
of it, so both tools' requests are counted. Scenarios: replicate `--tx` one-row transactions at `--rate`/s
with sync-interval 1s (replicator CPU, requests per 1,000 tx); restore a `--restore-mb` database plus 3,000
transactions from S3 (wall time; every restore checked with integrity_check and row count/sum).
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time, uuid
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROOT = bench.ROOT


def start_s3():
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "start-seaweedfs.sh")], check=True,
                         capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        k, v = line.removeprefix("export ").split("=", 1)
        env[k] = v.strip("'")
    return env


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


def replicate_run(name, exe, writer, s3, port, stats, tx, rate):
    work = tempfile.mkdtemp(prefix=f"s3bench-{name}-")
    try:
        db, cfg = os.path.join(work, "db"), os.path.join(work, "litestream.yml")
        bench.make_db(db)
        config(cfg, db, port, s3["RK_S3_BUCKET"], f"bench-{name}-{uuid.uuid4().hex[:8]}")
        p = subprocess.Popen([exe, "replicate", "-config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)
        r0 = requests(stats)
        subprocess.run([writer, db, "-rate", str(rate), "-count", str(tx)], check=True, stdout=subprocess.DEVNULL)
        time.sleep(2.0)
        cpu, hwm, _, _ = bench.proc_stats(p.pid)
        r1 = requests(stats)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        return {"cpu_per_1k": cpu / (tx / 1000), "requests_per_1k": (r1 - r0) / (tx / 1000), "rss_mb": hwm / 2**20}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def restore_run(name, exe, writer, s3, port, big):
    work = tempfile.mkdtemp(prefix=f"s3bench-restore-{name}-")
    try:
        db, cfg, out = os.path.join(work, "db"), os.path.join(work, "litestream.yml"), os.path.join(work, "out.db")
        shutil.copy(big, db)
        prefix = f"bench-restore-{name}-{uuid.uuid4().hex[:8]}"
        config(cfg, db, port, s3["RK_S3_BUCKET"], prefix)
        p = subprocess.Popen([exe, "replicate", "-config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3.0)
        subprocess.run([writer, db, "-rate", "3000", "-count", "3000"], check=True, stdout=subprocess.DEVNULL)
        time.sleep(3.0)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=300)
        url = f"s3://{s3['RK_S3_BUCKET']}.localhost:{port}/{prefix}"
        t0 = time.monotonic()
        r = subprocess.run([exe, "restore", "-o", out, url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{name} restore failed: {r.stderr[-500:]}")
        ok = subprocess.run(["sqlite3", out, "PRAGMA integrity_check"], capture_output=True, text=True).stdout.strip()
        q = "SELECT count(*), sum(id) FROM events"
        src = subprocess.run(["sqlite3", db, q], capture_output=True, text=True).stdout
        dst = subprocess.run(["sqlite3", out, q], capture_output=True, text=True).stdout
        if ok != "ok" or src != dst:
            raise RuntimeError(f"{name} S3 restore is wrong: integrity={ok} src={src} dst={dst}")
        return {"restore_s": wall}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tx", type=int, default=5000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--restore-mb", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv-bench"))
    a = ap.parse_args()
    launcher, writer = bench.build_ours()
    upstream = bench.install_upstream(a.venv)
    s3 = start_s3()
    work = tempfile.mkdtemp(prefix="s3bench-")
    proxy = None
    try:
        proxy, port, stats = start_proxy(s3["RK_S3_ENDPOINT"], work)
        os.environ["LITESTREAM_ACCESS_KEY_ID"] = s3["RK_S3_ACCESS_KEY_ID"]
        os.environ["LITESTREAM_SECRET_ACCESS_KEY"] = s3["RK_S3_SECRET_ACCESS_KEY"]
        os.environ["AWS_ACCESS_KEY_ID"] = s3["RK_S3_ACCESS_KEY_ID"]
        os.environ["AWS_SECRET_ACCESS_KEY"] = s3["RK_S3_SECRET_ACCESS_KEY"]
        impls = [("ours", launcher), ("upstream", upstream)]
        results = {n: {} for n, _ in impls}
        for rep in range(a.reps):
            for name, exe in impls:
                bench.log(f"S3 replicate {name} rep {rep + 1}/{a.reps}")
                for k, v in replicate_run(name, exe, writer, s3, port, stats, a.tx, a.rate).items():
                    results[name].setdefault(k, []).append(v)
        big = os.path.join(work, "big.db")
        bench.log(f"building a {a.restore_mb} MB database")
        bench.build_big_db(big, a.restore_mb)
        for rep in range(a.reps):
            for name, exe in impls:
                bench.log(f"S3 restore {name} rep {rep + 1}/{a.reps}")
                for k, v in restore_run(name, exe, writer, s3, port, big).items():
                    results[name].setdefault(k, []).append(v)
    finally:
        if proxy:
            proxy.kill()
        os.kill(int(s3["RK_S3_PID"]), signal.SIGKILL)
        shutil.rmtree(s3["RK_S3_DIR"], ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    labels = [("cpu_per_1k", "replicator CPU s per 1,000 tx (S3)"), ("requests_per_1k", "S3 requests per 1,000 tx"),
              ("rss_mb", "peak RSS MB (S3)"), ("restore_s", f"restore wall time s from S3 ({a.restore_mb} MB + 3,000 tx)")]
    lines = ["| figure | ours median (min–max) | upstream 0.3.13 median (min–max) | ours/upstream |", "|---|---|---|---|"]
    for key, label in labels:
        o, u = bench.summarize(results["ours"][key]), bench.summarize(results["upstream"][key])
        lines.append(f"| {label} | {o[0]:.3f} ({o[1]:.3f}–{o[2]:.3f}) | {u[0]:.3f} ({u[1]:.3f}–{u[2]:.3f}) | {o[0] / u[0]:.2f} |")
    table = "\n".join(lines)
    print(table)
    if a.write:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(f"\n## S3 (SeaweedFS on loopback)\n\nCommand: `python3 bench/s3_bench.py --reps {a.reps} --tx {a.tx} "
                    f"--rate {a.rate} --restore-mb {a.restore_mb} --write`\n\n{table}\n")


if __name__ == "__main__":
    main()
