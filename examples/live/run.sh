#!/usr/bin/env bash
# Live read replicas on one machine: a primary with a writing app, a follower, and a reader watching it.
# Run from the repository root after `swift build`; stops everything after 10 seconds.
set -euo pipefail
BIN=${BIN:-$PWD/.build/debug}
rm -rf /tmp/live-demo && mkdir -p /tmp/live-demo
"$BIN/launcher" replicate -config examples/live/primary.yml -exec "$BIN/example-writer /tmp/live-demo/primary.db -rate 50" &
PRIMARY=$!
"$BIN/launcher" replicate -config examples/live/replica.yml &
REPLICA=$!
trap 'kill $PRIMARY $REPLICA 2>/dev/null || true' EXIT
for i in $(seq 1 10); do
  sleep 1
  echo "primary: $(sqlite3 /tmp/live-demo/primary.db 'select count(*) from events' 2>/dev/null || echo -)  replica: $(sqlite3 /tmp/live-demo/replica.db 'select count(*) from events' 2>/dev/null || echo -)  replica ready: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9091/readyz)"
done
