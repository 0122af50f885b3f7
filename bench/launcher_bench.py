#!/usr/bin/env python3
"""Launcher (-exec) figures: start-to-exec latency, idle RSS while the child runs, final-sync time.

  python3 bench/launcher_bench.py [--runs 20] [--rows 5000] [--exe PATH]

Builds the release binary with `swift build -c release` (and the Dockerfile's static variant). bench/suite.py's
launcher scenario measures start-to-exec and the final sync for ours and upstream 0.3.13 alternately; this script
adds the idle RSS of both builds and ours' final sync as timed by its own log lines.
Standard library only; appends a section to bench/RESULTS.md with --write.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time, shutil
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from suite import make_small_db as make_db, start_to_exec  # noqa: E402  (bench/suite.py measures them for both tools)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launcher(static=False):
    """The release binary; `static` builds it the way the Dockerfile does (--static-swift-stdlib)."""
    extra = ["--static-swift-stdlib", "--scratch-path", os.path.join(ROOT, ".build-static")] if static else []
    subprocess.run(["swift", "build", "-c", "release", "--product", "launcher"] + extra, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"] + extra, cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    return os.path.join(bindir, "launcher")


def idle_rss(exe):
    work = tempfile.mkdtemp(prefix="lb-rss-")
    try:
        db = os.path.join(work, "db")
        make_db(db)
        p = subprocess.Popen([exe, "replicate", "-exec", "sleep 4", db, "file://" + os.path.join(work, "rep")],
                             stdout=subprocess.DEVNULL)
        time.sleep(3)
        rss = 0
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
        p.wait(timeout=30)
        return rss
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stamp(line):
    m = re.match(r"(\S+Z) ", line)
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() if m else None


def final_sync(exe, rows):
    """Child writes `rows` rows and exits at once (sync-interval 1h, so only the final sync uploads them)."""
    work = tempfile.mkdtemp(prefix="lb-final-")
    try:
        db = os.path.join(work, "db")
        make_db(db)
        cfg = os.path.join(work, "litestream.yml")
        with open(cfg, "w") as f:
            f.write(f"dbs:\n  - path: {db}\n    replicas:\n      - path: {work}/rep\n        sync-interval: 1h\n")
        sql = f"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < {rows}) INSERT INTO t (v) SELECT printf('%050d', i) FROM c;"
        r = subprocess.run([exe, "replicate", "-config", cfg, "--", "sqlite3", db, sql], capture_output=True, text=True,
                           check=True)
        lines = r.stdout.splitlines()
        start = next(stamp(l) for l in lines if "final sync of every database" in l)
        end = next(stamp(l) for l in lines if "litestream shut down" in l)
        return (end - start) * 1000
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--exe", help="measure this launcher binary (both rows) instead of building the two variants")
    a = ap.parse_args()
    exe = a.exe or launcher()
    s = start_to_exec(exe, a.runs)
    rss = idle_rss(exe)
    rss_static = idle_rss(a.exe or launcher(static=True))
    fin = [final_sync(exe, a.rows) for _ in range(5)]
    table = "\n".join([
        "| figure | median (min–max) | target |", "|---|---|---|",
        f"| launcher start to child exec, ms (database present, {a.runs} runs) | {statistics.median(s):.1f} ({min(s):.1f}–{max(s):.1f}) | ≤ 50 ms |",
        f"| launcher RSS while the child runs and nothing is written, MB (Dockerfile build, static Swift runtime) | {rss_static:.1f} | ≤ 20 MB |",
        f"| the same, development build (shared Swift runtime and Foundation) | {rss:.1f} | |",
        f"| final sync after the child exits, {a.rows} pending rows, ms (5 runs) | {statistics.median(fin):.1f} ({min(fin):.1f}–{max(fin):.1f}) | ≤ 1.5× one regular sync |",
    ])
    print(table)
    if a.write:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(f"\n## Launcher (-exec)\n\nCommand: `python3 bench/launcher_bench.py --runs {a.runs} --rows {a.rows} --write`\n\n{table}\n")


if __name__ == "__main__":
    main()
