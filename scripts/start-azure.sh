#!/usr/bin/env bash
# Starts the Azure Blob test server (Tests/Tools/azure_blob_server.py: SharedKey and SAS verified with the
# azure-storage-blob SDK's own code, plus IMDS / App Service / workload-identity token endpoints) on loopback.
#
# Usage:  eval "$(scripts/start-azure.sh)"     # exports RK_AZURE_* for `swift test`
#         kill "$RK_AZURE_PID"; rm -rf "$RK_AZURE_DIR"
#
# Environment: RK_S3_VENV / RK_AZURE_VENV (default: <repo>/.venv-test, needs azure-storage-blob and lz4).
# Everything but the final `export` lines goes to stderr, so the output can be eval'ed.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${RK_AZURE_VENV:-${RK_S3_VENV:-$repo/.venv-test}}"
py="$venv/bin/python"
if ! "$py" -c 'import azure.storage.blob, lz4.frame' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check azure-storage-blob lz4 >&2
fi

dir="$(mktemp -d /tmp/rk-azure.XXXXXX)"
account="rktestacct"
container="rk-test"
key="$("$py" -c 'import base64,os; print(base64.b64encode(os.urandom(64)).decode())')"
identity_header="rk-idh-$("$py" -c 'import secrets; print(secrets.token_hex(12))')"
client_id="11111111-2222-3333-4444-$("$py" -c 'import secrets; print(secrets.token_hex(6))')"
# A second client id for the black-box tests, so their token counts are not mixed with the library tests' counts.
launcher_client_id="22222222-3333-4444-5555-$("$py" -c 'import secrets; print(secrets.token_hex(6))')"
tenant_id="rk-tenant-$("$py" -c 'import secrets; print(secrets.token_hex(4))')"
federated="$dir/federated-token"
"$py" -c 'import secrets; print("eyJrk." + secrets.token_urlsafe(48) + ".sig")' > "$federated"

"$py" -u "$repo/Tests/Tools/azure_blob_server.py" --account "$account" --key "$key" --port 0 \
    --port-file "$dir/port" --client-id "$client_id,$launcher_client_id" --tenant-id "$tenant_id" \
    --federated-token-file "$federated" --identity-header "$identity_header" > "$dir/server.log" 2>&1 &
pid=$!

port=""
for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then echo "azure_blob_server exited; log:" >&2; cat "$dir/server.log" >&2; exit 1; fi
    if [ -s "$dir/port" ]; then
        port="$(cat "$dir/port")"
        if curl -sf -o /dev/null "http://127.0.0.1:$port/_stats"; then break; fi
    fi
    sleep 0.1
done
if [ -z "$port" ] || ! curl -sf -o /dev/null "http://127.0.0.1:$port/_stats"; then
    echo "azure_blob_server not ready after 10 s; log: $dir/server.log" >&2; kill "$pid"; exit 1
fi
endpoint="http://127.0.0.1:$port/$account"

# The container (through the SDK, which also checks the server speaks its dialect) and container SAS tokens:
# read-write-delete-list (1 day), read-list only, and one that expired an hour ago.
sas_all="$(RK_EP="$endpoint" RK_ACCT="$account" RK_KEY="$key" RK_CONT="$container" "$py" - <<'PY'
import os, datetime
from azure.storage.blob import BlobServiceClient, generate_container_sas
ep, acct, key, cont = os.environ["RK_EP"], os.environ["RK_ACCT"], os.environ["RK_KEY"], os.environ["RK_CONT"]
svc = BlobServiceClient.from_connection_string(
    f"DefaultEndpointsProtocol=http;AccountName={acct};AccountKey={key};BlobEndpoint={ep};")
svc.create_container(cont)
exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
print(generate_container_sas(acct, cont, account_key=key, permission="racwdl", expiry=exp, protocol="https,http"))
print(generate_container_sas(acct, cont, account_key=key, permission="rl", expiry=exp, protocol="https,http"))
print(generate_container_sas(acct, cont, account_key=key, permission="racwdl", expiry=past, protocol="https,http"))
PY
)"
sas="$(printf '%s\n' "$sas_all" | sed -n 1p)"
sas_readonly="$(printf '%s\n' "$sas_all" | sed -n 2p)"
sas_expired="$(printf '%s\n' "$sas_all" | sed -n 3p)"
sigs="$(printf '%s\n' "$sas_all" | tr '&' '\n' | sed -n 's/^sig=//p' | tr '\n' ' ')"
echo "azure blob server on 127.0.0.1:$port (account $account, container $container)" >&2

echo "export RK_AZURE_ENDPOINT='$endpoint'"
echo "export RK_AZURE_ACCOUNT='$account'"
echo "export RK_AZURE_ACCOUNT_KEY='$key'"
echo "export RK_AZURE_CONTAINER='$container'"
echo "export RK_AZURE_SAS_TOKEN='$sas'"
echo "export RK_AZURE_SAS_TOKEN_READONLY='$sas_readonly'"
echo "export RK_AZURE_SAS_TOKEN_EXPIRED='$sas_expired'"
echo "export RK_AZURE_IMDS_ENDPOINT='http://127.0.0.1:$port'"
echo "export RK_AZURE_IDENTITY_ENDPOINT='http://127.0.0.1:$port/msi/token'"
echo "export RK_AZURE_IDENTITY_HEADER='$identity_header'"
echo "export RK_AZURE_AUTHORITY_HOST='http://127.0.0.1:$port/'"
echo "export RK_AZURE_CLIENT_ID='$client_id'"
echo "export RK_AZURE_LAUNCHER_CLIENT_ID='$launcher_client_id'"
echo "export RK_AZURE_TENANT_ID='$tenant_id'"
echo "export RK_AZURE_FEDERATED_TOKEN_FILE='$federated'"
echo "export RK_AZURE_CONTROL_URL='http://127.0.0.1:$port'"
echo "export RK_AZURE_STATS_URL='http://127.0.0.1:$port/_stats'"
echo "export RK_AZURE_PYTHON='$py'"
echo "export RK_AZURE_SECRETS='$key $sigs$identity_header $(cat "$federated")'"
echo "export RK_AZURE_PID='$pid'"
echo "export RK_AZURE_DIR='$dir'"
echo "RK_STOP_PIDS=\"\${RK_STOP_PIDS:-} $pid\""
echo "RK_STOP_DIRS=\"\${RK_STOP_DIRS:-} $dir\""
