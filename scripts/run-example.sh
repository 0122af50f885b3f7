#!/usr/bin/env bash
# The main job: the launcher wraps an example app (example-writer) with -exec, replicating its
# database to a local file replica; when the app exits the launcher runs a final sync and exits with
# the app's status. Then the replica is restored and compared with the source.
# Usage: scripts/run-example.sh [SECONDS]   (default 20; the work directory is ./example-run)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
bash scripts/install-deps.sh
echo "== building (release)"
swift build -c release --product launcher >/dev/null
swift build -c release --product example-writer >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$PWD/example-run
rm -rf "$work" && mkdir -p "$work"
db=$work/app.db
replica=file://$work/replica

echo "== launcher -exec \"example-writer -rate 50 -count $((seconds * 50))\" $db $replica"
echo "   (the app writes 50 transactions/s for ${seconds}s to \$LITESTREAM_DB_PATH)"
set +e
"$bin/launcher" replicate -exec "$bin/example-writer -rate 50 -count $((seconds * 50))" "$db" "$replica" \
  > "$work/launcher.log" 2>&1
status=$?
set -e
echo "-- launcher exited with status $status (the app's); last log lines:"
tail -n 8 "$work/launcher.log"
[ "$status" -eq 0 ] || { echo "the launcher or the app failed"; exit 1; }

echo "== replica contents"
"$bin/launcher" generations "$replica"
"$bin/launcher" snapshots "$replica"

echo "== restoring into $work/restored.db"
"$bin/launcher" restore -o "$work/restored.db" "$replica"
src=$(sqlite3 "$db" "SELECT count(*), max(id) FROM events")
dst=$(sqlite3 "$work/restored.db" "SELECT count(*), max(id) FROM events")
check=$(sqlite3 "$work/restored.db" "PRAGMA integrity_check")
echo "source rows (count|max id): $src"
echo "restored rows:              $dst   integrity_check: $check"
if [ "$src" = "$dst" ] && [ "$check" = "ok" ]; then echo "OK: the restored database equals the source"; else echo "MISMATCH"; exit 1; fi
