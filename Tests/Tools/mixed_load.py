#!/usr/bin/env python3
"""A mixed SQLite workload for the crash-loop tests: inserts, updates, deletes, 100 KB blobs, the app's own
wal_checkpoint(TRUNCATE) now and then, and one VACUUM, in WAL mode with a busy timeout, until SIGTERM or --seconds.

  mixed_load.py DB [--seconds N] [--seed N]

Each transaction commits before the next starts; the script may be SIGKILLed at any moment (the tests do),
so it keeps no state outside the database.
"""
import argparse, os, random, signal, sqlite3, sys, time

stop = False


def on_term(*_):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    # A spawning process may hand down a blocked mask (a test runner's thread): take TERM whatever it was.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
    rnd = random.Random(a.seed)
    con = sqlite3.connect(a.db, timeout=10, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT)")
    con.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)")
    con.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)")
    vacuumed = con.execute("SELECT v FROM meta WHERE k = 'vacuumed'").fetchone() is not None
    deadline = time.time() + a.seconds
    n = 0
    while not stop and time.time() < deadline:
        op = rnd.random()
        con.execute("BEGIN IMMEDIATE")
        if op < 0.55:
            for _ in range(rnd.randint(1, 20)):
                con.execute("INSERT INTO items (name, qty, note) VALUES (?, ?, ?)",
                            ("item-%d" % rnd.randint(0, 10**9), rnd.randint(0, 1000), "note " * rnd.randint(1, 40)))
        elif op < 0.75:
            con.execute("UPDATE items SET qty = qty + 1, note = note || 'u' WHERE id % ? = ?",
                        (rnd.randint(5, 50), rnd.randint(0, 4)))
        elif op < 0.85:
            con.execute("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT ?)",
                        (rnd.randint(1, 10),))
        elif op < 0.95:
            con.execute("INSERT INTO blobs (data) VALUES (?)", (os.urandom(100_000),))
            con.execute("DELETE FROM blobs WHERE id < (SELECT max(id) - 20 FROM blobs)")
        else:
            con.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('counter', coalesce((SELECT v FROM meta WHERE k = 'counter'), 0) + 1)")
        con.execute("COMMIT")
        n += 1
        if n % 150 == 0:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if n == 400 and not vacuumed:
            con.execute("VACUUM")
            con.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('vacuumed', 1)")
            vacuumed = True
        time.sleep(rnd.uniform(0, 0.004))
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
