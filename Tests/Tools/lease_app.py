"""The app of the lease tests: writes rows continuously and records what it did, outside the database.

    python3 lease_app.py NAME

The database is $LITESTREAM_DB_PATH (set by the launcher). Every committed row (app, seq, ts) is then appended to
$LEASE_APP_ACKS as "NAME SEQ TS" (an acknowledged write); "NAME start TS PID" is appended when the app starts and
"NAME stop TS" when SIGTERM ends it. TS is time.time() on this host's clock.
"""
import os
import signal
import sqlite3
import sys
import time

name = sys.argv[1]
db_path = os.environ["LITESTREAM_DB_PATH"]
acks = open(os.environ["LEASE_APP_ACKS"], "a", buffering=1)
stopping = False


def on_term(signum, frame):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)
acks.write(f"{name} start {time.time():.6f} {os.getpid()}\n")
conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
conn.execute("PRAGMA journal_mode=wal")
conn.execute("CREATE TABLE IF NOT EXISTS rows (app TEXT, seq INTEGER, ts REAL, pad TEXT)")
seq = 0
while not stopping:
    seq += 1
    ts = time.time()
    conn.execute("INSERT INTO rows VALUES (?, ?, ?, ?)", (name, seq, ts, "x" * 200))
    acks.write(f"{name} {seq} {ts:.6f}\n")
    time.sleep(0.02)
conn.close()
acks.write(f"{name} stop {time.time():.6f}\n")
