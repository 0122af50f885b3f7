#!/usr/bin/env bash
# The main job: example-writer writes a database while `launcher replicate` streams it to a
# local file replica; then the replica is restored and compared with the source.
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

echo "== launcher replicate $db $replica"
"$bin/launcher" replicate "$db" "$replica" > "$work/launcher.log" 2>&1 &
launcher_pid=$!
trap 'kill $launcher_pid 2>/dev/null || true' EXIT

echo "== example-writer: 50 transactions/s for ${seconds}s"
"$bin/example-writer" "$db" -rate 50 -count $((seconds * 50)) | tail -n 1

echo "== stopping the launcher (SIGTERM: final sync, then exit)"
kill -TERM $launcher_pid
wait $launcher_pid
trap - EXIT
echo "-- launcher log (last lines):"
tail -n 8 "$work/launcher.log"

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
