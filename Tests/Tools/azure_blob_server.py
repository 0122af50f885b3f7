#!/usr/bin/env python3
"""Azure Blob REST test server on loopback that verifies every credential with the azure-storage-blob SDK's own code.

    azure_blob_server.py --account ACCT --key KEY_B64 [--port 0] [--port-file F] [--token-lifetime 3600]
                         [--client-id ID --tenant-id T --federated-token-file F --identity-header H]

Storage (path-style, /ACCOUNT/container/blob): Create Container, Put Blob (BlockBlob, Content-MD5 checked),
Put Block (equal-length block ids), Put Block List, Get Blob (+ x-ms-range/Range -> 206), Get Blob Properties,
Delete Blob, List Blobs (prefix, delimiter, marker, maxresults; Creation-Time). Conditions of Put Blob and Delete
Blob: If-None-Match: * on an existing blob -> 409 BlobAlreadyExists; If-Match: ETAG on a missing blob or another
ETag -> 412 ConditionNotMet. Authorisation:
  SharedKey  the Authorization header must equal what SharedKeyCredentialPolicy computes for the request;
  SAS        sig must equal the signature the SDK's SAS generator computes from the token's own fields (container
             or account SAS), inside st..se, with the permission the operation needs (r w d l c);
  Bearer     only tokens this server issued and that have not expired (401 InvalidAuthenticationInfo otherwise).
Identity endpoints (short-lived tokens, fetches counted per kind):
  GET  /metadata/identity/oauth2/token   IMDS (Metadata: true, api-version 2018-02-01, client_id checked if sent)
  GET  /msi/token                        App Service (X-IDENTITY-HEADER must match, api-version 2019-08-01)
  POST /TENANT/oauth2/v2.0/token         workload identity (client_assertion = federated token file content)
--client-id may list several ids (comma-separated); token fetches are also counted per "kind:client_id", and storage
operations per first path element of the blob name ("by_prefix").
Test control: GET /_stats (JSON counters), POST /_revoke[?client_id=C] (forget issued tokens), POST
/_refuse?seconds=N[&prefix=P] (503 ServerBusy for N s to storage requests whose "container/blob-or-list-prefix"
starts with P), POST /_config?kind=K&token_lifetime=N (lifetime of tokens of kind K issued from now on).
"""
import argparse, base64, email.utils, hashlib, json, secrets, threading, time, urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from azure.storage.blob._shared.shared_access_signature import SharedAccessSignature
from azure.storage.blob._shared_access_signature import BlobSharedAccessSignature

ap = argparse.ArgumentParser()
for name, default in [("--account", None), ("--key", None), ("--port", "0"), ("--port-file", None),
                      ("--token-lifetime", "3600"), ("--client-id", "rk-client"), ("--tenant-id", "rk-tenant"),
                      ("--federated-token-file", None), ("--identity-header", "rk-identity-header")]:
    ap.add_argument(name, default=default)
A = ap.parse_args()
STORAGE = "https://storage.azure.com/"
lock = threading.Lock()
containers = {}   # name -> {blob name -> dict(data, etag, modified, created)}
blocks = {}       # (container, blob) -> {block id -> bytes}
tokens = {}       # token -> (kind, expiry, client id)
stats = {"token_fetches": {"imds": 0, "appservice": 0, "workload": 0}, "bearer_ok": {"imds": 0, "appservice": 0, "workload": 0},
         "bearer_rejected": 0, "sharedkey_ok": 0, "sharedkey_rejected": 0, "sas_ok": 0, "sas_rejected": 0,
         "token_fetches_by_client": {}, "by_prefix": {}, "refused": 0, "requests": 0, "put_block": 0, "put_block_list": 0, "put_blob": 0, "list": 0}
state = {"refuse_until": 0.0, "refuse_prefix": "", "lifetime": {}}  # lifetime overrides per token kind
CLIENTS = A.client_id.split(",")


def expected_sharedkey(method, url, headers):
    req = HttpRequest(method, url, headers={k: v for k, v in headers.items() if k.lower() != "authorization"})
    SharedKeyCredentialPolicy(A.account, A.key).on_request(PipelineRequest(req, PipelineContext(None)))
    return req.headers["Authorization"]


def expected_sas_sig(q, container):
    """The signature the SDK computes for the token's fields (None when the token names no known SAS kind)."""
    common = dict(permission=q.get("sp"), expiry=q.get("se"), start=q.get("st"), ip=q.get("sip"), protocol=q.get("spr"))
    if "ss" in q:
        tok = SharedAccessSignature(A.account, A.key, x_ms_version=q.get("sv")).generate_account(
            services=q["ss"], resource_types=q.get("srt"), **common)
    elif q.get("sr") == "c":
        sas = BlobSharedAccessSignature(A.account, account_key=A.key)
        sas.x_ms_version = q.get("sv")
        tok = sas.generate_container(container, **common)
    else:
        return None
    return urllib.parse.parse_qs(tok)["sig"][0]


def count(name, blob_or_prefix):
    """Bumps stats[name] and the same counter under the first path element of the blob name (callers hold lock)."""
    stats[name] += 1
    top = stats["by_prefix"].setdefault(blob_or_prefix.split("/")[0], {})
    top[name] = top.get(name, 0) + 1


def iso(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def new_token(kind, client):
    tok = "rk-%s-%s" % (kind, secrets.token_urlsafe(24))
    with lock:
        life = state["lifetime"].get(kind, int(A.token_lifetime))
        tokens[tok] = (kind, time.time() + life, client)
        stats["token_fetches"][kind] += 1
        by = stats["token_fetches_by_client"]
        by["%s:%s" % (kind, client)] = by.get("%s:%s" % (kind, client), 0) + 1
    return tok, life


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("x-ms-version", "2021-08-06")
        self.send_header("x-ms-request-id", secrets.token_hex(8))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def err(self, code, ecode, message=None):
        msg = escape(message or ecode) + "\nRequestId:%s\nTime:%s" % (secrets.token_hex(8), datetime.now(timezone.utc).isoformat())
        body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{ecode}</Code><Message>{msg}</Message></Error>'.encode()
        self.send(code, body, {"Content-Type": "application/xml", "x-ms-error-code": ecode})

    def json(self, code, obj):
        self.send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        body = self.read_body()
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        with lock:
            stats["requests"] += 1
        if u.path.startswith("/_"):
            return self.control(u.path, q)
        if u.path == "/metadata/identity/oauth2/token":
            return self.imds(q)
        if u.path == "/msi/token":
            return self.app_service(q)
        if u.path.endswith("/oauth2/v2.0/token"):
            return self.workload(u.path, body)
        parts = urllib.parse.unquote(u.path).lstrip("/").split("/", 2)
        if parts[0] != A.account:
            return self.err(400, "InvalidUri", "account %r not served here" % parts[0])
        cname = parts[1] if len(parts) > 1 else ""
        bname = parts[2] if len(parts) > 2 else ""
        denied = self.authorize(q, cname, bname)
        if denied:
            return self.err(*denied)
        target = cname + "/" + (bname or q.get("prefix", ""))
        if time.time() < state["refuse_until"] and target.startswith(state["refuse_prefix"]):
            with lock:
                stats["refused"] += 1
            return self.err(503, "ServerBusy", "The server is busy (test refusal).")
        with lock:
            return self.storage(q, cname, bname, body)

    # -- authorisation ----------------------------------------------------------------------------------------

    def authorize(self, q, cname, bname):
        auth = self.headers.get("Authorization") or ""
        if "sig" in q:
            return self.check_sas(q, cname, bname)
        if auth.startswith("SharedKey "):
            url = "http://%s%s" % (self.headers["Host"], self.path)
            ok = auth == expected_sharedkey(self.command, url, dict(self.headers.items()))
            with lock:
                stats["sharedkey_ok" if ok else "sharedkey_rejected"] += 1
            return None if ok else (403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure "
                                    "the value of Authorization header is formed correctly including the signature.")
        if auth.startswith("Bearer "):
            with lock:
                kind, exp, _ = tokens.get(auth[7:], (None, 0, None))
                if kind and exp > time.time():
                    stats["bearer_ok"][kind] += 1
                    return None
                stats["bearer_rejected"] += 1
            return (401, "InvalidAuthenticationInfo", "Server failed to authenticate the request. Please refer to the "
                    "information in the www-authenticate header.")
        return (401, "NoAuthenticationInformation", "Server failed to authenticate the request.")

    def check_sas(self, q, cname, bname):
        def fail(code, ecode, msg):
            with lock:
                stats["sas_rejected"] += 1
            return (code, ecode, msg)
        try:
            want = expected_sas_sig(q, cname)
        except Exception as e:  # malformed fields
            return fail(403, "AuthenticationFailed", "Signature fields are not well formed: %s" % type(e).__name__)
        if want is None or want != q["sig"]:
            return fail(403, "AuthenticationFailed", "Signature did not match.")
        now = datetime.now(timezone.utc)
        if (q.get("st") and iso(q["st"]) > now) or iso(q.get("se")) is None or iso(q["se"]) < now:
            return fail(403, "AuthenticationFailed", "Signature not valid in the specified time frame")
        if q.get("spr") == "https":
            return fail(403, "AuthorizationProtocolMismatch", "This request is not authorized to use this protocol.")
        m, restype, comp = self.command, q.get("restype"), q.get("comp")
        need = ("l" if comp == "list" else "c" if restype == "container" and m == "PUT" else
                "d" if m == "DELETE" else "w" if m == "PUT" else "r")
        if need not in q.get("sp", ""):
            return fail(403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission.")
        with lock:
            stats["sas_ok"] += 1
        return None

    # -- storage ----------------------------------------------------------------------------------------------

    def storage(self, q, cname, bname, body):
        now = email.utils.formatdate(usegmt=True)
        if not bname and q.get("restype") == "container":
            if self.command == "PUT":
                if cname in containers:
                    return self.err(409, "ContainerAlreadyExists")
                containers[cname] = {}
                return self.send(201, headers={"ETag": '"0x1"', "Last-Modified": now})
            if self.command == "GET" and q.get("comp") == "list":
                return self.list_blobs(cname, q)
        c = containers.get(cname)
        if c is None:
            return self.err(404, "ContainerNotFound", "The specified container does not exist.")
        if not bname:
            return self.err(400, "InvalidUri")
        if self.command == "PUT":
            md5 = self.headers.get("Content-MD5")
            if md5 and base64.b64decode(md5) != hashlib.md5(body).digest():
                return self.err(400, "Md5Mismatch")
            comp = q.get("comp")
            if comp == "block":
                bid = q.get("blockid", "")
                pending = blocks.setdefault((cname, bname), {})
                if not bid or len(base64.b64decode(bid)) > 64 or any(len(k) != len(bid) for k in pending):
                    return self.err(400, "InvalidBlobOrBlock", "The specified blob or block content is invalid.")
                pending[bid] = body
                count("put_block", bname)
                return self.send(201, headers={"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()})
            if comp == "blocklist":
                pending = blocks.get((cname, bname), {})
                ids = [e.text for e in ElementTree.fromstring(body) if e.tag in ("Latest", "Uncommitted")]
                if any(i not in pending for i in ids):
                    return self.err(400, "InvalidBlockList", "The specified block list is invalid.")
                data = b"".join(pending[i] for i in ids)
                blocks.pop((cname, bname), None)
                count("put_block_list", bname)
                return self.store(c, bname, data, now)
            if self.headers.get("x-ms-blob-type") != "BlockBlob":
                return self.err(400, "InvalidHeaderValue", "x-ms-blob-type")
            if self.headers.get("If-None-Match") == "*" and bname in c:
                return self.err(409, "BlobAlreadyExists")
            if self.condition_fails(c, bname):
                return self.err(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
            count("put_blob", bname)
            return self.store(c, bname, body, now)
        if bname not in c:
            return self.err(404, "BlobNotFound", "The specified blob does not exist.")
        b = c[bname]
        if self.command == "DELETE":
            if self.condition_fails(c, bname):
                return self.err(412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.")
            del c[bname]
            return self.send(202)
        data = b["data"]
        hdr = {"ETag": b["etag"], "Last-Modified": b["modified"], "x-ms-creation-time": b["created"],
               "x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}
        rng = self.headers.get("x-ms-range") or self.headers.get("Range")
        if rng and rng.startswith("bytes=") and self.command == "GET":
            a, _, z = rng[6:].partition("-")
            a = int(a)
            z = min(int(z) if z else len(data) - 1, len(data) - 1)
            hdr["Content-Range"] = "bytes %d-%d/%d" % (a, z, len(data))
            return self.send(206, data[a:z + 1], hdr)
        if self.command == "HEAD":
            self.send_response(200)
            for k, v in hdr.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            return self.end_headers()
        return self.send(200, data, hdr)

    def condition_fails(self, c, bname):
        want = self.headers.get("If-Match")
        return want is not None and want != "*" and (bname not in c or c[bname]["etag"] != want)

    def store(self, c, bname, data, now):
        created = c[bname]["created"] if bname in c else now
        etag = '"0x%s"' % hashlib.md5(data + now.encode()).hexdigest()[:16].upper()
        c[bname] = {"data": data, "etag": etag, "modified": now, "created": created}
        return self.send(201, headers={"ETag": etag, "Last-Modified": now,
                                       "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()})

    def list_blobs(self, cname, q):
        c = containers.get(cname)
        if c is None:
            return self.err(404, "ContainerNotFound", "The specified container does not exist.")
        count("list", q.get("prefix", ""))
        prefix, delim, marker = q.get("prefix", ""), q.get("delimiter"), q.get("marker", "")
        maxr = int(q.get("maxresults", 5000))
        items, seen = [], set()
        for name in sorted(c):
            if not name.startswith(prefix) or (marker and name < marker):
                continue
            rest = name[len(prefix):]
            if delim and delim in rest:
                p = prefix + rest.split(delim)[0] + delim
                if p not in seen:
                    seen.add(p)
                    items.append(("P", p, name))
            else:
                items.append(("B", name, name))
        page, nxt = items[:maxr], (items[maxr][2] if len(items) > maxr else "")
        xml = ['<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://%s/%s/" ContainerName="%s">'
               % (self.headers["Host"], A.account, escape(cname)),
               "<Prefix>%s</Prefix><Marker>%s</Marker><MaxResults>%d</MaxResults>" % (escape(prefix), escape(marker), maxr)]
        if delim:
            xml.append("<Delimiter>%s</Delimiter>" % escape(delim))
        xml.append("<Blobs>")
        for kind, name, _ in page:
            if kind == "P":
                xml.append("<BlobPrefix><Name>%s</Name></BlobPrefix>" % escape(name))
                continue
            b = c[name]
            xml.append("<Blob><Name>%s</Name><Properties><Creation-Time>%s</Creation-Time><Last-Modified>%s</Last-Modified>"
                       "<Etag>%s</Etag><Content-Length>%d</Content-Length><Content-Type>application/octet-stream</Content-Type>"
                       "<BlobType>BlockBlob</BlobType><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
                       "</Properties></Blob>" % (escape(name), b["created"], b["modified"], b["etag"], len(b["data"])))
        xml.append("</Blobs><NextMarker>%s</NextMarker></EnumerationResults>" % escape(nxt))
        self.send(200, "".join(xml).encode(), {"Content-Type": "application/xml"})

    # -- identity endpoints -----------------------------------------------------------------------------------

    def imds(self, q):
        if self.headers.get("Metadata") != "true":
            return self.json(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
        if q.get("api-version") != "2018-02-01" or q.get("resource") != STORAGE:
            return self.json(400, {"error": "invalid_request", "error_description": "bad api-version or resource"})
        if "client_id" in q and q["client_id"] not in CLIENTS:
            return self.json(400, {"error": "invalid_request", "error_description": "Identity not found"})
        tok, life = new_token("imds", q.get("client_id", "-"))
        self.json(200, {"access_token": tok, "refresh_token": "", "expires_in": str(life), "expires_on": str(int(time.time()) + life),
                        "not_before": str(int(time.time())), "resource": STORAGE, "token_type": "Bearer"})

    def app_service(self, q):
        if self.headers.get("X-IDENTITY-HEADER") != A.identity_header:
            return self.json(401, {"statusCode": 401, "message": "Unauthorized request: X-IDENTITY-HEADER is missing or wrong"})
        if q.get("api-version") != "2019-08-01" or q.get("resource") != STORAGE:
            return self.json(400, {"error": {"code": "BadRequest", "message": "bad api-version or resource"}})
        if "client_id" in q and q["client_id"] not in CLIENTS:
            return self.json(400, {"error": {"code": "BadRequest", "message": "Identity not found"}})
        tok, life = new_token("appservice", q.get("client_id", "-"))
        self.json(200, {"access_token": tok, "expires_on": str(int(time.time()) + life), "resource": STORAGE,
                        "token_type": "Bearer", "client_id": q.get("client_id", CLIENTS[0])})

    def workload(self, path, body):
        f = dict(urllib.parse.parse_qsl(body.decode()))
        tenant = path.strip("/").split("/")[0]
        try:
            federated = open(A.federated_token_file).read().strip() if A.federated_token_file else None
        except OSError:
            federated = None

        def bad(code, error, desc):
            return self.json(code, {"error": error, "error_description": desc})
        if self.command != "POST" or tenant != A.tenant_id:
            return bad(400, "invalid_request", "AADSTS90002: Tenant '%s' not found." % tenant)
        if f.get("grant_type") != "client_credentials" or f.get("scope") != STORAGE + ".default":
            return bad(400, "invalid_scope" if f.get("scope") != STORAGE + ".default" else "unsupported_grant_type", "bad grant or scope")
        if f.get("client_id") not in CLIENTS:
            return bad(400, "unauthorized_client", "AADSTS700016: Application not found.")
        if (f.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                or not federated or f.get("client_assertion") != federated):
            return bad(401, "invalid_client", "AADSTS700024: Client assertion is not within its valid time range or does not match.")
        tok, life = new_token("workload", f["client_id"])
        self.json(200, {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": tok})

    # -- test control -----------------------------------------------------------------------------------------

    def control(self, path, q):
        with lock:
            if path == "/_stats":
                return self.json(200, dict(stats, token_lifetime=state["lifetime"], tokens=len(tokens)))
            if path == "/_revoke":
                for t in [t for t, v in tokens.items() if q.get("client_id") in (None, v[2])]:
                    del tokens[t]
            elif path == "/_refuse":
                state["refuse_until"] = time.time() + float(q.get("seconds", "0"))
                state["refuse_prefix"] = q.get("prefix", "")
            elif path == "/_config" and "token_lifetime" in q and "kind" in q:
                state["lifetime"][q["kind"]] = int(q["token_lifetime"])
            else:
                return self.json(404, {"error": "unknown control path"})
        return self.json(200, {"ok": True})

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = handle_any

    def log_message(self, *a):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", int(A.port)), H)
srv.daemon_threads = True
if A.port_file:
    with open(A.port_file + ".tmp", "w") as fh:
        fh.write(str(srv.server_address[1]))
    import os
    os.replace(A.port_file + ".tmp", A.port_file)
srv.serve_forever()
