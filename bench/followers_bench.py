#!/usr/bin/env python3
"""Many live followers on one primary (issue 14): commit-to-visible lag per follower and the primary's CPU per
follower, with the primary's stream sessions on its bounded I/O pool.

  python3 bench/followers_bench.py [--followers 64] [--rate 100] [--seconds 30] [--reps 2] [--launcher PATH]
                                   [--write]

One primary (`launcher replicate -addr`) and one follower process holding all N followers (N databases in one
config, each following the primary's database over /stream; N processes of their own would measure the machine's
memory, not the primary). The writer (this process) commits one row per transaction at `--rate` and records each
commit's CLOCK_MONOTONIC time. The readers are a small C program (compiled here with `cc`, linked with SQLite): one
thread sweeps all N followers through read-only connections, `SELECT max(id) FROM t` each, in a tight loop, and
records when each id first appears on each follower (CLOCK_MONOTONIC): lag = that moment minus the commit. A sweep
of 64 databases takes well under a millisecond, so the reader adds little to the lag (measured and printed).
Primary CPU per follower = (CPU with N followers - CPU with none) / N at the same rate, alternating `--reps` times.
Every follower ends equal to the primary (row count, sum(id), integrity_check). Appends to bench/RESULTS.md with
--write.
"""
import argparse, os, shutil, signal, sqlite3, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live_bench as lb  # noqa: E402
import suite  # noqa: E402

ROOT, log = suite.ROOT, suite.log

READER_C = r"""
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag = 0;
static void on_term(int s) { (void)s; stop_flag = 1; }
static long long now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

/* reader OUT MAXID DB... : sweeps every DB until SIGTERM; writes "f id ns" for the first sighting of each id. */
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    const char *out = argv[1];
    long maxid = atol(argv[2]);
    int n = argc - 3;
    signal(SIGTERM, on_term);
    sqlite3 **db = calloc(n, sizeof *db);
    sqlite3_stmt **st = calloc(n, sizeof *st);
    long *last = calloc(n, sizeof *last);
    long long *seen = calloc((size_t)n * (maxid + 1), sizeof *seen);
    long long sweeps = 0, sweep_ns = 0;
    while (!stop_flag) {
        long long t0 = now_ns();
        for (int i = 0; i < n; i++) {
            if (!db[i]) {
                if (access(argv[3 + i], F_OK) != 0) continue;
                if (sqlite3_open_v2(argv[3 + i], &db[i], SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) { sqlite3_close(db[i]); db[i] = NULL; continue; }
                sqlite3_busy_timeout(db[i], 0);
            }
            if (!st[i] && sqlite3_prepare_v2(db[i], "SELECT max(id) FROM t", -1, &st[i], NULL) != SQLITE_OK) { st[i] = NULL; continue; }
            if (sqlite3_step(st[i]) == SQLITE_ROW) {
                long top = (long)sqlite3_column_int64(st[i], 0);
                long long t = now_ns();
                if (top > maxid) top = maxid;
                for (long id = last[i] + 1; id <= top; id++) seen[(size_t)i * (maxid + 1) + id] = t;
                if (top > last[i]) last[i] = top;
            }
            sqlite3_reset(st[i]);
        }
        sweeps++;
        sweep_ns += now_ns() - t0;
        usleep(200);
    }
    FILE *f = fopen(out, "w");
    if (!f) return 1;
    fprintf(f, "sweeps %lld %lld\n", sweeps, sweep_ns);
    for (int i = 0; i < n; i++)
        for (long id = 1; id <= maxid; id++) {
            long long t = seen[(size_t)i * (maxid + 1) + id];
            if (t) fprintf(f, "%d %ld %lld\n", i, id, t);
        }
    fclose(f);
    return 0;
}
"""


def build_reader(work):
    src, exe = os.path.join(work, "reader.c"), os.path.join(work, "reader")
    with open(src, "w") as f:
        f.write(READER_C)
    subprocess.run(["cc", "-O2", "-o", exe, src, "-lsqlite3"], check=True)
    return exe


def start_followers(exe, work, url, primary_db, n):
    locals_ = [os.path.join(work, f"follower{i:02d}.db") for i in range(n)]
    cfg = os.path.join(work, "followers.yml")
    with open(cfg, "w") as f:
        f.write("dbs:\n" + "".join(f'  - path: "{p}"\n    upstream:\n      url: "{url}"\n      path: "{primary_db}"\n'
                                   for p in locals_))
    p = lb.Proc("followers", [exe, "replicate", "-config", cfg], os.path.join(work, "followers.log"))
    end = time.monotonic() + 120
    while p.output().count("snapshot applied") < n:
        if time.monotonic() > end or p.p.poll() is not None:
            raise RuntimeError(f"the followers did not all get their first snapshot:\n{lb.tail(p.output())}")
        time.sleep(0.05)
    return p, locals_


def lag_run(exe, reader, n, rate, seconds, work):
    run = tempfile.mkdtemp(dir=work)
    db = os.path.join(run, "primary.db")
    lb.make_primary(db)
    prim, url = lb.start_primary(exe, run, db)
    fol, locals_ = start_followers(exe, run, url, db, n)
    maxid = int(rate * seconds * 1.2) + 100
    out = os.path.join(run, "seen.txt")
    rd = subprocess.Popen([reader, out, str(maxid)] + locals_)
    try:
        time.sleep(0.5)
        commits = {}
        c0, t0 = prim.cpu(), time.monotonic()
        count, elapsed = lb.write(db, rate, seconds, commits)
        cpu = (prim.cpu() - c0) / (time.monotonic() - t0) * 100
        last = max(commits)
        end = time.monotonic() + 60
        while time.monotonic() < end:  # converged: every follower shows the last id
            if all(lb.fresh_count(p) >= last for p in locals_):
                break
            time.sleep(0.05)
        rd.send_signal(signal.SIGTERM)
        rd.wait(timeout=30)
        per = {i: [] for i in range(n)}
        with open(out) as f:
            sweeps, sweep_ns = (int(x) for x in f.readline().split()[1:])
            for line in f:
                i, ident, t = (int(x) for x in line.split())
                if ident in commits:
                    per[i].append((t - commits[ident]) / 1e6)
        missing = [i for i in range(n) if len(per[i]) < len(commits)]
        checks = [lb.verify(db, p) for p in locals_]
        bad = [i for i, v in enumerate(checks) if not v["ok"]]
        if bad or missing:
            raise RuntimeError(f"followers {bad or missing} do not match the primary: {[checks[i] for i in bad][:3]}")
        p99s = sorted(lb.percentile(sorted(v), 99) for v in per.values())
        merged = sorted(x for v in per.values() for x in v)
        return {"tx": count, "rate": count / elapsed, "primary_cpu_pct": cpu,
                "p50": lb.percentile(merged, 50), "p99": lb.percentile(merged, 99), "max": merged[-1],
                "worst_follower_p99": p99s[-1], "median_follower_p99": p99s[len(p99s) // 2],
                "sweep_ms": sweep_ns / max(sweeps, 1) / 1e6,
                "primary_threads": int(open(f"/proc/{prim.pid}/status").read().split("Threads:")[1].split()[0])}
    finally:
        if rd.poll() is None:
            rd.kill()
        fol.stop()
        prim.stop()
        shutil.rmtree(run, ignore_errors=True)


def cpu_run(exe, n, rate, seconds, work):
    """Primary CPU % of a core at `rate` with `n` followers attached (no readers)."""
    run = tempfile.mkdtemp(dir=work)
    db = os.path.join(run, "primary.db")
    lb.make_primary(db)
    prim, url = lb.start_primary(exe, run, db)
    fol = None
    try:
        if n:
            fol, _ = start_followers(exe, run, url, db, n)
        time.sleep(1)
        c0, t0 = prim.cpu(), time.monotonic()
        lb.write(db, rate, seconds, {})
        return (prim.cpu() - c0) / (time.monotonic() - t0) * 100
    finally:
        if fol:
            fol.stop()
        prim.stop()
        shutil.rmtree(run, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--followers", type=int, default=64)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--launcher")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    exe = os.path.abspath(a.launcher) if a.launcher else suite.build_ours()
    work = tempfile.mkdtemp(prefix="followers-bench-")
    try:
        reader = build_reader(work)
        lags, cpu0, cpun = [], [], []
        for rep in range(a.reps):
            log(f"rep {rep + 1}/{a.reps}: {a.followers} followers, {a.rate} tx/s for {a.seconds:.0f} s")
            r = lag_run(exe, reader, a.followers, a.rate, a.seconds, work)
            log("  " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
            lags.append(r)
            for n, acc in ((0, cpu0), (a.followers, cpun)):
                pct = cpu_run(exe, n, a.rate, min(a.seconds, 20), work)
                log(f"  primary CPU with {n} followers: {pct:.2f} % of a core")
                acc.append(pct)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]
    per_follower = (med(cpun) - med(cpu0)) / a.followers
    worst = med([r["worst_follower_p99"] for r in lags])
    table = "\n".join([
        "| followers | rate, tx/s | lag p50, ms | lag p99 (all), ms | worst follower's p99, ms (target ≤ 25) | max, ms "
        "| primary CPU with / without followers, % of a core | per follower, % | primary threads | reader sweep, ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {a.followers} | {med([r['rate'] for r in lags]):.0f} | {med([r['p50'] for r in lags]):.1f} "
        f"| {med([r['p99'] for r in lags]):.1f} | {worst:.1f} ({'met' if worst <= 25 else 'missed'}) "
        f"| {med([r['max'] for r in lags]):.1f} | {med(cpun):.1f} / {med(cpu0):.1f} | {per_follower:.3f} "
        f"| {med([r['primary_threads'] for r in lags])} | {med([r['sweep_ms'] for r in lags]):.2f} |"])
    print(table)
    if a.write:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(f"\n## Many followers on one primary (issue 14)\n\nCommand: `python3 bench/followers_bench.py "
                    f"--followers {a.followers} --rate {a.rate} --seconds {a.seconds:.0f} --reps {a.reps} --write` "
                    f"({suite.git_head()}). Medians of {a.reps} runs; every follower ended equal to the primary. "
                    f"Before the bounded pools: p99 67 ms with one reader thread polling all followers.\n\n{table}\n")


if __name__ == "__main__":
    main()
