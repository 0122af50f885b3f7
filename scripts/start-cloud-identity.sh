#!/usr/bin/env bash
# Starts the loopback AWS identity endpoints for the S3 keyless-credential tests: Tests/Tools/aws_identity_server.py
# (STS AssumeRoleWithWebIdentity, ECS container credentials, IMDSv2, handing out SeaweedFS rotation keys) and
# moto_server (the check of the STS request format). Runs after scripts/start-seaweedfs.sh, whose exported
# RK_S3_ROTATION_KEYS_FILE lists the static key pairs SeaweedFS accepts and RK_S3_STS_SIGNING_KEY_FILE holds the key
# of its STS session tokens (the identity server issues sessions SeaweedFS accepts, session token included).
#
# Usage:  eval "$(scripts/start-seaweedfs.sh)"; eval "$(scripts/start-cloud-identity.sh)"
# Environment: RK_TEST_PYTHON or RK_S3_VENV (the venv with moto; default <repo>/.venv-test), RK_AWSID_LIFETIME
# (seconds, default 40). Prints `export RK_AWSID_…` and RK_STOP_* lines; everything else goes to stderr.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${RK_S3_VENV:-$repo/.venv-test}"
py="$venv/bin/python"
[ -x "$py" ] || py="${RK_TEST_PYTHON:-python3}"
keys="${RK_S3_ROTATION_KEYS_FILE:-}"
if [ -z "$keys" ] || [ ! -f "$keys" ]; then
    echo "start-cloud-identity: RK_S3_ROTATION_KEYS_FILE is not set or missing; run scripts/start-seaweedfs.sh first" >&2
    exit 1
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
dir="$(mktemp -d /tmp/rk-awsid.XXXXXX)"
token_file="$dir/web-identity-token"
ecs_token_file="$dir/ecs-authorization-token"
role_arn="arn:aws:iam::123456789012:role/rk-replica"
# A JWT-shaped web-identity token and an ECS authorization token, random per run (test secrets: never logged).
python3 -c 'import secrets,base64; e=lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode(); print(e(b"{\"alg\":\"RS256\"}")+"."+e(secrets.token_bytes(48))+"."+e(secrets.token_bytes(64)))' > "$token_file"
python3 -c 'import secrets; print("RKECS" + secrets.token_hex(20))' > "$ecs_token_file"
chmod 600 "$token_file" "$ecs_token_file"
ecs_token="$(cat "$ecs_token_file")"

id_port="$(free_port)"
"$py" "$repo/Tests/Tools/aws_identity_server.py" --port "$id_port" --keys "$keys" --token-file "$token_file" \
    --ecs-token "$ecs_token" --role-arn "$role_arn" --lifetime "${RK_AWSID_LIFETIME:-40}" \
    ${RK_S3_STS_SIGNING_KEY_FILE:+--sts-signing-key-file "$RK_S3_STS_SIGNING_KEY_FILE"} > "$dir/identity.log" 2>&1 &
id_pid=$!
moto_port="$(free_port)"
if [ -x "$venv/bin/moto_server" ]; then
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" > "$dir/moto.log" 2>&1 &
    moto_pid=$!
else
    echo "start-cloud-identity: $venv/bin/moto_server missing (pip install -r scripts/test-requirements.txt)" >&2
    kill -9 "$id_pid"; exit 1
fi

ready() { curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true; }
ok=0
for _ in $(seq 1 120); do
    for p in "$id_pid" "$moto_pid"; do
        if ! kill -0 "$p" 2>/dev/null; then
            echo "start-cloud-identity: a server exited; logs in $dir" >&2; tail -5 "$dir"/*.log >&2
            kill -9 "$id_pid" "$moto_pid" 2>/dev/null || true; exit 1
        fi
    done
    if [ "$(ready "http://127.0.0.1:$id_port/stats")" = 200 ] && \
       [ "$(ready "http://127.0.0.1:$moto_port/moto-api/")" = 200 ]; then ok=1; break; fi
    sleep 0.25
done
if [ "$ok" != 1 ]; then
    echo "start-cloud-identity: not ready after 30 s; logs in $dir" >&2
    kill -9 "$id_pid" "$moto_pid" 2>/dev/null || true; exit 1
fi

base="http://127.0.0.1:$id_port"
echo "export RK_AWSID_ENDPOINT='$base'"
echo "export RK_AWSID_STS_ENDPOINT='$base'"
echo "export RK_AWSID_ECS_URL='$base/ecs/credentials'"
echo "export RK_AWSID_ECS_RELATIVE_URI='/ecs/credentials'"
echo "export RK_AWSID_IMDS_ENDPOINT='$base'"
echo "export RK_AWSID_STATS_URL='$base/stats'"
echo "export RK_AWSID_TOKEN_FILE='$token_file'"
echo "export RK_AWSID_ECS_TOKEN='$ecs_token'"
echo "export RK_AWSID_ECS_TOKEN_FILE='$ecs_token_file'"
echo "export RK_AWSID_ROLE_ARN='$role_arn'"
echo "export RK_AWSID_MOTO_URL='http://127.0.0.1:$moto_port'"
echo "export RK_AWSID_DIR='$dir'"
echo "RK_STOP_PIDS=\"\${RK_STOP_PIDS:-} $id_pid $moto_pid\""
echo "RK_STOP_DIRS=\"\${RK_STOP_DIRS:-} $dir\""
