#!/usr/bin/env python3
"""Threads, memory and catch-up of many databases on S3 while the store is frozen (issue 14).

  python3 bench/threads_bench.py [--dbs 200,1000] [--freeze 20] [--reps 1] [--io-threads 16] [--launcher PATH]
                                 [--write]

For each database count: N small databases (text rows and random blobs) replicated to SeaweedFS by one
`launcher replicate -addr`, sync-interval 1s. Once every initial snapshot is up, SeaweedFS is frozen with
SIGSTOP for `--freeze` seconds while every database gets a write per second (a row of text and a 2 KB blob);
the launcher's thread count (/proc/PID/status Threads) and RSS are sampled every 0.25 s. Then the store is
thawed (SIGCONT) and the catch-up time is measured until GET /status shows every replica at its database's
position. SIGTERM; the launcher must exit 0; every database is restored from the bucket and compared row for
row with its source. Appends a section to bench/RESULTS.md with --write.
"""
import argparse, json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, time, urllib.request, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402

ROOT, log = suite.ROOT, suite.log


def make_dbs(work, n):
    paths = []
    for i in range(n):
        p = os.path.join(work, f"db{i:04d}.db")
        c = sqlite3.connect(p)
        c.execute("PRAGMA journal_mode=wal")
        c.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT, blob BLOB)")
        c.executemany("INSERT INTO rows (body, blob) VALUES (?, randomblob(512))",
                      [(f"seed row {j} " + "lorem ipsum dolor " * 6,) for j in range(10)])
        c.commit()
        c.close()
        paths.append(p)
    return paths


def write_config(path, dbs, s3, prefix, addr):
    lines = [f'addr: "{addr}"', "dbs:"]
    for i, d in enumerate(dbs):
        lines += [f'  - path: "{d}"', "    replicas:", "      - type: s3", f'        bucket: "{s3["RK_S3_BUCKET"]}"',
                  f'        path: "{prefix}/db{i:04d}"', f'        endpoint: "{s3["RK_S3_ENDPOINT"]}"',
                  "        region: us-east-1", "        force-path-style: true", "        sync-interval: 1s"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def status(addr):
    with urllib.request.urlopen(f"http://{addr}/status", timeout=10) as r:
        return json.loads(r.read())


def caught_up(addr):
    try:
        st = status(addr)
    except Exception:  # noqa: BLE001 (the server may be busy; poll again)
        return False
    for d in st["databases"]:
        for r in d["replicas"]:
            if r.get("error") or r.get("position") != d.get("position"):
                return False
    return True


def write_round(conns, n):
    for c in conns:
        with c:
            c.execute("INSERT INTO rows (body, blob) VALUES (?, randomblob(2048))", (f"frozen-store row {n} " + "the quick brown fox " * 5,))


def rows_of(db):
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT id, body, blob FROM rows ORDER BY id").fetchall()
    finally:
        c.close()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def one_run(exe, s3, n, freeze, io_threads, work):
    run = tempfile.mkdtemp(dir=work)
    dbs = make_dbs(run, n)
    prefix = f"threads-{uuid.uuid4().hex[:8]}"
    addr = f"127.0.0.1:{free_port()}"
    cfg = os.path.join(run, "launcher.yml")
    write_config(cfg, dbs, s3, prefix, addr)
    logpath = os.path.join(run, "launcher.log")
    env = dict(os.environ, LAUNCHER_IO_THREADS=str(io_threads))
    p = suite.spawn([exe, "replicate", "-config", cfg], logpath, nofile=True, env=env)
    suite.wait_until(lambda: open(logpath, errors="replace").read().count("snapshot written") >= n, 900,
                     f"{n} initial snapshots", p, interval=0.2)
    suite.wait_until(lambda: caught_up(addr), 300, "every replica in sync before the freeze", p, interval=0.5)
    before = {"threads": threads_of(p.pid), "rss": suite.read_proc(p.pid)["VmRSS"]}
    conns = [sqlite3.connect(d, timeout=30) for d in dbs]
    weed = int(s3["RK_S3_PID"])
    os.kill(weed, signal.SIGSTOP)
    max_threads, max_rss, rounds = 0, 0, 0
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < freeze:
            if time.monotonic() - t0 >= rounds:
                write_round(conns, rounds)
                rounds += 1
            max_threads = max(max_threads, threads_of(p.pid))
            max_rss = max(max_rss, suite.read_proc(p.pid)["VmRSS"])
            time.sleep(0.25)
    finally:
        os.kill(weed, signal.SIGCONT)
    thawed = time.monotonic()
    while not caught_up(addr):
        max_threads = max(max_threads, threads_of(p.pid))
        max_rss = max(max_rss, suite.read_proc(p.pid)["VmRSS"])
        if time.monotonic() - thawed > 600:
            raise RuntimeError(f"not caught up 600 s after the thaw:\n{suite.tail_of(logpath)}")
        time.sleep(0.25)
    catch_up = time.monotonic() - thawed
    for c in conns:
        c.close()
    p.send_signal(signal.SIGTERM)
    code, _, _ = suite.wait4(p)
    if code != 0:
        raise RuntimeError(f"launcher exited {code} after SIGTERM:\n{suite.tail_of(logpath)}")
    for i, d in enumerate(dbs):
        out = os.path.join(run, f"restored{i:04d}.db")
        r = subprocess.run([exe, "restore", "-config", cfg, "-o", out, d], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"restore of {d} failed:\n{r.stdout}{r.stderr}")
        if rows_of(out) != rows_of(d):
            raise RuntimeError(f"restore of {d} differs from its source")
    shutil.rmtree(run, ignore_errors=True)
    return {"threads_before": before["threads"], "max_threads": max_threads, "rss_before_mb": before["rss"] / 2**20,
            "max_rss_mb": max_rss / 2**20, "catch_up_s": catch_up, "write_rounds": rounds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dbs", default="200,1000")
    ap.add_argument("--freeze", type=float, default=20)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--io-threads", type=int, default=16)
    ap.add_argument("--launcher")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    exe = os.path.abspath(a.launcher) if a.launcher else suite.build_ours()
    counts = [int(x) for x in a.dbs.split(",")]
    suite.raise_nofile()
    work = tempfile.mkdtemp(prefix="threads-bench-")
    s3 = suite.start_s3()
    suite.s3_use(s3)
    results = {}
    try:
        for rep in range(a.reps):
            for n in counts:
                log(f"rep {rep + 1}/{a.reps}: {n} databases, store frozen {a.freeze:.0f} s, LAUNCHER_IO_THREADS={a.io_threads}")
                r = one_run(exe, s3, n, a.freeze, a.io_threads, work)
                log("  " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
                results.setdefault(n, []).append(r)
    finally:
        suite.kill_all()
        try:
            os.kill(int(s3.get("RK_S3_PID", "0")), signal.SIGCONT)
            os.kill(int(s3.get("RK_S3_PID", "0")), 9)
        except (ProcessLookupError, ValueError):
            pass
        shutil.rmtree(s3.get("RK_S3_DIR", "/nonexistent"), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]
    lines = ["| databases (= replicas) | threads before | threads, max while frozen and catching up | target (< replicas ÷ 2) "
             "| RSS before, MB | RSS max, MB | catch-up after the thaw, s | restores equal |",
             "|---|---|---|---|---|---|---|---|"]
    for n in counts:
        rs = results[n]
        mt = med([r["max_threads"] for r in rs])
        lines.append(f"| {n} | {med([r['threads_before'] for r in rs])} | {mt} | {'met' if mt < n / 2 else 'missed'} "
                     f"| {med([r['rss_before_mb'] for r in rs]):.1f} | {med([r['max_rss_mb'] for r in rs]):.1f} "
                     f"| {med([r['catch_up_s'] for r in rs]):.1f} | {n} of {n} |")
    table = "\n".join(lines)
    print(table)
    if a.write:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(f"\n## Threads with a frozen store (issue 14)\n\nCommand: `python3 bench/threads_bench.py --dbs {a.dbs} "
                    f"--freeze {a.freeze:.0f} --reps {a.reps} --io-threads {a.io_threads} --write` ({suite.git_head()}). "
                    f"SeaweedFS frozen with SIGSTOP for {a.freeze:.0f} s while every database gets a write a second; "
                    f"median of {a.reps}. Before the bounded pools (one serial dispatch queue per replica): 203 threads "
                    f"for 200 replicas, one per replica blocked in curl.\n\n{table}\n")


if __name__ == "__main__":
    main()
