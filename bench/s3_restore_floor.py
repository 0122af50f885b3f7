#!/usr/bin/env python3
"""The floor under a restore from S3 (issue 15): what downloading, decoding and writing the snapshot cost on this
machine without our restore around them, next to our restore of the same replica.

  python3 bench/s3_restore_floor.py [--mb 300] [--reps 3] [--launcher PATH]

Builds a database of text rows (bench/restore_bench.py), replicates it with our launcher to a SeaweedFS bucket (the
server of RK_S3_* in the environment, else one started by scripts/start-seaweedfs.sh and stopped at the end), and
then, alternately per repetition, times:

  restore     `launcher restore -o OUT URL` (verified: integrity_check and the source's content hash)
  get         one GET of the snapshot object with curl to /dev/null
  ranges      the snapshot as 4 MiB ranged GETs, 4 at a time (curl --parallel), to /dev/null: our download pattern
  pipeline    one GET piped into `lz4 -d` writing the database file, then fsync: download + decode + write + fsync
  quick_check `PRAGMA quick_check` of the restored file by the sqlite3 shell with our settings (no memory map, 2 MiB
              page cache): the verification our restore adds to the pipeline

Wall time, and CPU of the client side (the children) and of the SeaweedFS server (/proc/PID/stat) for each. The
dirty pages replicating left are synced before the first step.
Needs curl (with --aws-sigv4, 7.75+), lz4 and sqlite3 (scripts/install-deps.sh). Prints a markdown table.
"""
import argparse, os, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite, restore_bench  # noqa: E402

MB = 1 << 20
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def clock_ticks(pid):
    """utime + stime of a process in seconds (0 when it is not known)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def curl_config(s3, key, ranges, out):
    """A curl config (-K) with one signed GET per range (None: the whole object), each written to `out`."""
    sections = []
    for r in ranges:
        lines = ["silent", "show-error", "fail", f'aws-sigv4 = "aws:amz:{s3.get("RK_S3_REGION", "us-east-1")}:s3"',
                 f'user = "{s3["RK_S3_ACCESS_KEY_ID"]}:{s3["RK_S3_SECRET_ACCESS_KEY"]}"',
                 f'header = "x-amz-content-sha256: {EMPTY_SHA}"', f'output = "{out}"',
                 f'url = "{s3["RK_S3_ENDPOINT"]}/{key}"']
        if r:
            lines.append(f'range = "{r[0]}-{r[1]}"')
        sections.append("\n".join(lines))
    return "\nnext\n".join(sections) + "\n"


def timed(cmd, server_pid, shell=False):
    """Runs `cmd`; returns (wall s, client CPU s, server CPU s)."""
    before = os.times()
    s0 = clock_ticks(server_pid)
    t0 = time.monotonic()
    subprocess.run(cmd, shell=shell, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system), \
        clock_ticks(server_pid) - s0


def snapshot_key(exe, url, bucket):
    """The object key of the newest snapshot (from `launcher snapshots URL` and the replica layout)."""
    rows = subprocess.run([exe, "snapshots", url], capture_output=True, text=True, check=True).stdout.split("\n")[1:]
    gen, index, size = [r.split() for r in rows if r.strip()][-1][1:4]
    prefix = url.split("/", 3)[3]
    return f"{bucket}/{prefix}/generations/{gen}/snapshots/{index}.snapshot.lz4", int(size)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--launcher", default=os.path.join(suite.ROOT, suite.SCRATCH, "release", "launcher"))
    a = ap.parse_args()
    s3, started = suite.s3_from_env(), False
    if not s3:
        s3, started = suite.start_s3(), True
    suite.s3_use(s3)
    server = int(s3.get("RK_S3_PID", "0"))
    work = tempfile.mkdtemp(prefix="s3-floor-")
    try:
        bucket = "bench-floor"
        suite.s3_create_bucket(s3, bucket)
        src = os.path.join(work, "text.db")
        restore_bench.build_text_db(src, a.mb)
        d, _, urls, want = suite.restore_prepare("ours", a.launcher, work, src, 100, s3, bucket)
        key, size = snapshot_key(a.launcher, urls["s3"], bucket)
        # Replicating left hundreds of MB of dirty pages (the copy, the replicas, the server's volumes): flushed
        # now, so no step pays for their writeback (the kernel throttles a writer above its dirty limit).
        os.sync()
        step = 4 * MB
        configs = {}
        for name, ranges in (("get", [None]), ("ranges", [(o, min(o + step, size) - 1) for o in range(0, size, step)]),
                             ("pipeline", [None])):
            configs[name] = os.path.join(work, f"{name}.cfg")
            with open(configs[name], "w") as f:
                f.write(curl_config(s3, key, ranges, "-" if name == "pipeline" else "/dev/null"))
        out, piped = os.path.join(work, "restored.db"), os.path.join(work, "piped.db")
        res = {k: [] for k in ("restore", "get", "ranges", "pipeline", "quick_check")}
        for rep in range(a.reps):
            for p in (out, out + "-wal", out + "-shm", piped):
                if os.path.exists(p):
                    os.unlink(p)
            res["restore"].append(timed([a.launcher, "restore", "-o", out, urls["s3"]], server))
            suite.verify_restored("restore", out, want)
            res["get"].append(timed(["curl", "-K", configs["get"]], server))
            res["ranges"].append(timed(["curl", "--parallel", "--parallel-max", "4", "-K", configs["ranges"]], server))
            res["pipeline"].append(timed(f"curl -K {configs['pipeline']} | lz4 -q -d - {piped} && sync {piped}",
                                         server, shell=True))
            res["quick_check"].append(timed(["sqlite3", out, "PRAGMA mmap_size=0; PRAGMA cache_size=-2048; "
                                             "PRAGMA quick_check;"], server))
            suite.log(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1][0]:.3f} s" for k, v in res.items()))
        load = os.getloadavg()
        print(f"\n{a.mb:g} MB database of text rows, snapshot {size / MB:.1f} MB; {a.reps} repetitions; load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end\n")
        print("| step | wall s median (min–max) | client CPU s | SeaweedFS CPU s |")
        print("|---|---|---|---|")
        for k, v in res.items():
            w = [x[0] for x in v]
            print(f"| {k} | {statistics.median(w):.3f} ({min(w):.3f}–{max(w):.3f}) | "
                  f"{statistics.median(x[1] for x in v):.3f} | {statistics.median(x[2] for x in v):.3f} |")
        shutil.rmtree(d, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if started:
            try:
                os.kill(server, signal.SIGKILL)  # as suite.py stops it (SIGTERM takes ~25 s)
            except (ProcessLookupError, ValueError):
                pass
            shutil.rmtree(s3.get("RK_S3_DIR", ""), ignore_errors=True)


if __name__ == "__main__":
    main()
