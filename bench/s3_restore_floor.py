#!/usr/bin/env python3
"""The floor under a restore from S3 (issue 15): what downloading, decoding, writing and verifying the snapshot
cost on this machine without our restore around them, next to our restore of the same replica.

  python3 bench/s3_restore_floor.py [--kind text|blobs] [--mb MB] [--reps 5] [--launcher PATH]

Builds a database: `text`, 300 MB of text rows (bench/restore_bench.py) plus 100 transactions, or `blobs`, the
suite's restore scenario (bench/suite.py section 3: 200 MB of rows holding one random 3,000-byte blob, which LZ4
compresses about 14:1 since the blob repeats) plus 3,000 transactions; `--mb` changes the size. Replicates it with
our launcher to a SeaweedFS bucket (the server of RK_S3_* in the environment, else one started by
scripts/start-seaweedfs.sh and stopped at the end), copies the snapshot object to a local file once, and then,
alternately per repetition, times:

  restore     `launcher restore -o OUT URL`, then checked (integrity_check and the source's content hash)
  listing     `launcher snapshots URL`: process start and the listings a restore also makes
  get         one GET of the snapshot object with curl to /dev/null (the cheapest download for the server)
  ranges      the snapshot as 4 MiB ranged GETs, 4 at a time (curl --parallel), to /dev/null: our download pattern
  decode      `lz4 -d -c` of the local copy (in the page cache) to /dev/null: LZ4 decode and content checksum, one
              thread
  write       as many bytes as the restored file has written 1 MiB at a time, then fsync; `writeback` is the fsync
              alone, what the disk needs for the bytes once they are in the page cache
  quick_check `PRAGMA quick_check` of the restored file by the sqlite3 shell through a memory map (no copy of any
              page: the cheapest way SQLite reads), the verification our restore adds

Wall time, and CPU of the client side (the children) and of the SeaweedFS server (/proc/PID/stat) for each. The
dirty pages replicating left are synced before the first step, and every step's output after it.

Two floors are built from the medians of the parts. The issue's: writing the file plus decoding at this machine's
speed (write wall + decode wall, as bench/suite.py's physical bound). And a stricter one that assumes perfect overlap
of everything that can overlap:

  overlap floor = listing + max(get wall, writeback wall, (server CPU + receive CPU + decode CPU + write CPU) / cores)
                  + quick_check CPU

(the download, receive, decode and the copy into the page cache share the cores with the server while the disk
writes back; the verification needs the whole file, so it follows the last byte). Downloading and applying the
transactions after the snapshot are left out of it, so it is below any restore. Prints a markdown table, both
floors and our restore's ratio to each. Needs curl (with --aws-sigv4, 7.75+), lz4 and sqlite3 (scripts/install-deps.sh).
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


def write_and_sync(path, size):
    """Writes `size` bytes of random data to a new file 1 MiB at a time, then fsyncs it. Returns (write: wall and CPU
    of both, 0), (writeback: wall of the fsync alone, 0, 0)."""
    chunk = memoryview(os.urandom(MB))
    before, t0 = os.times(), time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, chunk[:min(MB, left)])
        copied = os.times()
        t1 = time.monotonic()
        os.fsync(fd)
        t2 = time.monotonic()
    finally:
        os.close(fd)
    cpu = (copied.user - before.user) + (copied.system - before.system)
    return (t2 - t0, cpu, 0.0), (t2 - t1, 0.0, 0.0)


def snapshot_key(exe, url, bucket):
    """The object key of the newest snapshot (from `launcher snapshots URL` and the replica layout)."""
    rows = subprocess.run([exe, "snapshots", url], capture_output=True, text=True, check=True).stdout.split("\n")[1:]
    gen, index, size = [r.split() for r in rows if r.strip()][-1][1:4]
    prefix = url.split("/", 3)[3]
    return f"{bucket}/{prefix}/generations/{gen}/snapshots/{index}.snapshot.lz4", int(size)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", choices=("text", "blobs"), default="text")
    ap.add_argument("--mb", type=float, help="database size (default 300 for text, 200 for blobs)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--launcher", default=os.path.join(suite.ROOT, suite.SCRATCH, "release", "launcher"))
    a = ap.parse_args()
    a.mb = a.mb or (300 if a.kind == "text" else 200)
    s3, started = suite.s3_from_env(), False
    if not s3:
        s3, started = suite.start_s3(), True
    suite.s3_use(s3)
    server = int(s3.get("RK_S3_PID", "0"))
    work = tempfile.mkdtemp(prefix="s3-floor-")
    try:
        bucket = "bench-floor"
        suite.s3_create_bucket(s3, bucket)
        src = os.path.join(work, f"{a.kind}.db")
        if a.kind == "text":
            restore_bench.build_text_db(src, a.mb)
        else:
            suite.build_big_db(src, a.mb)
        tx = 100 if a.kind == "text" else 3000
        d, _, urls, want = suite.restore_prepare("ours", a.launcher, work, src, tx, s3, bucket)
        key, size = snapshot_key(a.launcher, urls["s3"], bucket)
        step = 4 * MB
        configs = {}
        local = os.path.join(work, "snapshot.lz4")
        for name, ranges, dst in (("get", [None], "/dev/null"), ("copy", [None], local),
                                  ("ranges", [(o, min(o + step, size) - 1) for o in range(0, size, step)], "/dev/null")):
            configs[name] = os.path.join(work, f"{name}.cfg")
            with open(configs[name], "w") as f:
                f.write(curl_config(s3, key, ranges, dst))
        subprocess.run(["curl", "-K", configs["copy"]], check=True)
        if os.path.getsize(local) != size:
            raise RuntimeError(f"the local copy of {key} has {os.path.getsize(local)} bytes, the listing says {size}")
        # Replicating left hundreds of MB of dirty pages (the copy, the replicas, the server's volumes): flushed
        # now, so no step pays for their writeback (the kernel throttles a writer above its dirty limit).
        os.sync()
        out, decoded = os.path.join(work, "restored.db"), os.path.join(work, "written.bin")
        res = {k: [] for k in ("restore", "listing", "get", "ranges", "decode", "write", "writeback", "quick_check")}
        for rep in range(a.reps):
            # Each output is removed just before its step writes the next one: both then write into pages the
            # kernel has just freed. (Pages freed earlier may have gone back to the hypervisor: on this kind of
            # machine, writing 300 MB into them took 0.5-0.8 s of CPU instead of 0.05 s.)
            for p in (out, out + "-wal", out + "-shm"):
                if os.path.exists(p):
                    os.unlink(p)
            os.sync()
            res["restore"].append(timed([a.launcher, "restore", "-o", out, urls["s3"]], server))
            suite.verify_restored("restore", out, want)
            os.sync()
            res["listing"].append(timed([a.launcher, "snapshots", urls["s3"]], server))
            res["get"].append(timed(["curl", "-K", configs["get"]], server))
            res["ranges"].append(timed(["curl", "--parallel", "--parallel-max", "4", "-K", configs["ranges"]], server))
            res["decode"].append(timed(["lz4", "-q", "-d", "-c", local], server))
            if os.path.exists(decoded):
                os.unlink(decoded)
            os.sync()
            write, writeback = write_and_sync(decoded, os.path.getsize(out))
            res["write"].append(write)
            res["writeback"].append(writeback)
            res["quick_check"].append(timed(["sqlite3", out, f"PRAGMA mmap_size={os.path.getsize(out)}; "
                                             "PRAGMA cache_size=-2048; PRAGMA quick_check;"], server))
            suite.log(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1][0]:.3f} s" for k, v in res.items()))
        load = os.getloadavg()
        cores = os.cpu_count() or 1
        what = "text rows" if a.kind == "text" else "random blobs"
        print(f"\n{a.mb:g} MB database of {what} + {tx} transactions, snapshot {size / MB:.1f} MB; {a.reps} repetitions; {cores} cores; "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end\n")
        print("| step | wall s median (min–max) | client CPU s | SeaweedFS CPU s |")
        print("|---|---|---|---|")
        med = {}
        for k, v in res.items():
            w = [x[0] for x in v]
            med[k] = (statistics.median(w), statistics.median(x[1] for x in v), statistics.median(x[2] for x in v))
            print(f"| {k} | {med[k][0]:.3f} ({min(w):.3f}–{max(w):.3f}) | {med[k][1]:.3f} | {med[k][2]:.3f} |")
        ours = med["restore"][0]
        plain = med["write"][0] + med["decode"][0]
        print(f"\nissue's floor = write {med['write'][0]:.3f} + decode {med['decode'][0]:.3f} = {plain:.3f} s; our restore "
              f"{ours:.3f} s: {ours / plain:.2f}× (target ≤ 1.3×)")
        cpu = med["get"][2] + med["get"][1] + med["decode"][1] + med["write"][1]
        transfer = max(med["get"][0], med["writeback"][0], cpu / cores)
        floor = med["listing"][0] + transfer + med["quick_check"][1]
        print(f"\noverlap floor = listing {med['listing'][0]:.3f} + max(get {med['get'][0]:.3f}, writeback {med['writeback'][0]:.3f}, "
              f"(server {med['get'][2]:.3f} + receive {med['get'][1]:.3f} + decode {med['decode'][1]:.3f} + write "
              f"{med['write'][1]:.3f}) / {cores}) + quick_check {med['quick_check'][1]:.3f} = {floor:.3f} s; our restore "
              f"{ours:.3f} s: {ours / floor:.2f}×")
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
