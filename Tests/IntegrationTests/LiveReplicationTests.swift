import Foundation
import Testing

/// Live read replication over HTTP (`-addr`, `/stream`, `upstream:`), with separate launcher processes on loopback.
extension ReplicationIntegrationTests {
    @Suite struct LiveReplicationTests {
        typealias H = ReplicationHarness
        typealias L = LiveHarness

        @Test func threeFollowersConvergeUnderLoadAndReadersNeverSeeATornState() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db")
            try H.runWriter(db, rate: 2000, count: 1)
            let (primary, url) = try L.startPrimary(sb, db: db, log: "primary.log")
            var followers: [RunningProcess] = []
            var readers: [ReplicaReader] = []
            for i in 1...3 {
                let local = sb.path("replica\(i).db")
                followers.append(try L.startFollower(sb, local: local, url: url, primaryDB: db, name: "replica\(i)"))
                readers.append(ReplicaReader(path: local))
            }
            try H.runWriter(db, rate: 1000, count: 5000)
            for i in 1...3 {
                let local = sb.path("replica\(i).db")
                let problem = L.converge(local, to: db)
                #expect(problem == nil, "\(problem ?? "")\n\(H.tail(followers[i - 1].output))")
                #expect(try sqlite(local, "PRAGMA integrity_check;") == "ok")
            }
            for (i, r) in readers.enumerated() {
                r.stop()
                #expect(r.problems.isEmpty, "reader of replica\(i + 1): \(r.problems.prefix(5))")
                #expect(r.reads > 10, "reader of replica\(i + 1) only read \(r.reads) times")
            }
            #expect(L.count("stream snapshot:", in: primary) == 3, "\(H.tail(primary.output))")
            for f in followers { #expect(H.stop(f) == 0) }
            #expect(H.stop(primary) == 0)
        }

        @Test func sixteenFollowersAtOnce() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db")
            try H.runWriter(db, rate: 2000, count: 50)
            let (primary, url) = try L.startPrimary(sb, db: db, log: "primary.log")
            var followers: [RunningProcess] = []
            for i in 1...16 {
                followers.append(try L.startFollower(sb, local: sb.path("f\(i).db"), url: url, primaryDB: db, name: "f\(i)"))
            }
            try H.runWriter(db, rate: 200, count: 400)
            for i in 1...16 {
                let problem = L.converge(sb.path("f\(i).db"), to: db)
                #expect(problem == nil, "\(problem ?? "")\n\(H.tail(followers[i - 1].output))")
            }
            // All sixteen were attached at once (each got its own snapshot record from one shared copy).
            #expect(L.count("stream snapshot:", in: primary) == 16)
            for f in followers { #expect(H.stop(f) == 0) }
            #expect(H.stop(primary) == 0)
        }

        @Test func primaryRestartResumesWithoutSnapshotAndANewGenerationResnapshots() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db"), local = sb.path("replica.db")
            try H.runWriter(db, rate: 2000, count: 200)
            var (primary, url) = try L.startPrimary(sb, db: db, log: "primary1.log")
            let port = Int(url.split(separator: ":").last ?? "") ?? 0
            let follower = try L.startFollower(sb, local: local, url: url, primaryDB: db, name: "replica")
            #expect(L.converge(local, to: db) == nil)
            #expect(H.stop(primary) == 0)

            // Same database, same generation: the follower resumes where it was.
            (primary, _) = try L.startPrimary(sb, db: db, port: port, log: "primary2.log")
            try H.runWriter(db, rate: 500, count: 300)
            let problem = L.converge(local, to: db)
            #expect(problem == nil, "\(problem ?? "")\n\(H.tail(follower.output))")
            #expect(L.count("stream snapshot:", in: primary) == 0, "restarted primary sent a snapshot:\n\(H.tail(primary.output))")
            #expect(L.count("snapshot applied", in: follower) == 1, "\(H.tail(follower.output))")
            #expect(H.stop(primary) == 0)

            // The database replaced: a new generation, so a new snapshot with the new content.
            H.removeDatabaseFiles(db)
            try H.runWriter(db, rate: 2000, count: 50)
            (primary, _) = try L.startPrimary(sb, db: db, port: port, log: "primary3.log")
            try H.runWriter(db, rate: 2000, count: 20)
            let problem2 = L.converge(local, to: db)
            #expect(problem2 == nil, "\(problem2 ?? "")\n\(H.tail(follower.output))")
            // The follower logs the snapshot just after making it visible: poll for the line.
            #expect(poll(timeout: 10) { L.count("snapshot applied", in: follower) == 2 }, "\(H.tail(follower.output))")
            #expect(try sqlite(local, "PRAGMA integrity_check;") == "ok")
            #expect(H.stop(follower) == 0)
            #expect(H.stop(primary) == 0)
        }

        @Test func followerRestartResumesFromItsStoredPosition() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db"), local = sb.path("replica.db")
            try H.runWriter(db, rate: 2000, count: 100)
            let (primary, url) = try L.startPrimary(sb, db: db, log: "primary.log")
            let first = try L.startFollower(sb, local: local, url: url, primaryDB: db, name: "replica-a")
            #expect(L.converge(local, to: db) == nil)
            #expect(H.stop(first) == 0)
            let position = try String(contentsOfFile: sb.path("replica.db-litestream/position"), encoding: .utf8)
            try H.runWriter(db, rate: 500, count: 200)
            let second = try L.startFollower(sb, local: local, url: url, primaryDB: db, name: "replica-b")
            let problem = L.converge(local, to: db)
            #expect(problem == nil, "\(problem ?? "")\n\(H.tail(second.output))")
            #expect(L.count("receiving snapshot", in: second) == 0, "restarted follower took a snapshot:\n\(H.tail(second.output))")
            #expect(second.output.contains("stream connected") == false)  // that line is the primary's
            #expect(primary.output.contains("pos=\(position.trimmingCharacters(in: .whitespacesAndNewlines)) snapshot=false"),
                    "primary did not see the stored position \(position):\n\(H.tail(primary.output))")
            #expect(H.stop(second) == 0)
            #expect(H.stop(primary) == 0)
        }

        @Test func followerKeepsServingReadsWhileThePrimaryIsDownAndCatchesUp() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db"), local = sb.path("replica.db")
            try H.runWriter(db, rate: 2000, count: 100)
            var (primary, url) = try L.startPrimary(sb, db: db, log: "primary1.log")
            let port = Int(url.split(separator: ":").last ?? "") ?? 0
            let follower = try L.startFollower(sb, local: local, url: url, primaryDB: db, name: "replica")
            #expect(L.converge(local, to: db) == nil)
            primary.signal(SIGKILL)
            _ = primary.wait(timeout: 10)
            #expect(follower.waitForOutput("stream error, retrying", timeout: 30), "\(H.tail(follower.output))")
            try H.runWriter(db, rate: 2000, count: 100)
            // Reads keep working on the follower's last state while the primary is away.
            #expect(try H.eventCount(local) == 100)
            #expect(follower.waitForOutput("retrying in 1s", timeout: 30), "backoff did not grow:\n\(H.tail(follower.output))")
            #expect(try H.eventCount(local) == 100)
            (primary, _) = try L.startPrimary(sb, db: db, port: port, log: "primary2.log")
            let problem = L.converge(local, to: db)
            #expect(problem == nil, "\(problem ?? "")\n\(H.tail(follower.output))")
            #expect(H.stop(follower) == 0)
            #expect(H.stop(primary) == 0)
        }

        @Test func badRequestsGetUpstreamsAnswers() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db")
            try H.runWriter(db, rate: 2000, count: 10)
            let (primary, url) = try L.startPrimary(sb, db: db, log: "primary.log")
            let unknown = try L.http(url + "/stream?path=/no/such.db")
            #expect(unknown.status == 404 && unknown.body == "Database not found", "\(unknown)")
            let badIndex = try L.http(url + "/stream?path=\(db)&generation=0123456789abcdef&index=xyz")
            #expect(badIndex.status == 400 && badIndex.body == "Invalid index query parameter", "\(badIndex)")
            let noPath = try L.http(url + "/stream")
            #expect(noPath.status == 400 && noPath.body == "Database name required", "\(noPath)")
            let post = try L.http(url + "/stream?path=\(db)", method: "POST")
            #expect(post.status == 405, "\(post)")
            let other = try L.http(url + "/nope")
            #expect(other.status == 404 && other.body == "404 page not found", "\(other)")
            let healthz = try L.http(url + "/healthz")
            #expect(healthz.status == 200)
            #expect(H.stop(primary) == 0)
        }

        /// A raw `/stream` with a heartbeat: the snapshot record, then the segments written meanwhile in order and
        /// without a gap, then heartbeats once the stream is idle (sent from the session's timer on the event loop).
        @Test func rawStreamSendsSnapshotThenSegmentsInOrderThenHeartbeats() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db")
            try H.runWriter(db, rate: 2000, count: 10)
            let (primary, url) = try L.startPrimary(sb, db: db, log: "primary.log")
            let out = sb.path("stream.bin")
            let curl = try sb.start("/usr/bin/curl", ["-s", "-N", "-m", "4", "-o", out,
                                                      url + "/stream?path=\(db)&heartbeat=1"], log: "curl.log")
            // Writes while the stream is open: each commit's segment follows the previous one.
            try H.runWriter(db, rate: 200, count: 40)
            #expect(curl.wait(timeout: 30) != nil, "curl ends at its -m limit")
            let bytes = [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: out))) ?? Data())
            func be(_ at: Int, _ n: Int) -> UInt64 { bytes[at..<at + n].reduce(0) { $0 << 8 | UInt64($1) } }
            var kinds: [UInt64] = []
            var segments: [(index: UInt64, offset: UInt64)] = []
            var at = 0
            while at + 40 <= bytes.count {
                let kind = be(at, 4), size = be(at + 32, 8)
                kinds.append(kind)
                if kind == 2 { segments.append((be(at + 16, 8), be(at + 24, 8))) }
                at += 40 + Int(size)
            }
            #expect(kinds.first == 1, "the stream starts with the snapshot record: \(kinds)")
            #expect(segments.count >= 1, "segments written after the snapshot are streamed: \(kinds)")
            #expect(zip(segments, segments.dropFirst()).allSatisfy { a, b in (a.index, a.offset) < (b.index, b.offset) },
                    "segments in order: \(segments)")
            #expect(kinds.filter { $0 == 3 }.count >= 1, "an idle stream gets heartbeats: \(kinds)")
            #expect(at == bytes.count, "records are whole: \(at) of \(bytes.count)")
            #expect(H.stop(primary) == 0)
        }

        @Test func startupErrorsNameTheProblem() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            func run(_ yaml: String, _ extra: [String] = []) throws -> (status: Int32, output: String) {
                let config = sb.path("bad.yml")
                try yaml.write(toFile: config, atomically: true, encoding: .utf8)
                return try H.launcher(["replicate", "-config", config] + extra, timeout: 30)
            }
            let both = try run("dbs:\n  - path: \"\(db)\"\n    upstream:\n      url: http://127.0.0.1:1\n    replicas:\n      - url: file://\(sb.path("r"))\n")
            #expect(both.status == 1 && both.output.contains("database \(db): follows upstream http://127.0.0.1:1 and also lists replicas"), "\(both.output)")
            let badURL = try run("dbs:\n  - path: \"\(db)\"\n    upstream:\n      url: ftp://primary\n")
            #expect(badURL.status == 1 && badURL.output.contains("upstream.url must be an http:// or https:// URL: ftp://primary"), "\(badURL.output)")
            let noPort = try run("dbs:\n  - path: \"\(db)\"\n", ["-addr", "127.0.0.1"])
            #expect(noPort.status == 1 && noPort.output.contains("cannot start http server: listen tcp: address 127.0.0.1: missing port in address"), "\(noPort.output)")
            // A port already taken: the bind error, and no database was touched.
            let (primary, url) = try L.startPrimary(sb, db: db, log: "primary.log")
            let taken = try run("dbs:\n  - path: \"\(sb.path("other.db"))\"\n", ["-addr", String(url.dropFirst("http://".count))])
            #expect(taken.status == 1 && taken.output.contains("cannot start http server: listen tcp \(url.dropFirst("http://".count)): bind: address already in use"), "\(taken.output)")
            #expect(!FileManager.default.fileExists(atPath: sb.path("other.db-litestream")))
            #expect(H.stop(primary) == 0)
        }

        @Test func clientVanishingMidSnapshotDisturbsNobody() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db"), local = sb.path("replica.db")
            try H.runWriter(db, rate: 2000, count: 1)
            // About 16 MB, so a snapshot takes many writes.
            _ = try sqlite(db, "CREATE TABLE blob(b); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 4000) INSERT INTO blob SELECT randomblob(4000) FROM c;")
            let (primary, url) = try L.startPrimary(sb, db: db, log: "primary.log")
            // Clients that read a little of a snapshot and hang up, or just stall.
            for _ in 0..<3 {
                let r = try shell("curl -s -N -m 5 '\(url)/stream?path=\(db)' | head -c 100000 > /dev/null; echo done")
                #expect(r.output.contains("done"))
            }
            let staller = try sb.start("/usr/bin/curl", ["-s", "-N", "--limit-rate", "1k", url + "/stream?path=" + db, "-o", "/dev/null"],
                                       log: "staller.log")
            let follower = try L.startFollower(sb, local: local, url: url, primaryDB: db, name: "replica")
            try H.runWriter(db, rate: 500, count: 300)
            let problem = L.converge(local, to: db)
            #expect(problem == nil, "\(problem ?? "")\n\(H.tail(follower.output))")
            #expect(try sqlite(local, "SELECT count(*) FROM blob;") == "4000")
            staller.signal(SIGKILL)
            #expect(H.stop(follower) == 0)
            #expect(H.stop(primary) == 0, "\(H.tail(primary.output))")
        }

        @Test func corruptedRecordIsNeverApplied() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let source = sb.path("source.db"), local = sb.path("replica.db")
            try H.runWriter(source, rate: 2000, count: 30)
            _ = try sqlite(source, "PRAGMA wal_checkpoint(TRUNCATE);")
            // A fake primary: a good snapshot of `source`, then a WAL-segment record whose LZ4 payload is damaged.
            let script = sb.path("fake_primary.py")
            try fakePrimaryScript.write(toFile: script, atomically: true, encoding: .utf8)
            let fake = try sb.start("/usr/bin/python3", [script, source], log: "fake.log")
            guard fake.waitForOutput("port=", timeout: 20),
                  let port = fake.output.split(separator: "=").last.map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) else {
                throw TestFailure("fake primary did not start:\n\(fake.output)")
            }
            let follower = try L.startFollower(sb, local: local, url: "http://127.0.0.1:\(port)", primaryDB: "/x.db", name: "replica")
            #expect(follower.waitForOutput("snapshot applied", timeout: 30), "\(H.tail(follower.output))")
            #expect(follower.waitForOutput("stream error, retrying", timeout: 30), "\(H.tail(follower.output))")
            // Reconnected and got the same records again: still exactly the snapshot's content, never the bad record.
            #expect(poll(timeout: 30) { L.count("stream error, retrying", in: follower) >= 2 })
            #expect(L.rows(local) == L.rows(source))
            #expect(try sqlite(local, "PRAGMA integrity_check;") == "ok")
            #expect(H.stop(follower) == 0)
        }

        @Test func metricsParseAndReadinessFollowsTheFirstSnapshot() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("primary.db"), local = sb.path("replica.db")
            try H.runWriter(db, rate: 2000, count: 20)
            // The follower (with an app) starts first, while its primary is down: not ready, app not started.
            let port = try freePort()
            let url = "http://127.0.0.1:\(port)"
            let config = try L.followerConfig(sb, local: local, url: url, primaryDB: db, name: "replica", addr: "127.0.0.1:0")
            let follower = try sb.start(TestSupport.launcher, ["replicate", "-config", config, "-exec",
                                                                    "sh -c 'echo app sees DB=$LITESTREAM_DB_PATH; exec sleep 600'"], log: "replica.log")
            guard let followerURL = L.serverURL(follower) else { throw TestFailure("no serving line:\n\(follower.output)") }
            #expect(follower.waitForOutput("stream error", timeout: 30))
            let before = try L.http(followerURL + "/readyz")
            #expect(before.status == 503, "\(before)")
            #expect(before.body.contains("waiting for the first snapshot"), "\(before.body)")
            #expect(!follower.output.contains("exec process started"))

            let (primary, _) = try L.startPrimary(sb, db: db, port: port, log: "primary.log",
                                                  extraConfig: "    replicas:\n      - url: \"file://\(sb.path("backup"))\"")
            #expect(follower.waitForOutput("exec process started", timeout: 60), "\(H.tail(follower.output))")
            #expect(follower.waitForOutput("app sees DB=\(local)\n", timeout: 30), "\(H.tail(follower.output))")
            let after = try L.http(followerURL + "/readyz")
            #expect(after.status == 200, "\(after)")
            // A follower cannot be chained: its own /stream refuses as upstream's does.
            let chained = try L.http(followerURL + "/stream?path=\(local)")
            #expect(chained.status == 503 && chained.body == "No generation available", "\(chained)")
            #expect(L.converge(local, to: db) == nil)

            let ready = try L.http(url + "/readyz")
            #expect(ready.status == 200 && ready.body.contains("\"role\":\"primary\""), "\(ready)")
            // The real Prometheus parser (prometheus_client from PyPI, installed by scripts/test.sh).
            let metrics = try L.http(url + "/metrics")
            #expect(metrics.status == 200)
            let text = sb.path("metrics.txt")
            try metrics.body.write(toFile: text, atomically: true, encoding: .utf8)
            let python = ProcessInfo.processInfo.environment["RK_TEST_PYTHON"] ?? "python3"
            let check = try runCommand("/usr/bin/env", [python, "-c", metricsCheck, text, db])
            #expect(check.status == 0, "\(check.output)")
            #expect(H.stop(follower) == 128 + SIGTERM, "the app (sleep) ends by the relayed TERM")
            #expect(H.stop(primary) == 0)
        }
    }
}

/// A port nobody listens on right now.
private func freePort() throws -> Int {
    let r = try runCommand("/usr/bin/python3", ["-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"])
    guard let p = Int(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestFailure("no free port: \(r.output)") }
    return p
}

private let metricsCheck = #"""
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
db = sys.argv[2]
families = {f.name: f for f in text_string_to_metric_families(text)}
def value(metric, **labels):
    for f in families.values():
        for s in f.samples:
            # The parser names counter samples `<name>_total` whatever the exposition said.
            if s.name in (metric, metric + "_total") and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise SystemExit(f"missing {metric} {labels}\n" + text[:3000])
for n in ["litestream_db_size", "litestream_wal_size", "litestream_shadow_wal_index", "litestream_shadow_wal_size"]:
    value(n, db=db)
assert value("litestream_sync_count", db=db) >= 1, "sync count"
assert value("litestream_db_size", db=db) > 0, "db size"
value("litestream_replica_wal_offset", db=db, name="file")
assert value("process_resident_memory_bytes") > 0
assert value("litestream_stream_snapshot_total", db=db) >= 1
print("ok", len(families), "families")
"""#

private let fakePrimaryScript = #"""
import http.server, socketserver, struct, sys, os
src = sys.argv[1]
data = open(src, "rb").read()
page_size = struct.unpack(">H", data[16:18])[0] or 65536
gen = 0x0123456789abcdef
def header(kind, index, offset, size):
    return struct.pack(">IIQQQQ", kind, 0, gen, index, offset, size)
# A valid LZ4 frame header then garbage: the decoder must reject it.
bad = bytes([0x04, 0x22, 0x4D, 0x18, 0x64, 0x70, 0xB9]) + os.urandom(200)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Litestream-Page-Size", str(page_size))
        self.end_headers()
        self.wfile.write(header(1, 1, 0, len(data)) + data)
        self.wfile.write(header(2, 1, 0, len(bad)) + bad)
        self.wfile.flush()
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print("port=%d" % s.server_address[1], flush=True)
s.serve_forever()
"""#
