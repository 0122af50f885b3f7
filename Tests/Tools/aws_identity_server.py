#!/usr/bin/env python3
"""Loopback AWS identity endpoints for the S3 keyless-credential tests (scripts/start-cloud-identity.sh).

One HTTP server serves:
  POST /                          STS AssumeRoleWithWebIdentity (form body or query; unsigned)
  GET  /ecs/<anything>            ECS/Fargate container credentials (Authorization must equal --ecs-token)
  PUT  /latest/api/token          IMDSv2 session token (needs X-aws-ec2-metadata-token-ttl-seconds)
  GET  /latest/meta-data/iam/security-credentials/[role]   IMDSv2 role listing and credentials (needs the token)
  GET  /stats[?tenant=NAME]       JSON issue counters per tenant and endpoint

Every path may be prefixed by /t/<tenant>[,lifetime=N][,jwtlife=N][,token=0]/ so parallel tests keep separate
counters: lifetime=N sets the credentials' lifetime in seconds; jwtlife=N makes SeaweedFS reject them after N
seconds (ExpiredToken) while the issued Expiration still says `lifetime`; token=0 issues static key pairs without
a session token, token=forged static key pairs with a random session token (which SeaweedFS rejects).

Issued credentials (default): a SeaweedFS STS session, i.e. an HS256 JWT under --sts-signing-key-file (SeaweedFS's
`sts.signingKey`) as session token, with the key pair SeaweedFS derives from its session id (access key
"ASIA" + hex(sha256("access-key:" + sid))[:16], secret base64(HMAC-SHA256(key, "secret-key:" + sid)), checked
against SeaweedFS 4.48's own AssumeRole answer). SeaweedFS 4.48 rejects any other X-Amz-Security-Token.
With token=0: key pairs of SeaweedFS's s3.json (--keys, rotation-keys.json of scripts/start-seaweedfs.sh), handed
out round-robin per tenant, without a session token.
"""
import base64
import hashlib
import hmac
import time
import argparse
import datetime
import json
import re
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
KEYS = []
LOCK = threading.Lock()
TENANTS = {}   # name -> {"next": int, "counts": {...}, "issued": [key ids]}
IMDS_TOKENS = {}  # token -> expiry (epoch seconds)
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


def tenant(name):
    t = TENANTS.get(name)
    if t is None:
        t = TENANTS[name] = {"next": 0, "counts": {}, "issued": [], "rejected": {}, "secrets": []}
    return t


def count(name, what, rejected=False):
    with LOCK:
        d = tenant(name)["rejected" if rejected else "counts"]
        d[what] = d.get(what, 0) + 1


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def seaweedfs_session(lifetime, session_name):
    """(access key, secret, session token) of a new SeaweedFS STS session valid for `lifetime` seconds."""
    key = base64.b64decode(open(ARGS.sts_signing_key_file).read().strip())
    sid, now = secrets.token_hex(16), int(time.time())
    assumed = ARGS.role_arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/" + session_name
    claims = {"iss": "seaweedfs-sts", "sub": sid, "iat": now, "nbf": now - 5, "exp": now + lifetime, "jti": sid,
              "sid": sid, "snam": session_name, "typ": "session", "role": ARGS.role_arn, "assumed": assumed,
              "principal": assumed, "pol": ["RKReplicaPolicy"],
              "assumed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
    signing_input = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64url(json.dumps(claims).encode())
    token = signing_input + "." + b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    access = "ASIA" + hashlib.sha256(("access-key:" + sid).encode()).hexdigest()[:16]
    secret = base64.b64encode(hmac.new(key, ("secret-key:" + sid).encode(), hashlib.sha256).digest()).decode()
    return access, secret, token


def issue(name, lifetime, with_token, endpoint, jwtlife=None, session_name="rk"):
    if with_token is True and ARGS.sts_signing_key_file:
        access, secret, token = seaweedfs_session(jwtlife or lifetime, session_name)
    else:
        with LOCK:
            k = KEYS[tenant(name)["next"] % len(KEYS)]
            tenant(name)["next"] += 1
        access, secret, token = k["accessKey"], k["secretKey"], ("RKSESSION" + secrets.token_hex(24)) if with_token else ""

    with LOCK:
        t = tenant(name)
        t["counts"][endpoint] = t["counts"].get(endpoint, 0) + 1
        t["issued"].append(access)
        t["secrets"] += [v for v in (secret, token) if v]  # so tests can scan their outputs for every one
    exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
    return {"AccessKeyId": access, "SecretAccessKey": secret, "Token": token,
            "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: tests read stats, not logs
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self):
        """(tenant name, lifetime, with_token, rest of path, query dict); sets self.jwtlife."""
        u = urllib.parse.urlsplit(self.path)
        path, name, lifetime, with_token = u.path, "default", ARGS.lifetime, True
        self.jwtlife = None
        m = re.match(r"^/t/([^/]+)(/.*)?$", path)
        if m:
            parts = m.group(1).split(",")
            name = parts[0]
            for p in parts[1:]:
                k, _, v = p.partition("=")
                if k == "lifetime":
                    lifetime = int(v)
                elif k == "jwtlife":
                    self.jwtlife = int(v)
                elif k == "token":
                    with_token = False if v == "0" else ("forged" if v == "forged" else True)
            path = m.group(2) or "/"
        return name, lifetime, with_token, path, dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        name, lifetime, tok, path, query = self.route()
        if path == "/stats":
            with LOCK:
                out = TENANTS.get(query["tenant"], {}) if "tenant" in query else TENANTS
                self.reply(200, json.dumps(out))
            return
        if path.startswith("/ecs/"):
            want = ARGS.ecs_token
            if self.headers.get("Authorization") != want:
                count(name, "ecs", rejected=True)
                self.reply(401 if self.headers.get("Authorization") is None else 403,
                           json.dumps({"code": "AccessDenied", "message": "bad Authorization"}))
                return
            c = issue(name, lifetime, tok, "ecs", self.jwtlife)
            c["RoleArn"] = ARGS.role_arn
            self.reply(200, json.dumps(c))
            return
        if path.startswith("/latest/meta-data/iam/security-credentials/"):
            token = self.headers.get("X-aws-ec2-metadata-token")
            with LOCK:
                valid = token is not None and IMDS_TOKENS.get(token, 0) > datetime.datetime.now().timestamp()
            if not valid:
                count(name, "imds", rejected=True)
                self.reply(401, "", "text/plain")
                return
            role = path[len("/latest/meta-data/iam/security-credentials/"):]
            if role == "":
                count(name, "imds_role_list")
                self.reply(200, ARGS.role_name, "text/plain")
            elif role == ARGS.role_name:
                c = issue(name, lifetime, tok, "imds", self.jwtlife)
                c.update({"Code": "Success", "Type": "AWS-HMAC",
                          "LastUpdated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
                self.reply(200, json.dumps(c))
            else:
                self.reply(404, "", "text/plain")
            return
        if query.get("Action"):
            self.sts(name, lifetime, tok, query)
            return
        self.reply(404, json.dumps({"error": "no such endpoint"}))

    def do_PUT(self):
        name, _, _, path, _ = self.route()
        self.body()
        if path != "/latest/api/token":
            self.reply(404, "", "text/plain")
            return
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            count(name, "imds_token", rejected=True)
            self.reply(400, "", "text/plain")
            return
        token = "RKIMDS" + secrets.token_hex(16)
        with LOCK:
            IMDS_TOKENS[token] = datetime.datetime.now().timestamp() + int(ttl)
        count(name, "imds_token")
        self.reply(200, token, "text/plain")

    def do_POST(self):
        name, lifetime, tok, path, query = self.route()
        form = dict(urllib.parse.parse_qsl(self.body().decode(), keep_blank_values=True))
        form.update(query)
        if path != "/":
            self.reply(404, "", "text/plain")
            return
        self.sts(name, lifetime, tok, form)

    def sts_error(self, name, status, code, message):
        count(name, "sts", rejected=True)
        self.reply(status, "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"
                   f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>rk</RequestId></ErrorResponse>",
                   "text/xml")

    def sts(self, name, lifetime, tok, form):
        if self.headers.get("Authorization"):
            return self.sts_error(name, 400, "InvalidRequest", "AssumeRoleWithWebIdentity must not be signed")
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
            return self.sts_error(name, 400, "InvalidAction", "unsupported Action or Version")
        if form.get("RoleArn") != ARGS.role_arn:
            return self.sts_error(name, 403, "AccessDenied", "not authorized to assume this role")
        if not SESSION_NAME.match(form.get("RoleSessionName", "")):
            return self.sts_error(name, 400, "ValidationError", "RoleSessionName must be 2-64 characters [\\w+=,.@-]")
        want = open(ARGS.token_file).read().strip()
        if form.get("WebIdentityToken") != want:
            return self.sts_error(name, 400, "InvalidIdentityToken", "the web identity token is not valid")
        c = issue(name, lifetime, tok, "sts", self.jwtlife, form["RoleSessionName"])
        session = "" if not c["Token"] else f"<SessionToken>{c['Token']}</SessionToken>"
        self.reply(200, "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                   "<AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>system:serviceaccount:rk:test"
                   "</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience><AssumedRoleUser>"
                   f"<Arn>{ARGS.role_arn.replace(':role/', ':assumed-role/')}/{form['RoleSessionName']}</Arn>"
                   f"<AssumedRoleId>AROARK:{form['RoleSessionName']}</AssumedRoleId></AssumedRoleUser>"
                   f"<Credentials><AccessKeyId>{c['AccessKeyId']}</AccessKeyId>"
                   f"<SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>{session}"
                   f"<Expiration>{c['Expiration']}</Expiration></Credentials><Provider>rk-oidc</Provider>"
                   "</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>rk</RequestId></ResponseMetadata>"
                   "</AssumeRoleWithWebIdentityResponse>", "text/xml")


def main():
    global ARGS, KEYS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--keys", required=True, help="JSON list of {accessKey, secretKey} SeaweedFS knows")
    p.add_argument("--token-file", required=True, help="the web-identity token STS must receive")
    p.add_argument("--ecs-token", required=True, help="the Authorization value of the container endpoint")
    p.add_argument("--role-arn", default="arn:aws:iam::123456789012:role/rk-replica")
    p.add_argument("--role-name", default="rk-instance-role")
    p.add_argument("--lifetime", type=int, default=40, help="seconds until issued credentials expire")
    p.add_argument("--sts-signing-key-file", help="SeaweedFS sts.signingKey (base64): issue SeaweedFS sessions")
    ARGS = p.parse_args()
    KEYS = json.load(open(ARGS.keys))
    ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
