#!/usr/bin/env python3
"""Restores of compressible databases (issue 15), the `restore-text` scenario of bench/suite.py.

  python3 bench/suite.py --only restore-text [--text-mb 300,1000] [--reps 3] [--no-s3] [--launcher PATH]
  python3 bench/suite.py --only restore-text --smoke --text-mb 20        # check the code at a small size

A database of ordinary text rows (words from a vocabulary, as application tables hold: LZ4 compresses it to about
0.6) of each size is replicated by each tool to its own file replica and its own S3 bucket (SeaweedFS), 100 more
transactions are written, the replicator is stopped, and `TOOL restore -o OUT URL` is timed. While the restore runs,
/proc/PID/status is sampled every 20 ms for RssAnon (private memory) and RssFile (file-backed pages mapped into the
process, e.g. a memory map of the database); peak RSS is ru_maxrss from os.wait4. Every restored database must pass
`PRAGMA integrity_check` and have the source's content hash, or the run fails. Ours and upstream alternate within
each repetition. Standard library only; imported by suite.py (it shares suite.py's helpers).
"""
import os, random, shutil, sqlite3, statistics, threading, time

import suite

MB = 1 << 20

WORDS = ("the of and to in is was for on that with as by at from his her it an are were be this which or had not but "
         "have one all their there been has they when who will more if no out so said what up its about into than them "
         "can only other new some could time these two may then do first any my now such like our over man me even "
         "most made after also did many before must through back years where much your way well down should because "
         "each just those people how too little state good very make world still own see men work long get here "
         "between both life being under never day same another know while last might us great old year off come since "
         "against go came right used take three order invoice customer account payment shipped pending address street "
         "city country total amount status created updated note comment product price quantity discount delivery "
         "warehouse region manager report summary quarter revenue margin forecast budget contract renewal").split()


def build_text_db(path, mb, seed=1):
    """A `mb` MB database of text rows (name, email, a sentence-like body, a status, a number), checkpointed.

    The body is drawn from a vocabulary, so LZ4 compresses the file to about 0.6 (printed by the caller)."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(20000):
        n = rng.randint(30, 90)
        # Every fifth word a number, as in order lines, addresses and notes.
        s = " ".join(rng.choice(WORDS) if k % 5 else str(rng.randint(0, 99999)) for k in range(n)).capitalize() + "."
        sentences.append(s + f" Ref {rng.randint(100000, 999999)}-{rng.randint(1000, 9999)}.")
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, name TEXT, email TEXT, body TEXT, status TEXT, n INTEGER)")
    con.execute("CREATE INDEX docs_email ON docs(email)")
    target = mb * MB
    statuses = ("open", "closed", "pending", "shipped", "cancelled")

    def rows(k):
        for j in range(k):
            r = rng.random()
            first, last = rng.choice(WORDS).title(), rng.choice(WORDS).title()
            yield (f"{first} {last}", f"{first.lower()}.{last.lower()}{int(r * 1000)}@example.com",
                   sentences[rng.randrange(len(sentences))] + " " + sentences[rng.randrange(len(sentences))],
                   statuses[int(r * 5)], rng.randint(0, 1 << 40))

    while os.path.getsize(path) + os.path.getsize(path + "-wal") < target:
        con.executemany("INSERT INTO docs (name, email, body, status, n) VALUES (?, ?, ?, ?, ?)", rows(2000))
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


class RssSampler(threading.Thread):
    """Peaks of RssAnon and RssFile of a running process (every 20 ms; the kernel keeps no high-water mark)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.anon, self.file, self.halt = pid, 0, 0, threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        k, _, v = line.partition(":")
                        if k == "RssAnon":
                            self.anon = max(self.anon, int(v.split()[0]) * 1024)
                        elif k == "RssFile":
                            self.file = max(self.file, int(v.split()[0]) * 1024)
            except (OSError, ValueError):
                return
            self.halt.wait(0.02)

    def stop(self):
        self.halt.set()
        self.join()
        return self.anon, self.file


def sampled_restore(exe, url, out, logpath):
    """`exe restore -o OUT URL`: wall s, CPU s, peak RSS, peak RssAnon, peak RssFile (bytes)."""
    t0 = time.monotonic()
    p = suite.spawn([exe, "restore", "-o", out, url], logpath)
    sampler = RssSampler(p.pid)
    rc, cpu, rss = suite.wait4(p)
    wall = time.monotonic() - t0
    anon, filed = sampler.stop()
    if rc != 0:
        raise RuntimeError(f"{os.path.basename(exe)} restore {url} exited {rc}:\n{suite.tail_of(logpath)}")
    return wall, cpu, rss, anon, filed


def restore_text_once(tool, exe, work, src, s3, bucket):
    """Replicates `src` with `exe` (file and S3), then restores each replica with sampling and verifies it."""
    d, db, urls, want = suite.restore_prepare(tool, exe, work, src, 100, s3, bucket)
    out = {}
    try:
        for kind, url in urls.items():
            o = os.path.join(d, f"restored-{kind}.db")
            wall, cpu, rss, anon, filed = sampled_restore(exe, url, o, os.path.join(d, f"restore-{kind}.log"))
            suite.verify_restored(f"{tool} restore from {kind}", o, want)
            out.update({f"{kind}_wall": wall, f"{kind}_cpu": cpu, f"{kind}_rss": rss / MB, f"{kind}_anon": anon / MB,
                        f"{kind}_file": filed / MB})
            if kind == "file":
                snaps = sorted(suite.glob.glob(os.path.join(d, "replica", "generations", "*", "snapshots", "*")))
                if snaps:
                    out["ratio"] = os.path.getsize(snaps[-1]) / os.path.getsize(o)
            suite.log(f"    {tool} restore from {kind}: {wall:.2f} s wall, {cpu:.2f} s CPU, peak RSS {rss / MB:.1f} MB "
                      f"(RssAnon {anon / MB:.1f} MB, RssFile {filed / MB:.1f} MB); integrity_check ok, content hash "
                      f"equal ({want[1]})")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(o + suffix):
                    os.unlink(o + suffix)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def scenario(a, tools, s3, attempt, res, work):
    """Runs every size and repetition; returns the report's tables (one per size)."""
    tables = []
    for mb in a.text_mb:
        src = os.path.join(work, f"text-{mb:g}.db")
        suite.log(f"restore-text: building a {mb:g} MB database of text rows")
        build_text_db(src, mb)
        key = f"restore-text-{mb:g}"
        for rep in range(a.reps):
            for tool, exe in tools:
                attempt(key, tool, f"restore-text rep {rep + 1}/{a.reps} {tool}: replicate {mb:g} MB of text rows "
                        f"to file{' and S3' if s3 else ''}, then restore", restore_text_once, tool, exe, work, src,
                        s3, f"bench-{tool}")
        os.unlink(src)
        o, u = res.get(key, {}).get("ours", {}), res.get(key, {}).get("upstream", {})
        ratio = f" (LZ4 ratio {statistics.median(o['ratio']):.2f})" if o.get("ratio") else ""
        t = suite.Table(f"3b. Restore: a {mb:g} MB database of text rows{ratio}", f"upstream {suite.V03}",
                        "How measured: bench/restore_bench.py. A database of ordinary text rows (names, e-mail "
                        "addresses, sentences from a vocabulary, an index) is replicated by each tool to its own file "
                        "replica" + (" and S3 bucket (SeaweedFS, loopback)" if s3 else "") + ", plus 100 one-row "
                        "transactions; `restore -o OUT URL` with the same tool: wall time, CPU and peak RSS "
                        "(ru_maxrss) from os.wait4, RssAnon and RssFile peaks sampled from /proc/PID/status every "
                        "20 ms. Every restored database passes `PRAGMA integrity_check` and has the source's content "
                        "hash, or the run fails. Page cache warm.")
        for kind, label in (("file", "file replica"), ("s3", "S3 (SeaweedFS)")):
            if kind == "s3" and not s3:
                t.notes.append("S3 not measured (--no-s3, or --smoke without RK_S3_ENDPOINT set).")
                continue
            t.row(f"restore wall time s, {label}", o.get(f"{kind}_wall"), u.get(f"{kind}_wall"), 2, ratio_target=0.7)
            t.row(f"restore CPU s, {label}", o.get(f"{kind}_cpu"), u.get(f"{kind}_cpu"), 2)
            t.row(f"restore peak RSS MB, {label}", o.get(f"{kind}_rss"), u.get(f"{kind}_rss"), 1, abs_target=64,
                  unit=" MB")
            t.row(f"restore peak RssAnon MB, {label}", o.get(f"{kind}_anon"), u.get(f"{kind}_anon"), 1)
            t.row(f"restore peak RssFile MB, {label}", o.get(f"{kind}_file"), u.get(f"{kind}_file"), 1)
        tables.append(t)
    return tables
