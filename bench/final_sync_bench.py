#!/usr/bin/env python3
"""Final sync of many databases to a slow S3 (issue 14): the time from SIGTERM to exit of `launcher replicate`
with N databases, each holding `--rows` rows written since its last upload, when every S3 request takes
`--delay-ms` longer (Tests/Tools/faultproxy.py in delay mode in front of SeaweedFS).

  python3 bench/final_sync_bench.py [--dbs 1,100] [--rows 1000] [--delay-ms 25] [--reps 3]
                                    [--concurrency 16,1] [--launcher PATH] [--write]

For each repetition, database count and final-sync concurrency (LAUNCHER_SYNC_CONCURRENCY; 1 is the old
one-database-at-a-time behaviour): N small databases (text rows) replicated with sync-interval 1h (so only the
initial snapshots and then the final sync upload), the proxy switched to its delay once every snapshot is up,
`--rows` rows written to each in transactions of 100, then SIGTERM. The launcher must exit 0, and two of the
databases (the first and the last) are restored through the server directly and compared row for row.
Appends a section to bench/RESULTS.md with --write.
"""
import argparse, os, re, shutil, sqlite3, subprocess, sys, tempfile, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402
from backends_bench import _proxy  # noqa: E402

ROOT, log = suite.ROOT, suite.log


def make_dbs(work, n):
    paths = []
    for i in range(n):
        p = os.path.join(work, f"db{i:04d}.db")
        c = sqlite3.connect(p)
        c.execute("PRAGMA journal_mode=wal")
        c.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT)")
        c.executemany("INSERT INTO rows (body) VALUES (?)", [(f"seed row {j} " + "lorem ipsum " * 8,) for j in range(20)])
        c.commit()
        c.close()
        paths.append(p)
    return paths


def write_config(path, dbs, endpoint, bucket, prefix):
    lines = ["dbs:"]
    for i, d in enumerate(dbs):
        lines += [f'  - path: "{d}"', "    replicas:", "      - type: s3", f'        bucket: "{bucket}"',
                  f'        path: "{prefix}/db{i:04d}"', f'        endpoint: "{endpoint}"', "        region: us-east-1",
                  "        force-path-style: true", "        sync-interval: 1h"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def pending_rows(dbs, rows):
    for d in dbs:
        c = sqlite3.connect(d, timeout=30)
        for start in range(0, rows, 100):
            with c:
                c.executemany("INSERT INTO rows (body) VALUES (?)",
                              [(f"pending row {start + j} " + "the quick brown fox " * 6,) for j in range(min(100, rows - start))])
        c.close()


def rows_of(db):
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT id, body FROM rows ORDER BY id").fetchall()
    finally:
        c.close()


def one_run(exe, s3, proxy, n, rows, delay_ms, concurrency, work):
    run = tempfile.mkdtemp(dir=work)
    dbs = make_dbs(run, n)
    prefix = f"final-{uuid.uuid4().hex[:8]}"
    cfg, direct = os.path.join(run, "proxied.yml"), os.path.join(run, "direct.yml")
    write_config(cfg, dbs, f"http://127.0.0.1:{proxy['port']}", s3["RK_S3_BUCKET"], prefix)
    write_config(direct, dbs, s3["RK_S3_ENDPOINT"], s3["RK_S3_BUCKET"], prefix)
    set_mode(proxy, "pass")
    logpath = os.path.join(run, "launcher.log")
    env = dict(os.environ, LAUNCHER_SYNC_CONCURRENCY=str(concurrency))
    p = suite.spawn([exe, "replicate", "-config", cfg], logpath, nofile=True, env=env)
    suite.wait_until(lambda: open(logpath, errors="replace").read().count("snapshot written") >= n, 600,
                     f"{n} initial snapshots", p, interval=0.2)
    set_mode(proxy, f"delay-{delay_ms}")
    pending_rows(dbs, rows)
    # The launcher copies each commit into its shadow WAL within milliseconds (monitor-delay 10 ms); give it a
    # moment so the SIGTERM measures the uploads, not the local copies.
    time.sleep(1.0)
    t0 = time.monotonic()
    p.send_signal(15)
    code, _, _ = suite.wait4(p)
    took = time.monotonic() - t0
    if code != 0:
        raise RuntimeError(f"launcher exited {code} after SIGTERM:\n{suite.tail_of(logpath)}")
    set_mode(proxy, "pass")
    for i in sorted({0, n - 1}):
        out = os.path.join(run, f"restored{i}.db")
        r = subprocess.run([exe, "restore", "-config", direct, "-o", out, dbs[i]], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"restore of {dbs[i]} failed:\n{r.stdout}{r.stderr}")
        if rows_of(out) != rows_of(dbs[i]):
            raise RuntimeError(f"restore of {dbs[i]} differs from its source")
    shutil.rmtree(run, ignore_errors=True)
    return took


def set_mode(proxy, mode):
    with open(proxy["ctl"], "w") as f:
        f.write(mode + "\n")
    suite.wait_until(lambda: f'"mode": "{mode}"' in (open(proxy["stats"]).read() if os.path.exists(proxy["stats"]) else ""),
                     10, f"proxy mode {mode}", interval=0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dbs", default="1,100")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--delay-ms", type=int, default=25)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--concurrency", default="16,1")
    ap.add_argument("--launcher")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    exe = os.path.abspath(a.launcher) if a.launcher else suite.build_ours()
    counts = [int(x) for x in a.dbs.split(",")]
    levels = [int(x) for x in a.concurrency.split(",")]
    work = tempfile.mkdtemp(prefix="final-sync-bench-")
    s3 = suite.start_s3()
    suite.s3_use(s3)
    results = {}
    try:
        pdir = tempfile.mkdtemp(dir=work)
        proc, port, stats = _proxy(re.sub(r"^https?://", "", s3["RK_S3_ENDPOINT"]).rstrip("/"), pdir)
        proxy = {"port": port, "stats": stats, "ctl": os.path.join(pdir, "ctl")}
        for rep in range(a.reps):
            for c in levels:
                for n in counts:
                    log(f"rep {rep + 1}/{a.reps}: {n} databases, concurrency {c}")
                    t = one_run(exe, s3, proxy, n, a.rows, a.delay_ms, c, work)
                    log(f"  final sync and exit: {t:.2f} s")
                    results.setdefault((c, n), []).append(t)
        proc.kill()
    finally:
        suite.kill_all()
        try:
            os.kill(int(s3.get("RK_S3_PID", "0")), 9)
        except (ProcessLookupError, ValueError):
            pass
        shutil.rmtree(s3.get("RK_S3_DIR", "/nonexistent"), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]
    lines = ["| final-sync concurrency | " + " | ".join(f"{n} db{'s' if n > 1 else ''}, s" for n in counts)
             + (f" | {counts[-1]} ÷ {counts[0]} (target ≤ 15×)" if len(counts) > 1 else "") + " |",
             "|---" * (len(counts) + 1 + (1 if len(counts) > 1 else 0)) + "|"]
    for c in levels:
        cells = [f"{med(results[(c, n)]):.2f} ({min(results[(c, n)]):.2f}–{max(results[(c, n)]):.2f})" for n in counts]
        ratio = f" | {med(results[(c, counts[-1])]) / med(results[(c, counts[0])]):.1f}×" if len(counts) > 1 else ""
        lines.append(f"| {c}{' (one database at a time)' if c == 1 else ''} | " + " | ".join(cells) + ratio + " |")
    table = "\n".join(lines)
    print(table)
    if a.write:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(f"\n## Final sync of many databases to a slow S3 (issue 14)\n\nCommand: `python3 bench/final_sync_bench.py "
                    f"--dbs {a.dbs} --rows {a.rows} --delay-ms {a.delay_ms} --reps {a.reps} --concurrency {a.concurrency} "
                    f"--write` ({suite.git_head()}). Time from SIGTERM to exit (median, min–max of {a.reps}); every run "
                    f"exited 0 and its first and last databases restored equal to their sources.\n\n{table}\n")


if __name__ == "__main__":
    main()
