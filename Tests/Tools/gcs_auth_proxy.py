#!/usr/bin/env python3
"""An OAuth2-checking reverse proxy in front of fake-gcs-server, for tests only.

    gcs_auth_proxy.py --upstream 127.0.0.1:PORT --pubkey sa.pub --sa-email E --client-id I --client-secret S
                      --refresh-token R [--lifetime 3600] [--port-file F] [--max-seconds 3600]

Listens on 127.0.0.1 (ephemeral port, written to --port-file) and serves:

  POST /token[?tag=T&lifetime=N&mode=bogus|expired]   OAuth2 token endpoint. grant_type
        urn:ietf:params:oauth:grant-type:jwt-bearer: the assertion's RS256 signature is verified against --pubkey,
        and its claims: iss == --sa-email, aud == this URL exactly, scope == devstorage.full_control,
        iat within 60 s of now, exp == iat + 3600. grant_type refresh_token: client_id, client_secret and
        refresh_token must match. Errors are 400 {"error": "invalid_grant", ...} as Google's.
        lifetime: expires_in of the issued token (default --lifetime); mode=bogus issues a token storage never
        accepts; mode=expired issues one already expired while claiming expires_in=3600.
  GET /computeMetadata/v1/instance/service-accounts/default/token   the GCE metadata token (needs the header
        Metadata-Flavor: Google, else 403).
  GET /__stats      {"fetches": {"jwt-bearer": N, "refresh_token": N, "metadata": N, "<grant>:<tag>": N, ...},
                     "storage": {"accepted": N, "rejected": N, "faulted": N, "faulted:<bucket>": N}}
  POST /__fault?bucket=B&mode=503|chunk503|pass   503: answer storage requests for bucket B with 503 while the
                    mode lasts; chunk503: fail the first attempt of every resumable chunk (PUT with Content-Range).
  POST /__bucket?name=B                  create bucket B upstream (test setup, no token needed).
  anything else     storage: needs `Authorization: Bearer <token issued here, unexpired>`, else 401 with a
                    Google JSON error; then forwarded to --upstream.

fake-gcs-server ignores `ifGenerationMatch`, so the proxy enforces it as Google documents it, for uploads (query
`name`), object GETs and DELETEs: the object's current generation is read from upstream and, unless it equals
the condition (`0`: the object must not exist), the answer is 412 conditionNotMet. Check and request run under
one lock, so concurrent conditional writes are serialised as GCS does.
"""
import argparse, base64, http.client, json, os, re, secrets, sys, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

SCOPE = "https://www.googleapis.com/auth/devstorage.full_control"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
       "proxy-authenticate", "content-length", "host"}

ap = argparse.ArgumentParser()
for a in ("--upstream", "--pubkey", "--sa-email", "--client-id", "--client-secret", "--refresh-token"):
    ap.add_argument(a, required=True)
ap.add_argument("--lifetime", type=int, default=3600)
ap.add_argument("--port-file")
ap.add_argument("--max-seconds", type=int, default=3600)
args = ap.parse_args()
PUB = serialization.load_pem_public_key(open(args.pubkey, "rb").read())
UP_HOST, UP_PORT = args.upstream.rsplit(":", 1)
lock = threading.Lock()
tokens = {}        # token -> expiry (unix time); bogus tokens are never stored
fetches = {}
storage = {"accepted": 0, "rejected": 0, "faulted": 0}
faults = {}        # bucket -> mode
seen_chunks = set()  # (bucket, Content-Range) of chunks already failed once in chunk503 mode
conditional = threading.Lock()  # one ifGenerationMatch check-and-request at a time
PORT = 0


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def count(grant, tag):
    with lock:
        fetches[grant] = fetches.get(grant, 0) + 1
        if tag:
            fetches[f"{grant}:{tag}"] = fetches.get(f"{grant}:{tag}", 0) + 1


def issue(query):
    lifetime = int(query.get("lifetime", [args.lifetime])[0])
    mode = query.get("mode", [""])[0]
    tok = "ya29.rk-" + secrets.token_urlsafe(24)
    if mode != "bogus":
        with lock:
            tokens[tok] = time.time() + (-1 if mode == "expired" else lifetime)
    return {"access_token": tok, "expires_in": 3600 if mode == "expired" else lifetime, "token_type": "Bearer"}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def google_error(self, code, reason, message):
        self.reply(code, {"error": {"code": code, "message": message, "errors": [
            {"reason": reason, "message": message, "domain": "global"}]}})

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/token" and self.command == "POST":
            return self.token(q)
        if url.path == "/computeMetadata/v1/instance/service-accounts/default/token":
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.reply(403, {"error": "missing Metadata-Flavor: Google"})
            count("metadata", "")
            return self.reply(200, issue(q))
        if url.path == "/__stats":
            with lock:
                return self.reply(200, {"fetches": dict(fetches), "storage": dict(storage)})
        if url.path == "/__fault" and self.command == "POST":
            with lock:
                faults[q["bucket"][0]] = q.get("mode", ["pass"])[0]
            return self.reply(200, {"ok": True})
        if url.path == "/__bucket" and self.command == "POST":
            self.body()
            return self.forward("POST", "/storage/v1/b?project=test", json.dumps({"name": q["name"][0]}).encode(),
                                {"Content-Type": "application/json"})
        return self.storage(url)

    def token(self, q):
        form = urllib.parse.parse_qs(self.body().decode())
        grant = form.get("grant_type", [""])[0]
        tag = q.get("tag", [""])[0]
        if grant == JWT_GRANT:
            try:
                h, p, s = form["assertion"][0].split(".")
                PUB.verify(b64d(s), f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
            except Exception:
                return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            hdr, c = json.loads(b64d(h)), json.loads(b64d(p))
            now = time.time()
            aud = f"http://127.0.0.1:{PORT}{self.path}"
            problems = [n for n, ok in (("alg", hdr.get("alg") == "RS256"), ("iss", c.get("iss") == args.sa_email),
                                        ("aud", c.get("aud") == aud), ("scope", c.get("scope") == SCOPE),
                                        ("iat", abs(c.get("iat", 0) - now) <= 60),
                                        ("exp", c.get("exp") == c.get("iat", 0) + 3600)) if not ok]
            if problems:
                return self.reply(400, {"error": "invalid_grant", "error_description": "bad claims: " + ",".join(problems)})
            count("jwt-bearer", tag)
            return self.reply(200, issue(q))
        if grant == "refresh_token":
            if (form.get("client_id", [""])[0], form.get("client_secret", [""])[0], form.get("refresh_token", [""])[0]) \
                    != (args.client_id, args.client_secret, args.refresh_token):
                return self.reply(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            count("refresh_token", tag)
            return self.reply(200, issue(q))
        return self.reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"})

    def storage(self, url):
        auth = self.headers.get("Authorization", "")
        tok = auth[7:] if auth.startswith("Bearer ") else ""
        with lock:
            exp = tokens.get(tok)
        if exp is None or exp <= time.time():
            self.body()
            with lock:
                storage["rejected"] += 1
            msg = "Invalid Credentials" if exp is None else "Token expired"
            return self.google_error(401, "authError", msg)
        m = re.match(r"^(?:/upload)?/storage/v1/b/([^/?]+)", url.path)
        bucket = urllib.parse.unquote(m.group(1)) if m else ""
        with lock:
            mode = faults.get(bucket, "pass")
        crange = self.headers.get("Content-Range", "")
        first_try = False
        if mode == "chunk503" and self.command == "PUT" and re.match(r"^bytes \d+-\d+/\d+$", crange):
            with lock:
                first_try = (bucket, crange) not in seen_chunks
                seen_chunks.add((bucket, crange))
        if mode == "503" or first_try:
            self.body()
            with lock:
                storage["faulted"] += 1
                storage["faulted:" + bucket] = storage.get("faulted:" + bucket, 0) + 1
            return self.google_error(503, "backendError", "injected fault")
        with lock:
            storage["accepted"] += 1
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "authorization"}
        q = urllib.parse.parse_qs(url.query)
        want = q.get("ifGenerationMatch", [None])[0]
        obj = re.match(r"^/storage/v1/b/[^/]+/o/(.+)$", url.path)
        name = q.get("name", [None])[0] if url.path.startswith("/upload/") else (urllib.parse.unquote(obj.group(1)) if obj else None)
        if want is None or name is None:
            return self.forward(self.command, self.path, self.body(), headers)
        body = self.body()
        with conditional:
            current = self.generation(bucket, name)
            if (want == "0" and current is not None) or (want != "0" and current != want):
                return self.google_error(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.")
            return self.forward(self.command, self.path, body, headers)

    def generation(self, bucket, name):
        """The current generation of bucket/name upstream, None when it does not exist."""
        conn = http.client.HTTPConnection(UP_HOST, int(UP_PORT), timeout=60)
        try:
            conn.request("GET", "/storage/v1/b/%s/o/%s" % (urllib.parse.quote(bucket, safe=""), urllib.parse.quote(name, safe="")))
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        if r.status == 404:
            return None
        return str(json.loads(data).get("generation"))

    def forward(self, method, path, body, headers):
        conn = http.client.HTTPConnection(UP_HOST, int(UP_PORT), timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
        except OSError as e:
            return self.google_error(502, "backendError", f"upstream: {e.__class__.__name__}")
        finally:
            conn.close()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in HOP:
                continue
            if k.lower() == "location":
                v = v.replace(f"http://{args.upstream}", f"http://127.0.0.1:{PORT}")
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
PORT = srv.server_address[1]
if args.port_file:
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(PORT))
    os.rename(args.port_file + ".tmp", args.port_file)
print(f"gcs_auth_proxy listening on 127.0.0.1:{PORT}", flush=True)
threading.Timer(args.max_seconds, lambda: os._exit(0)).start()
srv.serve_forever()
