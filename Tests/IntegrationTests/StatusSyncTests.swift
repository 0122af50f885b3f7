import Foundation
import Testing

/// Black-box tests of `launcher status`, `launcher sync` / `POST /sync` and the Grafana dashboard (issue 16 part 2)
/// against real launcher processes, file replicas, SeaweedFS behind `faultproxy.py`, and a live follower.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct StatusSyncTests {
        typealias H = ReplicationHarness
        typealias L = LiveHarness
        typealias S3 = S3LauncherTests

        static let reportKeys: Set<String> = ["source", "healthy", "databases"]
        static let databaseKeys: Set<String> = ["path", "role", "position", "error", "replicas", "lease"]
        static let replicaKeys: Set<String> = ["name", "type", "position", "lag_bytes", "lag_seconds", "error"]
        static let positionKeys: Set<String> = ["generation", "index", "offset"]
        static let leaseKeys: Set<String> = ["location", "state", "holder", "expires_at", "error"]

        /// `launcher ARGS` (with `env` when given) with stdout apart from stderr; stdout parsed as one JSON object.
        static func run(_ sb: H.Sandbox, _ args: [String], env: [String: String] = [:], timeout: TimeInterval = 120) throws
            -> (status: Int32, json: [String: Any]?, stdout: String, stderr: String) {
            let tag = UUID().uuidString.prefix(6)
            let out = sb.path("stdout-\(tag)"), err = sb.path("stderr-\(tag)")
            let words = ["/usr/bin/env"] + env.map { "\($0.key)=\($0.value)" } + [TestSupport.launcher] + args
            let quoted = words.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            let r = try shell(quoted.joined(separator: " ") + " >'\(out)' 2>'\(err)'", timeout: timeout)
            let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            return (r.status, (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any], stdout, stderr)
        }

        /// Checks the documented field names of a status report, at every level; returns its databases.
        static func checkShape(_ report: [String: Any]?, source: String, sourceLocation: SourceLocation = #_sourceLocation)
            -> [[String: Any]] {
            guard let report else {
                Issue.record("no JSON object", sourceLocation: sourceLocation)
                return []
            }
            #expect(Set(report.keys) == reportKeys, "\(report)", sourceLocation: sourceLocation)
            #expect(report["source"] as? String == source, "\(report)", sourceLocation: sourceLocation)
            let dbs = report["databases"] as? [[String: Any]] ?? []
            for d in dbs {
                #expect(Set(d.keys) == databaseKeys, "\(d)", sourceLocation: sourceLocation)
                if let p = d["position"] as? [String: Any] { #expect(Set(p.keys) == positionKeys, sourceLocation: sourceLocation) }
                if let l = d["lease"] as? [String: Any] { #expect(Set(l.keys) == leaseKeys, "\(l)", sourceLocation: sourceLocation) }
                for r in d["replicas"] as? [[String: Any]] ?? [] {
                    #expect(Set(r.keys) == replicaKeys, "\(r)", sourceLocation: sourceLocation)
                    if let p = r["position"] as? [String: Any] { #expect(Set(p.keys) == positionKeys, sourceLocation: sourceLocation) }
                }
            }
            return dbs
        }

        /// `generation/index:offset` of a JSON position (nil when null).
        static func position(_ v: Any?) -> String? {
            guard let p = v as? [String: Any], let g = p["generation"] as? String,
                  let i = (p["index"] as? NSNumber)?.intValue, let o = (p["offset"] as? NSNumber)?.intValue else { return nil }
            return "\(g)/\(i):\(o)"
        }

        /// `host:port` of a running launcher's HTTP server, from its serving line.
        static func address(_ p: RunningProcess) throws -> String {
            guard let url = L.serverURL(p) else { throw TestFailure("no serving line:\n\(H.tail(p.output))") }
            return String(url.dropFirst("http://".count))
        }

        /// A config of one database with a file replica whose background syncs are an hour apart (so only a
        /// requested sync moves it), a lease on it, and `addr` on any free port.
        static func writeConfig(_ sb: H.Sandbox, db: String, replica: String, extraReplicas: [String] = [],
                                databaseKeys: [String] = []) throws -> String {
            let cfg = sb.path("litestream.yml")
            let lines = ["addr: \"127.0.0.1:0\"", "lease:", "  ttl: 6s", "dbs:", "  - path: \"\(db)\""] + databaseKeys.map { "    " + $0 } + ["    replicas:",
                         "      - name: disk", "        path: \"\(replica)\"", "        sync-interval: 1h"] + extraReplicas
            try (lines.joined(separator: "\n") + "\n").write(toFile: cfg, atomically: true, encoding: .utf8)
            return cfg
        }

        /// Writes `rows` rows into `app.db`, then starts a launcher on the config of `writeConfig` and returns the
        /// paths, the process and its `host:port`.
        static func startLauncher(_ sb: H.Sandbox, rows: Int, databaseKeys: [String] = []) throws
            -> (db: String, rep: String, cfg: String, launcher: RunningProcess, addr: String) {
            let db = sb.path("app.db"), rep = sb.path("rep")
            try H.runWriter(db, count: rows)
            let cfg = try writeConfig(sb, db: db, replica: rep, databaseKeys: databaseKeys)
            let launcher = try H.startReplicate(sb, ["-config", cfg], log: "replicate.log")
            return (db, rep, cfg, launcher, try address(launcher))
        }

        // MARK: - status

        /// One launcher with a file replica and a lease: `status -addr` and `status -stores` give the same positions
        /// and holder once synced, with exactly the documented JSON fields; the table has a local row, a replica
        /// row and a lease line; exit 0 while healthy.
        @Test func statusFromTheLauncherAndFromTheStoresAgree() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let (db, _, cfg, launcher, addr) = try Self.startLauncher(sb, rows: 20)
            try H.runWriter(db, count: 30)
            let synced = try H.launcher(["sync", "-addr", addr, "-wait", "-timeout", "30s"])
            #expect(synced.status == 0, "\(synced.output)\n\(H.tail(launcher.output))")

            let live = try Self.run(sb, ["status", "-addr", addr, "-json"])
            #expect(live.status == 0, "\(live.stdout)\(live.stderr)")
            let liveDBs = Self.checkShape(live.json, source: "launcher")
            #expect(live.json?["healthy"] as? Bool == true)
            #expect(liveDBs.count == 1 && liveDBs.first?["path"] as? String == db && liveDBs.first?["role"] as? String == "primary")
            let d = liveDBs.first ?? [:]
            let replica = (d["replicas"] as? [[String: Any]])?.first ?? [:]
            #expect(replica["name"] as? String == "disk" && replica["type"] as? String == "file", "\(replica)")
            #expect(Self.position(d["position"]) != nil && Self.position(replica["position"]) == Self.position(d["position"]),
                    "\(live.stdout)")
            #expect((replica["lag_bytes"] as? NSNumber)?.intValue == 0 && (replica["lag_seconds"] as? NSNumber)?.doubleValue == 0,
                    "\(replica)")
            #expect(replica["error"] is NSNull)
            let lease = d["lease"] as? [String: Any] ?? [:]
            #expect(lease["state"] as? String == "held" && (lease["holder"] as? String)?.hasSuffix(":\(launcher.pid)") == true,
                    "\(lease)")

            // From the stores, with the launcher still running: the same positions and holder.
            let stored = try Self.run(sb, ["status", "-stores", "-config", cfg, "-json"])
            #expect(stored.status == 0, "\(stored.stdout)\(stored.stderr)")
            let sd = Self.checkShape(stored.json, source: "stores").first ?? [:]
            let sr = (sd["replicas"] as? [[String: Any]])?.first ?? [:]
            #expect(Self.position(sd["position"]) == Self.position(d["position"]), "\(stored.stdout)\nvs\n\(live.stdout)")
            #expect(Self.position(sr["position"]) == Self.position(d["position"]), "\(stored.stdout)")
            #expect((sr["lag_bytes"] as? NSNumber)?.intValue == 0 && (sr["lag_seconds"] as? NSNumber)?.doubleValue == 0, "\(sr)")
            let sl = sd["lease"] as? [String: Any] ?? [:]
            #expect(sl["state"] as? String == "held" && sl["holder"] as? String == lease["holder"] as? String, "\(sl)")
            #expect((sl["location"] as? String)?.hasSuffix("/lease.json") == true, "\(sl)")

            // The table: header, the local row, the replica row, the lease line.
            let table = try H.launcher(["status", "-addr", addr])
            #expect(table.status == 0, "\(table.output)")
            let lines = table.output.split(separator: "\n").map(String.init)
            #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true)
                    == ["database", "replica", "type", "position", "lag_bytes", "lag", "error"], "\(table.output)")
            #expect(lines.contains { $0.hasPrefix(db) && $0.contains("(local)") } && lines.contains { $0.hasPrefix(db) && $0.contains(" disk ") },
                    "\(table.output)")
            #expect(lines.contains { $0.hasPrefix("lease of \(db)") && $0.contains("held") }, "\(table.output)")
            // The writes after the sync show as lag in bytes.
            try H.runWriter(db, count: 200)
            #expect(poll(timeout: 20) {
                let r = try? Self.run(sb, ["status", "-addr", addr, "-json"])
                let rep = ((r?.json?["databases"] as? [[String: Any]])?.first?["replicas"] as? [[String: Any]])?.first
                return ((rep?["lag_bytes"] as? NSNumber)?.intValue ?? 0) > 0
            }, "no lag shown after 200 unsynced rows")

            // A second launcher whose lease lives on the same replica waits for it: its /status already answers,
            // with no position yet and the first launcher as the holder.
            let other = sb.path("other.db")
            try H.runWriter(other, count: 1)
            let otherCfg = sb.path("other.yml")
            try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(of: db, with: other)
                .write(toFile: otherCfg, atomically: true, encoding: .utf8)
            let waiting = try sb.start(TestSupport.launcher, ["replicate", "-config", otherCfg], log: "waiting.log")
            let waitingAddr = try Self.address(waiting)
            var seen = ""
            #expect(poll(timeout: 20) {
                guard let r = try? Self.run(sb, ["status", "-addr", waitingAddr, "-json"]) else { return false }
                seen = r.stdout + r.stderr
                let wd = (r.json?["databases"] as? [[String: Any]])?.first
                let wl = wd?["lease"] as? [String: Any]
                return r.status == 0 && wl?["state"] as? String == "waiting" && wl?["holder"] as? String == lease["holder"] as? String
                    && wd?["position"] is NSNull
            }, "\(seen)\n\(H.tail(waiting.output))")
            _ = H.stop(waiting)
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")

            // The launcher is gone: -addr names the address and says what to check; the stores still answer.
            let gone = try H.launcher(["status", "-addr", addr])
            #expect(gone.status == 1 && gone.output.contains("no launcher answers at \(addr)")
                    && gone.output.contains("-addr must match"), "\(gone.output)")
            #expect(gone.output.split(separator: "\n").count == 1, "\(gone.output)")
            let after = try Self.run(sb, ["status", "-stores", "-config", cfg, "-json"])
            let ad = Self.checkShape(after.json, source: "stores").first ?? [:]
            #expect(after.status == 0 && (ad["lease"] as? [String: Any])?["state"] as? String == "free", "\(after.stdout)")
        }

        /// A replica on an S3 endpoint where nothing listens (port 1): its error shows in the status from the stores
        /// and from the launcher, next to a healthy file replica, and the exit status is 2; `sync -wait` times out
        /// naming it.
        @Test func failingReplicaShowsItsErrorAndExitsNonZero() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), rep = sb.path("rep")
            try H.runWriter(db, count: 10)
            let cfg = try Self.writeConfig(sb, db: db, replica: rep, extraReplicas: [
                "      - name: down", "        url: \"s3://bkt.localhost:1/db\"", "        sync-interval: 1s"])
            var env = ProcessInfo.processInfo.environment
            env["AWS_ACCESS_KEY_ID"] = "AKIATEST"
            env["AWS_SECRET_ACCESS_KEY"] = "test"
            let keys = ["AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "test"]

            let stored = try Self.run(sb, ["status", "-stores", "-config", cfg, "-json"], env: keys)
            #expect(stored.status == 2, "\(stored.stdout)\(stored.stderr)")
            #expect(stored.json?["healthy"] as? Bool == false)
            let replicas = (Self.checkShape(stored.json, source: "stores").first?["replicas"] as? [[String: Any]]) ?? []
            let down = replicas.first { $0["name"] as? String == "down" } ?? [:]
            #expect((down["error"] as? String)?.contains("Couldn't connect") == true && down["position"] is NSNull, "\(down)")
            #expect(replicas.first { $0["name"] as? String == "disk" }?["error"] is NSNull, "\(replicas)")
            let table = try Self.run(sb, ["status", "-stores", "-config", cfg], env: keys)
            #expect(table.status == 2 && table.stdout.contains(" down ") && table.stdout.contains("Couldn't connect"), "\(table.stdout)")

            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "replicate.log")
            let addr = try Self.address(launcher)
            var last = ""
            let failed = poll(timeout: 30) {
                guard let r = try? Self.run(sb, ["status", "-addr", addr, "-json"]) else { return false }
                last = r.stdout + r.stderr
                let reps = ((r.json?["databases"] as? [[String: Any]])?.first?["replicas"] as? [[String: Any]]) ?? []
                let e = reps.first { $0["name"] as? String == "down" }?["error"] as? String
                return r.status == 2 && e?.contains("Couldn't connect") == true
            }
            #expect(failed, "no error for the unreachable replica from the launcher:\n\(last)\n\(H.tail(launcher.output))")

            let start = Date()
            let sync = try H.launcher(["sync", "-addr", addr, "-wait", "-timeout", "2s"])
            #expect(sync.status == 1, "\(sync.output)")
            #expect(sync.output.contains("timed out after 2s") && sync.output.contains("replica \"down\"")
                    && !sync.output.contains("replica \"disk\""), "\(sync.output)")
            #expect(Date().timeIntervalSince(start) < 15, "sync -wait -timeout 2s took \(Date().timeIntervalSince(start)) s")
            #expect(H.stop(launcher) != nil)
        }

        // MARK: - sync

        /// With background syncs an hour apart, `sync -wait` returns only once the replica holds every committed
        /// row: a restore made right after it returns has the last row. Without -wait it returns at once; one
        /// database can be named; GET /sync is 405, an unknown database 404, `GET /status` is JSON.
        @Test func syncWaitReturnsOnceTheReplicaHoldsThePosition() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let (db, rep, _, launcher, addr) = try Self.startLauncher(sb, rows: 5)
            for round in 1...3 {
                try H.runWriter(db, count: 100)
                let expected = try H.eventRows(db)
                if round == 1 {
                    // Before the request the replica does not have the new rows (its next sync is an hour away).
                    let before = sb.path("before.db")
                    try H.restore(["-o", before, "file://" + rep])
                    #expect(try H.eventCount(before) < expected.count, "the replica moved without a sync request")
                }
                let r = try H.launcher(["sync", "-addr", addr, "-wait", "-timeout", "30s"])
                // Straight after it returns: restore from the replica's objects on disk.
                let out = sb.path("restored-\(round).db")
                try H.restore(["-o", out, "file://" + rep])
                #expect(r.status == 0, "\(r.output)\n\(H.tail(launcher.output))")
                #expect(r.output.contains("synced \(db) at ") && r.output.contains("\"disk\" hold it"), "\(r.output)")
                #expect(H.difference(expected: expected, actual: try H.eventRows(out)) == nil, "round \(round)")
            }
            // Nothing else moved the replica: with the 1h interval only the requested syncs wrote WAL segments.
            #expect(!launcher.output.contains("monitor error"), "\(H.tail(launcher.output))")

            let one = try H.launcher(["sync", "-addr", addr, db])
            #expect(one.status == 0 && one.output.hasPrefix("sync requested for \(db) at "), "\(one.output)")
            let unknown = try H.launcher(["sync", "-addr", addr, sb.path("other.db")])
            #expect(unknown.status == 1 && unknown.output.contains("HTTP 404") && unknown.output.contains("other.db"), "\(unknown.output)")
            let get = try L.http("http://\(addr)/sync")
            #expect(get.status == 405, "\(get)")
            let post = try L.http("http://\(addr)/sync?wait=1&timeout=10s", method: "POST")
            #expect(post.status == 200 && post.body.contains("\"complete\":true"), "\(post)")
            let status = try L.http("http://\(addr)/status")
            #expect(status.status == 200 && status.body.hasPrefix("{\"databases\":["), "\(status)")
            #expect(try L.http("http://\(addr)/status", method: "POST").status == 405)
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")

            let none = try H.launcher(["sync", "-addr", addr, "-wait"])
            #expect(none.status == 1 && none.output.contains("no launcher answers at \(addr)")
                    && none.output.contains("-addr must match"), "\(none.output)")
            #expect(none.output.split(separator: "\n").count == 1, "\(none.output)")
            let noAddr = try H.launcher(["sync", "-config", sb.path("missing.yml")])
            #expect(noAddr.status == 1 && noAddr.output.contains("missing.yml"), "\(noAddr.output)")
        }

        /// SeaweedFS behind `faultproxy.py` in stall mode: `sync -wait -timeout 3s` fails at about 3 s naming the
        /// S3 replica; once the store answers again `sync -wait` succeeds and the replica restores to the source.
        @Test func syncWaitTimesOutOnAStalledStore() throws {
            guard let s = S3.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let (env, proxy, db, cfg, direct) = try S3.proxiedSetup(s, sb, name: "syncstall", maxSeconds: 300)
            let launcher = try S3.startReplicate(sb, ["-config", cfg, "-addr", "127.0.0.1:0"], env: env, log: "replicate.log")
            let addr = try Self.address(launcher)
            try H.runWriter(db, count: 50)
            let first = try H.launcher(["sync", "-addr", addr, "-wait", "-timeout", "60s"])
            #expect(first.status == 0, "\(first.output)\n\(H.tail(launcher.output))")

            try proxy.set("stall")
            try H.runWriter(db, count: 50)
            let start = Date()
            let stalled = try H.launcher(["sync", "-addr", addr, "-wait", "-timeout", "3s"])
            let took = Date().timeIntervalSince(start)
            #expect(stalled.status == 1, "\(stalled.output)")
            #expect(stalled.output.contains("timed out after 3s") && stalled.output.contains("\(db) replica \"s3\""), "\(stalled.output)")
            #expect(took >= 2.9 && took < 15, "sync -wait -timeout 3s took \(took) s")

            try proxy.set("pass")
            let again = try H.launcher(["sync", "-addr", addr, "-wait", "-timeout", "120s"], timeout: 180)
            #expect(again.status == 0, "\(again.output)\n\(H.tail(launcher.output))")
            try S3.expectRestoreEqualsSource(sb, config: direct, db: db, env: env, name: "syncstall", context: H.tail(launcher.output))
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
        }

        // MARK: - Grafana dashboard

        /// The repository root (two levels above this file's directory).
        static var repositoryRoot: URL {
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        }

        /// Every metric name in `text` (`litestream_…`, `process_…`).
        static func metricNames(_ text: String) -> Set<String> {
            let re = try! NSRegularExpression(pattern: #"\b(?:litestream|process)_[a-z0-9_]+"#)
            return Set(re.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
                Range($0.range, in: text).map { String(text[$0]) }
            })
        }

        /// A launcher with `-addr`, a file replica, a lease and a live follower attached: every metric that any
        /// query of `examples/grafana/launcher.json` names is in its `/metrics`; the dashboard is valid JSON, every
        /// panel has a description and a README paragraph under its title.
        @Test func dashboardQueriesNameExportedMetrics() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let dashboard = Self.repositoryRoot.appendingPathComponent("examples/grafana/launcher.json")
            let text = try String(contentsOf: dashboard, encoding: .utf8)
            let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
            let panels = (json["panels"] as? [[String: Any]] ?? []).filter { $0["type"] as? String != "row" }
            #expect(panels.count >= 8)
            var queried = Set<String>()
            for p in panels {
                #expect(!((p["description"] as? String) ?? "").isEmpty, "\(p["title"] ?? "?") has no description")
                for t in p["targets"] as? [[String: Any]] ?? [] { queried.formUnion(Self.metricNames(t["expr"] as? String ?? "")) }
            }
            let variables = (json["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []
            for v in variables { queried.formUnion(Self.metricNames(v["definition"] as? String ?? "")) }
            #expect(queried.count >= 15 && queried == Self.metricNames(text), "\(queried.sorted())")
            let readme = try String(contentsOf: Self.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
            for p in panels {
                let title = p["title"] as? String ?? "?"
                #expect(readme.contains("**\(title)**"), "README does not describe the panel \(title)")
            }

            // Checkpoint series exist from the first checkpoint on: have the launcher checkpoint every second.
            let (db, _, _, primary, addr) = try Self.startLauncher(sb, rows: 10, databaseKeys: ["checkpoint-interval: 1s"])
            let local = sb.path("follower.db")
            let follower = try L.startFollower(sb, local: local, url: "http://\(addr)", primaryDB: db, name: "follower")
            try H.runWriter(db, count: 50)
            #expect(poll(timeout: 30) { (L.rows(local)?.count ?? 0) == 60 }, "the follower did not catch up:\n\(H.tail(follower.output))")
            var missing: [String] = []
            let exported = poll(timeout: 20) {
                guard let m = try? L.http("http://\(addr)/metrics"), m.status == 200 else { return false }
                let names = Set(m.body.split(separator: "\n").filter { !$0.hasPrefix("#") }
                    .map { String($0.prefix { $0 != "{" && $0 != " " }) })
                missing = queried.subtracting(names).sorted()
                return missing.isEmpty
            }
            #expect(exported, "queried by the dashboard but not exported: \(missing)")
            #expect(H.stop(follower) == 0)
            #expect(H.stop(primary) == 0, "\(H.tail(primary.output))")
        }
    }
}
