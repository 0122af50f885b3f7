#!/usr/bin/env python3
"""Per-backend figures of issue 10 (S3, GCS, Azure Blob, SFTP when its test server exists), on the test servers that
scripts/start-*.sh run on loopback:

  python3 bench/backends_bench.py [--reps 3] [--restore-mb 200] [--tx 5000] [--idle 30] [--launcher PATH]
                                  [--backends s3,gs,abs,sftp] [--write]

For each backend:
- restore of a --restore-mb database (half compressible text rows, half random blobs) plus 3,000 transactions:
  ours from the backend, against the floor "curl downloads the same objects from the same server" + "our restore of
  those objects from a file replica" (so a slow test server is not counted against us); target ratio <= 1.2.
  Every restore is verified (integrity_check and a content hash of every row against the source).
- requests per 1,000 transactions (--tx one-row transactions at 1,000/s, sync-interval 1s), counted by
  Tests/Tools/faultproxy.py in front of the storage endpoint (SFTP: not an HTTP store, not counted); target: no more
  than the S3 client's.
- requests while idle (--idle seconds without writes): target 0.
- identity-token fetches during the replicate run (GCS and Azure test servers count them): once per lifetime.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.parse, urllib.request, uuid
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402

ROOT, log, MB = suite.ROOT, suite.log, suite.MB


def start(script, env):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", script)], check=True, env=env,
                         stdout=subprocess.PIPE, text=True).stdout
    v = suite.parse_exports(out)
    pids = [w for line in out.splitlines() if line.startswith("RK_STOP_PIDS=") for w in line.split('"')[1].split()
            if w.isdigit()]
    dirs = [w for line in out.splitlines() if line.startswith("RK_STOP_DIRS=") for w in line.split('"')[1].split()
            if w.startswith("/")]
    return v, pids, dirs


def mixed_db(path, mb):
    """Half ordinary text rows (compress to about 0.6 with LZ4), half 3,000-byte random blobs."""
    import sqlite3, random
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, author TEXT, body TEXT, n INTEGER)")
    con.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB)")
    words = ("order shipped customer invoice payment pending refund address street city account balance "
             "monday tuesday review product quantity price total discount status delivered").split()
    rnd = random.Random(7)
    n_text = int(mb * MB / 2 // 520)
    for i in range(0, n_text, 5000):
        con.executemany("INSERT INTO notes (author, body, n) VALUES (?, ?, ?)",
                        ((f"user{rnd.randint(1, 5000)}", " ".join(rnd.choice(words) for _ in range(70)),
                          rnd.randint(0, 10**6)) for _ in range(min(5000, n_text - i))))
        con.commit()
    n_blob = int(mb * MB / 2 // 3100)
    for i in range(0, n_blob, 5000):
        con.executemany("INSERT INTO big (v) VALUES (?)", ((os.urandom(3000),) for _ in range(min(5000, n_blob - i))))
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


class Backend:
    """How to reach one backend: the replica block of a config, the launcher's environment, and curl's way to
    download one object."""

    def __init__(self, kind, v, prefix, endpoint=None):
        self.kind, self.v, self.prefix = kind, v, prefix
        self.endpoint = endpoint  # storage endpoint override (the counting proxy), else the server's own

    def replica_yaml(self):
        v, p = self.v, self.prefix
        if self.kind == "s3":
            ep = self.endpoint or v["RK_S3_ENDPOINT"]
            return (f"      - type: s3\n        bucket: {v['RK_S3_BUCKET']}\n        path: {p}\n        endpoint: {ep}\n"
                    f"        region: us-east-1\n        force-path-style: true\n")
        if self.kind == "gs":
            return (f"      - type: gs\n        bucket: {v['RK_GCS_BUCKET']}\n        path: {p}\n"
                    f"        endpoint: {self.endpoint or v['RK_GCS_ENDPOINT']}\n")
        if self.kind == "abs":
            ep = self.endpoint or v["RK_AZURE_ENDPOINT"]
            return (f"      - url: abs://{v['RK_AZURE_ACCOUNT']}@{v['RK_AZURE_CONTAINER']}/{p}\n        endpoint: {ep}\n")
        if self.kind == "sftp":
            return (f"      - url: sftp://{v['RK_SFTP_USER']}@{v['RK_SFTP_HOST']}{v['RK_SFTP_ROOT']}/{p}\n"
                    f"        key-path: {v['RK_SFTP_KEY']}\n        host-key: \"{v['RK_SFTP_HOST_FINGERPRINT']}\"\n")
        raise ValueError(self.kind)

    def env(self):
        e = dict(os.environ)
        v = self.v
        if self.kind == "s3":
            e.update(AWS_ACCESS_KEY_ID=v["RK_S3_ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY=v["RK_S3_SECRET_ACCESS_KEY"])
        elif self.kind == "gs":
            e["GOOGLE_APPLICATION_CREDENTIALS"] = v["RK_GCS_SA_FILE"]
        elif self.kind == "abs":
            e["LITESTREAM_AZURE_ACCOUNT_KEY"] = v["RK_AZURE_ACCOUNT_KEY"]
        return e

    def curl_args(self, key, out):
        """curl arguments that download object `key` (relative to the bucket or container) to `out`."""
        v = self.v
        if self.kind == "s3":
            return ["-o", out, f"{v['RK_S3_ENDPOINT']}/{v['RK_S3_BUCKET']}/{urllib.parse.quote(key)}"]
        if self.kind == "gs":
            return ["-o", out, f"{v['RK_GCS_ENDPOINT']}/storage/v1/b/{v['RK_GCS_BUCKET']}/o/"
                               f"{urllib.parse.quote(key, safe='')}?alt=media"]
        if self.kind == "abs":
            return ["-o", out, f"{v['RK_AZURE_ENDPOINT']}/{v['RK_AZURE_CONTAINER']}/{urllib.parse.quote(key)}"
                               f"?{v['RK_AZURE_SAS_TOKEN'].lstrip('?')}"]
        if self.kind == "sftp":
            return ["-o", out, f"sftp://{v['RK_SFTP_USER']}@{v['RK_SFTP_HOST']}{v['RK_SFTP_ROOT']}/{key}"]
        raise ValueError(self.kind)

    def curl_common(self):
        v = self.v
        if self.kind == "s3":
            return ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{v['RK_S3_ACCESS_KEY_ID']}:{v['RK_S3_SECRET_ACCESS_KEY']}"]
        if self.kind == "gs":
            req = urllib.request.Request(f"http://{v['RK_GCS_METADATA_HOST']}/computeMetadata/v1/instance/service-"
                                         "accounts/default/token", headers={"Metadata-Flavor": "Google"})
            tok = json.load(urllib.request.urlopen(req))["access_token"]
            return ["-H", f"Authorization: Bearer {tok}"]
        if self.kind == "sftp":
            return ["--key", v["RK_SFTP_KEY"], "--hostpubsha256", v["RK_SFTP_HOST_FINGERPRINT"].removeprefix("SHA256:")]
        return []

    def token_fetches(self):
        try:
            if self.kind == "gs":
                return json.load(urllib.request.urlopen(self.v["RK_GCS_STATS_URL"]))
            if self.kind == "abs":
                return json.load(urllib.request.urlopen(self.v["RK_AZURE_STATS_URL"]))
        except Exception as e:  # noqa: BLE001 - a figure, not a check
            return {"error": str(e)}
        return None


def write_config(path, db, backend, sync="1s"):
    with open(path, "w") as f:
        f.write(f"dbs:\n  - path: {db}\n    replicas:\n" + backend.replica_yaml() + f"        sync-interval: {sync}\n")


def listed_objects(exe, cfg, db, env):
    """Object names of the replica (relative to its path), from our own `snapshots` and `wal` listings."""
    def rows(cmd):
        out = subprocess.run([exe, cmd, "-config", cfg, db], env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
        return [ln.split() for ln in out.splitlines()[1:] if ln.strip()]
    names = []
    for r in rows("snapshots"):  # replica generation index size created
        names.append(f"generations/{r[1]}/snapshots/{int(r[2], 16):016x}.snapshot.lz4")
    for r in rows("wal"):  # replica generation index offset size created
        names.append(f"generations/{r[1]}/wal/{int(r[2], 16):016x}/{int(r[3], 16):016x}.wal.lz4")
    return names


def restore_run(exe, backend, big, work):
    d = tempfile.mkdtemp(prefix=f"bb-{backend.kind}-", dir=work)
    db, cfg = os.path.join(d, "db"), os.path.join(d, "litestream.yml")
    shutil.copy(big, db)
    write_config(cfg, db, backend)
    env = backend.env()
    p = suite.spawn([exe, "replicate", "-config", cfg], os.path.join(d, "replicate.log"), env=env)
    try:
        suite.wait_until(lambda: "snapshot written" in open(os.path.join(d, "replicate.log")).read(), 600,
                         f"the first snapshot ({backend.kind})", p, interval=0.5)
        suite.write_events(db, 3000, 3000)
    finally:
        suite.stop(p, timeout=600)
    want = suite.content_hash(db)
    res = {}
    out = os.path.join(d, "restored.db")
    wall, cpu, rss = _restore_config(exe, cfg, db, out, env, d)
    suite.verify_restored(f"restore from {backend.kind}", out, want)
    res["ours_s"], res["ours_rss_mb"] = wall, rss / MB
    # The floor: curl fetches the same objects from the same server, then our file-replica restore of them.
    names = listed_objects(exe, cfg, db, env)
    mirror = os.path.join(d, "mirror")
    args = ["curl", "-sS", "--fail", "--create-dirs"] + backend.curl_common()
    for n in names:
        args += backend.curl_args(f"{backend.prefix}/{n}", os.path.join(mirror, n))
    t0 = time.monotonic()
    subprocess.run(args, check=True)
    res["curl_s"] = time.monotonic() - t0
    out2 = os.path.join(d, "restored-file.db")
    t0 = time.monotonic()
    subprocess.run([exe, "restore", "-o", out2, "file://" + mirror], check=True, stdout=subprocess.DEVNULL)
    res["file_s"] = time.monotonic() - t0
    suite.verify_restored(f"file restore of the {backend.kind} objects", out2, want)
    res["ratio"] = res["ours_s"] / (res["curl_s"] + res["file_s"])
    res["objects"] = len(names)
    shutil.rmtree(d, ignore_errors=True)
    return res


def _restore_config(exe, cfg, db, out, env, d):
    logpath = os.path.join(d, "restore.log")
    t0 = time.monotonic()
    p = suite.spawn([exe, "restore", "-config", cfg, "-o", out, db], logpath, env=env)
    rc, cpu, rss = suite.wait4(p)
    if rc != 0:
        raise RuntimeError(f"restore exited {rc}:\n{suite.tail_of(logpath)}")
    return time.monotonic() - t0, cpu, rss


def replicate_run(exe, backend, proxy_port, stats, tx, idle, work):
    d = tempfile.mkdtemp(prefix=f"bb-rep-{backend.kind}-", dir=work)
    db, cfg = os.path.join(d, "db"), os.path.join(d, "litestream.yml")
    suite.make_events_db(db)
    write_config(cfg, db, backend)
    env = backend.env()
    p = suite.spawn([exe, "replicate", "-config", cfg], os.path.join(d, "replicate.log"), env=env)
    try:
        suite.wait_until(lambda: "snapshot written" in open(os.path.join(d, "replicate.log")).read(), 120,
                         "the first snapshot", p, interval=0.2)
        tokens0 = backend.token_fetches()
        r0 = _requests(stats)
        suite.write_events(db, tx, 1000)
        time.sleep(2.5)  # one sync-interval and more: the last WAL is uploaded
        r1 = _requests(stats)
        time.sleep(idle)  # the idle window itself is the measurement
        r2 = _requests(stats)
        tokens1 = backend.token_fetches()
    finally:
        suite.stop(p, timeout=120)
    shutil.rmtree(d, ignore_errors=True)
    out = {"requests_per_1k": None if r0 is None else (r1 - r0) / (tx / 1000),
           "idle_requests": None if r0 is None else r2 - r1}
    if tokens0 is not None:
        out["tokens"] = {"before": tokens0, "after": tokens1}
    return out


def _requests(stats):
    if not stats:
        return None
    with open(stats) as f:
        return json.load(f)["requests"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--restore-mb", type=int, default=200)
    ap.add_argument("--tx", type=int, default=5000)
    ap.add_argument("--idle", type=int, default=30)
    ap.add_argument("--backends", default="s3,gs,abs,sftp")
    ap.add_argument("--launcher")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    exe = os.path.abspath(a.launcher) if a.launcher else suite.build_ours()
    env = dict(os.environ, RK_S3_VENV=os.path.join(ROOT, ".venv-test"),
               PATH=os.path.join(ROOT, ".venv-test", "bin") + ":" + os.environ["PATH"])
    scripts = {"s3": "start-seaweedfs.sh", "gs": "start-gcs.sh", "abs": "start-azure.sh", "sftp": "start-sftp.sh"}
    wanted = [b for b in a.backends.split(",") if os.path.exists(os.path.join(ROOT, "scripts", scripts[b]))]
    work = tempfile.mkdtemp(prefix="backends-bench-")
    pids, dirs, proxies = [], [], []
    results = {}
    try:
        servers = {}
        for b in wanted:
            log(f"starting the {b} test server (scripts/{scripts[b]})")
            v, ps, ds = start(scripts[b], env)
            servers[b], pids, dirs = v, pids + ps, dirs + ds
        big = os.path.join(work, "big.db")
        log(f"building a {a.restore_mb} MB database (half text rows, half random blobs)")
        mixed_db(big, a.restore_mb)
        for b in wanted:
            v = servers[b]
            endpoint_key = {"s3": "RK_S3_ENDPOINT", "gs": "RK_GCS_ENDPOINT", "abs": "RK_AZURE_ENDPOINT"}.get(b)
            proxy_port, stats = None, None
            if endpoint_key:
                ep = urllib.parse.urlsplit(v[endpoint_key])
                pdir = tempfile.mkdtemp(dir=work)
                proc, proxy_port, stats = _proxy(ep.netloc, pdir)
                proxies.append(proc)
            res = {}
            for rep in range(a.reps):
                prefix = f"bench-{b}-{uuid.uuid4().hex[:8]}"
                proxied = None
                if proxy_port:
                    ep = urllib.parse.urlsplit(v[endpoint_key])
                    proxied = f"http://127.0.0.1:{proxy_port}{ep.path}"
                log(f"{b}: replicate {a.tx} tx + {a.idle} s idle, rep {rep + 1}/{a.reps}")
                for k, val in replicate_run(exe, Backend(b, v, prefix, proxied), proxy_port, stats, a.tx, a.idle,
                                            work).items():
                    res.setdefault(k, []).append(val)
                log(f"{b}: restore {a.restore_mb} MB, rep {rep + 1}/{a.reps}")
                for k, val in restore_run(exe, Backend(b, v, prefix + "-r"), big, work).items():
                    res.setdefault(k, []).append(val)
            results[b] = res
            log(f"{b}: {json.dumps({k: v for k, v in res.items() if k != 'tokens'})}")
    finally:
        for p in proxies:
            p.kill()
        suite.kill_all()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    table = report(results, a)
    print(table)
    if a.write:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(f"\n## Replica backends (issue 10)\n\nCommand: `python3 bench/backends_bench.py --reps {a.reps} "
                    f"--restore-mb {a.restore_mb} --tx {a.tx} --idle {a.idle} --write`\n\n{table}\n")


def _proxy(upstream, pdir):
    ctl, stats, portf = (os.path.join(pdir, n) for n in ("ctl", "stats.json", "port"))
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests", "Tools", "faultproxy.py"), "--upstream", upstream,
                          "--control", ctl, "--stats", stats, "--port-file", portf, "--max-seconds", "7200"],
                         stdout=subprocess.DEVNULL)
    suite.wait_until(lambda: os.path.exists(portf) and open(portf).read().strip(), 30, "faultproxy", p, interval=0.05)
    return p, int(open(portf).read()), stats


def report(results, a):
    def med(xs):
        xs = sorted(x for x in xs if x is not None)
        return xs[len(xs) // 2] if xs else None

    def fmt(x, d=2):
        return "n/a" if x is None else f"{x:.{d}f}"
    s3_req = med(results.get("s3", {}).get("requests_per_1k", []))
    lines = ["| backend | restore ours s | curl + file-restore floor s | ratio (target ≤ 1.2) | restore peak RSS MB | "
             "requests / 1,000 tx (target ≤ S3's) | requests while idle (target 0) | objects |",
             "|---|---|---|---|---|---|---|---|"]
    for b, r in results.items():
        floor = med([c + f for c, f in zip(r["curl_s"], r["file_s"])])
        req = med(r.get("requests_per_1k", []))
        lines.append(f"| {b} | {fmt(med(r['ours_s']))} | {fmt(floor)} | {fmt(med(r['ratio']))} | "
                     f"{fmt(med(r['ours_rss_mb']), 1)} | {fmt(req, 1)}{'' if req is None or s3_req is None or b == 's3' else (' ✓' if req <= s3_req else ' ✗')} | "
                     f"{fmt(med(r.get('idle_requests', [])), 0)} | {med(r['objects'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
