#!/bin/sh
# A tiny app for `launcher -exec`: it keeps a guestbook of visits in the SQLite database named by
# LITESTREAM_DB_PATH (set by the launcher to the first database of its config), adding one row per second.
# It stops cleanly on TERM/INT (relayed by the launcher from `docker stop`, Ctrl-C, fly deploy...), and
# exits with status 0, so the launcher exits 0 after its final sync.
#
#   launcher -config examples/litestream.yml -exec examples/app/app.sh
#
# Needs only /bin/sh and the sqlite3 CLI (Debian: apt-get install sqlite3).
set -u
db=${LITESTREAM_DB_PATH:?"LITESTREAM_DB_PATH is not set: run me with launcher -exec"}
interval=${APP_INTERVAL:-1}

# The launcher checkpoints the WAL now and then: wait for its locks instead of failing with "database is locked".
sql() { sqlite3 -cmd ".timeout 5000" "$db" "$@"; }

sql "PRAGMA journal_mode = WAL;" >/dev/null || exit 1
sql "CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, at TEXT NOT NULL, host TEXT NOT NULL);" || exit 1
echo "app: database $db has $(sql 'SELECT count(*) FROM visits;') visits (restored or kept from earlier runs)"

# The launcher relays signals to the whole process group: a sqlite3 running at that moment gets the signal too
# and its insert is rolled back; the loop just ends.
running=1
trap 'running=0' TERM INT
while [ "$running" -eq 1 ]; do
    sql "INSERT INTO visits (at, host) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), '$(hostname)');"
    # `sleep & wait`: a relayed signal interrupts the wait at once.
    sleep "$interval" & wait $! 2>/dev/null || true
done
echo "app: stopping with $(sql 'SELECT count(*) FROM visits;') visits"
exit 0
