import Foundation
import Testing

/// One writer per replica (issue 12): two launchers with `-lease` on one replica, as an overlapping deploy starts
/// them, each running `Tests/Tools/lease_app.py` (rows written continuously, every acknowledged row and the app's
/// start and stop logged to a shared file with this host's clock). The file backend runs everywhere; the S3 cases
/// need the SeaweedFS server of `scripts/start-seaweedfs.sh` (skip outside CI, failure under CI=true).
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct LeaseTests {
        typealias H = ReplicationHarness
        typealias S3 = ReplicationIntegrationTests.S3LauncherTests

        /// The lease ttl of these tests: renewals every 1.33 s, loss declared 2.67 s after the last good one.
        static let ttl: TimeInterval = 4

        static var appScript: String {
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Tools/lease_app.py").path
        }

        /// One deploy: a fresh volume (`<sandbox>/<name>/app.db`) and its launcher running the lease app.
        struct Deploy {
            let name: String
            let db: String
            let launcher: RunningProcess
        }

        /// Where the deploys replicate: a replica URL, or replica lines for a config file (backends whose URL
        /// cannot name a test endpoint).
        enum Target {
            case url(String)
            case yaml([String])

            var label: String {
                switch self {
                case .url(let u): return String(u.prefix { $0 != ":" })
                case .yaml(let lines):
                    let text = lines.joined()
                    return ["abs", "gs", "s3", "file"].first { text.contains($0 + "://") } ?? "config"
                }
            }

            /// The arguments naming database `db` and this replica (writing `<db>.yml` for the config form).
            func arguments(db: String) throws -> [String] {
                switch self {
                case .url(let u): return [db, u]
                case .yaml(let lines):
                    let cfg = db + ".yml"
                    try (["dbs:", "  - path: \"\(db)\"", "    replicas:"] + lines.map { "      " + $0 })
                        .joined(separator: "\n").appending("\n").write(toFile: cfg, atomically: true, encoding: .utf8)
                    return ["-config", cfg]
                }
            }
        }

        /// Starts `launcher replicate -lease-ttl 4s -exec "python3 lease_app.py NAME" DB URL` on a fresh volume.
        static func deploy(_ sb: H.Sandbox, _ name: String, url: String, env: [String: String] = ProcessInfo.processInfo.environment,
                           extra: [String] = []) throws -> Deploy {
            try deploy(sb, name, target: .url(url), env: env, extra: extra)
        }

        static func deploy(_ sb: H.Sandbox, _ name: String, target: Target, env: [String: String] = ProcessInfo.processInfo.environment,
                           extra: [String] = []) throws -> Deploy {
            let dir = sb.path(name)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var e = env
            e["LEASE_APP_ACKS"] = sb.path("acks.log")
            let db = dir + "/app.db"
            let args = ["replicate", "-lease-ttl", "\(Int(ttl))s", "-shutdown-timeout", "30s"] + extra
                + ["-exec", "python3 -u \(appScript) \(name)"] + (try target.arguments(db: db))
            let p = try sb.start(TestSupport.launcher, args, log: "\(name).log", environment: e)
            return Deploy(name: name, db: db, launcher: p)
        }

        /// What the apps logged: acknowledged rows, starts (time, pid) and stops, by app name.
        struct AppLog {
            var acked: [String: [(seq: Int, ts: Double)]] = [:]
            var starts: [String: (ts: Double, pid: Int32)] = [:]
            var stops: [String: Double] = [:]

            init(_ path: String) {
                let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                for line in text.split(separator: "\n") {
                    let f = line.split(separator: " ")
                    guard f.count >= 3, let ts = Double(f[2]) else { continue }
                    let app = String(f[0])
                    switch f[1] {
                    case "start": starts[app] = (ts, f.count > 3 ? Int32(f[3]) ?? 0 : 0)
                    case "stop": stops[app] = ts
                    default: if let seq = Int(f[1]) { acked[app, default: []].append((seq, ts)) }
                    }
                }
            }

            /// The last moment app `name` was seen doing anything.
            func lastActivity(_ name: String) -> Double? {
                ([stops[name]] + [acked[name]?.last?.ts]).compactMap { $0 }.max()
            }
        }

        /// The time of the first log line of `p` containing `text` (the launcher's own timestamp).
        static func logTime(_ p: RunningProcess, _ text: String) -> Date? {
            guard let line = p.output.split(separator: "\n").first(where: { $0.contains(text) }),
                  let stamp = line.split(separator: " ").first else { return nil }
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return f.date(from: String(stamp))
        }

        /// Waits until app `name` has acknowledged at least `rows` rows.
        static func waitForRows(_ sb: H.Sandbox, _ name: String, _ rows: Int, timeout: TimeInterval = 60) -> Bool {
            poll(timeout: timeout) { (AppLog(sb.path("acks.log")).acked[name]?.count ?? 0) >= rows }
        }

        /// Restores `url` and returns the `(app, seq)` pairs it holds; the restore must pass its integrity check.
        static func restoredRows(_ sb: H.Sandbox, _ url: String, env: [String: String]) throws -> Set<String> {
            try restoredRows(sb, .url(url), env: env)
        }

        /// Restores the replica of `target` (through deploy A's config for the config form).
        static func restoredRows(_ sb: H.Sandbox, _ target: Target, env: [String: String]) throws -> Set<String> {
            let out = sb.path("restored-\(UUID().uuidString.prefix(6)).db")
            let source: [String]
            switch target {
            case .url(let u): source = [u]
            case .yaml: source = ["-config", sb.path("a/app.db.yml"), sb.path("a/app.db")]
            }
            let r = try runCommand(TestSupport.launcher, ["restore", "-o", out] + source, timeout: 120, environment: env)
            guard r.status == 0 else { throw TestFailure("restore \(source) failed (\(r.status)):\n\(r.output)") }
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok")
            return Set(try sqlite(out, "SELECT app || ' ' || seq FROM rows;").split(separator: "\n").map(String.init))
        }

        /// The overlapping deploy: A runs; B starts on a fresh volume and waits; A gets TERM (final sync,
        /// release); B takes the lease within a second, restores A's data, starts its app. Every row either app
        /// acknowledged is in the final restore, and B's app started after A's stopped.
        static func overlappingDeploy(url: String, env: [String: String]) throws {
            try overlappingDeploy(target: .url(url), env: env)
        }

        static func overlappingDeploy(target: Target, env: [String: String]) throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let a = try deploy(sb, "a", target: target, env: env, extra: ["-addr", "127.0.0.1:0"])
            defer { if a.launcher.process.isRunning { a.launcher.signal(SIGKILL) } }
            #expect(a.launcher.waitForOutput("exec process started", timeout: 60), "\(H.tail(a.launcher.output))")
            #expect(waitForRows(sb, "a", 50), "\(H.tail(a.launcher.output))")
            let b = try deploy(sb, "b", target: target, env: env, extra: ["-addr", "127.0.0.1:0"])
            defer { if b.launcher.process.isRunning { b.launcher.signal(SIGKILL) } }
            #expect(b.launcher.waitForOutput("waiting for the lease on", timeout: 30), "\(H.tail(b.launcher.output))")

            // Health and metrics show the lease on both sides.
            let aURL = try #require(LiveHarness.serverURL(a.launcher)), bURL = try #require(LiveHarness.serverURL(b.launcher))
            let aReady = try LiveHarness.http(aURL + "/readyz"), bReady = try LiveHarness.http(bURL + "/readyz")
            #expect(aReady.status == 200 && aReady.body.contains("\"state\":\"held\""), "\(aReady)")
            #expect(bReady.status == 503 && bReady.body.contains("waiting for the lease on")
                    && bReady.body.contains("\"state\":\"waiting\""), "\(bReady)")
            let aMetrics = try LiveHarness.http(aURL + "/metrics").body
            #expect(aMetrics.contains("litestream_lease_held{db=\"\(a.db)\"} 1"), "\(aMetrics.split(separator: "\n").filter { $0.contains("lease") })")
            // B waits while A keeps renewing: two full ttls pass without a takeover.
            let waitedUntil = Date().addingTimeInterval(2 * ttl)
            while Date() < waitedUntil {
                #expect(!b.launcher.output.contains("lease taken"), "B took the lease from a live holder:\n\(H.tail(b.launcher.output))")
                #expect(b.launcher.process.isRunning)
                usleep(200_000)
            }
            #expect(!b.launcher.output.contains("exec process started"))

            #expect(H.stop(a.launcher, timeout: 60) == 0, "\(H.tail(a.launcher.output))")
            #expect(b.launcher.waitForOutput("exec process started", timeout: 30), "\(H.tail(b.launcher.output))")
            let released = logTime(a.launcher, "lease released on"), taken = logTime(b.launcher, "lease taken on")
            #expect(released != nil && taken != nil, "A:\n\(H.tail(a.launcher.output))\nB:\n\(H.tail(b.launcher.output))")
            if let released, let taken {
                let handover = taken.timeIntervalSince(released)
                #expect(handover >= 0 && handover < 1, "handover took \(handover) s")
                print("lease handover (\(target.label)): \(Int(handover * 1000)) ms after the release")
            }
            #expect(b.launcher.output.contains("restored \(b.db) from replica"), "\(H.tail(b.launcher.output))")
            #expect(waitForRows(sb, "b", 50), "\(H.tail(b.launcher.output))")
            #expect(H.stop(b.launcher, timeout: 60) == 0, "\(H.tail(b.launcher.output))")

            let log = AppLog(sb.path("acks.log"))
            let aEnd = try #require(log.lastActivity("a")), bStart = try #require(log.starts["b"]?.ts)
            #expect(aEnd < bStart, "both apps ran at once: A active until \(aEnd), B started at \(bStart)")
            let restored = try restoredRows(sb, target, env: env)
            for app in ["a", "b"] {
                let acked = (log.acked[app] ?? []).map { "\(app) \($0.seq)" }
                let missing = acked.filter { !restored.contains($0) }
                #expect(!acked.isEmpty && missing.isEmpty, "\(missing.count) of \(acked.count) acknowledged rows of \(app) are not in the restore: \(missing.prefix(5))")
            }
        }

        /// A dies with its app (SIGKILL of both, as when a container is killed): B takes over after the ttl,
        /// never before, and the replica restores to a consistent database holding every row B acknowledged.
        static func killedHolder(url: String, env: [String: String], leaseFile: String? = nil) throws {
            try killedHolder(target: .url(url), env: env, leaseFile: leaseFile)
        }

        static func killedHolder(target: Target, env: [String: String], leaseFile: String? = nil) throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let a = try deploy(sb, "a", target: target, env: env)
            defer { if a.launcher.process.isRunning { a.launcher.signal(SIGKILL) } }
            #expect(waitForRows(sb, "a", 50), "\(H.tail(a.launcher.output))")
            let b = try deploy(sb, "b", target: target, env: env)
            defer { if b.launcher.process.isRunning { b.launcher.signal(SIGKILL) } }
            #expect(b.launcher.waitForOutput("waiting for the lease on", timeout: 30), "\(H.tail(b.launcher.output))")

            let appPID = try #require(AppLog(sb.path("acks.log")).starts["a"]?.pid)
            a.launcher.signal(SIGKILL)
            kill(appPID, SIGKILL)
            let killedAt = Date()
            #expect(a.launcher.wait(timeout: 10) != nil)
            // The lease object as A left it: B must not take over before the expiry A wrote.
            let expiresAt = leaseFile.flatMap { try? Data(contentsOf: URL(fileURLWithPath: $0)) }
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
                .flatMap { $0["expires_at"] as? String }
                .flatMap { s -> Date? in
                    let f = ISO8601DateFormatter()
                    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                    return f.date(from: s)
                }
            #expect(b.launcher.waitForOutput("exec process started", timeout: 3 * ttl + 30), "\(H.tail(b.launcher.output))")
            let taken = try #require(logTime(b.launcher, "lease taken on"))
            let after = taken.timeIntervalSince(killedAt)
            // A renewed at most ttl/3 before the kill, so its lease ran at least 2/3 ttl past it; B waits a full
            // ttl after the last version it saw, plus at most one poll.
            #expect(after >= ttl * 2 / 3 - 0.1 && after <= ttl + 2, "B took over \(after) s after the kill (ttl \(ttl) s)")
            if let expiresAt { #expect(taken >= expiresAt, "B took over at \(taken), before A's lease expired at \(expiresAt)") }
            print("lease takeover after a crash (\(target.label)): \(Int(after * 1000)) ms after the kill")
            #expect(waitForRows(sb, "b", 50), "\(H.tail(b.launcher.output))")
            #expect(H.stop(b.launcher, timeout: 60) == 0, "\(H.tail(b.launcher.output))")
            let log = AppLog(sb.path("acks.log"))
            let restored = try restoredRows(sb, target, env: env)
            let missing = (log.acked["b"] ?? []).map { "b \($0.seq)" }.filter { !restored.contains($0) }
            #expect(missing.isEmpty, "\(missing.count) acknowledged rows of b are not in the restore")
        }

        /// Two launchers started at the same moment on an empty replica: one runs its app, the other waits until
        /// the first stops, then restores its rows; the apps never overlap.
        static func simultaneousStart(target: Target, env: [String: String]) throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let a = try deploy(sb, "a", target: target, env: env)
            let b = try deploy(sb, "b", target: target, env: env)
            defer { for d in [a, b] where d.launcher.process.isRunning { d.launcher.signal(SIGKILL) } }
            var first: Deploy?
            #expect(poll(timeout: 60) {
                first = [a, b].first { $0.launcher.output.contains("exec process started") }
                return first != nil
            }, "A:\n\(H.tail(a.launcher.output))\nB:\n\(H.tail(b.launcher.output))")
            let winner = try #require(first), loser = winner.name == "a" ? b : a
            #expect(loser.launcher.waitForOutput("waiting for the lease on", timeout: 30), "\(H.tail(loser.launcher.output))")
            #expect(waitForRows(sb, winner.name, 30), "\(H.tail(winner.launcher.output))")
            #expect(!loser.launcher.output.contains("exec process started"), "both launchers started their apps")
            #expect(H.stop(winner.launcher, timeout: 60) == 0, "\(H.tail(winner.launcher.output))")
            let winnerStopped = Date()
            #expect(loser.launcher.waitForOutput("exec process started", timeout: 30), "\(H.tail(loser.launcher.output))")
            #expect(waitForRows(sb, loser.name, 30), "\(H.tail(loser.launcher.output))")
            // The loser's restored database starts a new generation; a restore takes the generation updated last,
            // and S3 dates objects to the second: both generations must not end within the same second (a tie the
            // store cannot break; the restore warns about it). Not a synchronisation: the loser keeps writing.
            while Date().timeIntervalSince(winnerStopped) < 1.2 { Thread.sleep(forTimeInterval: 0.05) }
            #expect(H.stop(loser.launcher, timeout: 60) == 0, "\(H.tail(loser.launcher.output))")
            let log = AppLog(sb.path("acks.log"))
            let winnerEnd = try #require(log.lastActivity(winner.name)), loserStart = try #require(log.starts[loser.name]?.ts)
            #expect(winnerEnd < loserStart, "both apps ran at once")
            let restored = try restoredRows(sb, target, env: env)
            for app in ["a", "b"] {
                let missing = (log.acked[app] ?? []).map { "\(app) \($0.seq)" }.filter { !restored.contains($0) }
                #expect(missing.isEmpty, "\(missing.count) acknowledged rows of \(app) are not in the restore")
            }
        }

        // MARK: - file backend

        @Test func fileSimultaneousStartRunsOneAppAtATime() throws {
            let root = try TestSupport.makeTempDir()
            defer { try? FileManager.default.removeItem(atPath: root) }
            try Self.simultaneousStart(target: .url("file://" + root + "/replica"), env: ProcessInfo.processInfo.environment)
        }

        @Test func fileOverlappingDeployHandsOverWithinASecond() throws {
            let root = try TestSupport.makeTempDir()
            defer { try? FileManager.default.removeItem(atPath: root) }
            try Self.overlappingDeploy(url: "file://" + root + "/replica", env: ProcessInfo.processInfo.environment)
        }

        @Test func fileKilledHolderIsTakenOverAfterTheTTL() throws {
            let root = try TestSupport.makeTempDir()
            defer { try? FileManager.default.removeItem(atPath: root) }
            try Self.killedHolder(url: "file://" + root + "/replica", env: ProcessInfo.processInfo.environment,
                                  leaseFile: root + "/replica/lease.json")
        }

        // MARK: - S3 (SeaweedFS enforces If-None-Match / If-Match)

        @Test func s3OverlappingDeployHandsOverWithinASecond() throws {
            guard let s = S3.server() else { return }
            try Self.overlappingDeploy(url: s.url(S3.prefix("lease")), env: S3.launcherEnvironment(s))
        }

        @Test func s3SimultaneousStartRunsOneAppAtATime() throws {
            guard let s = S3.server() else { return }
            try Self.simultaneousStart(target: .url(s.url(S3.prefix("lease-race"))), env: S3.launcherEnvironment(s))
        }

        @Test func s3KilledHolderIsTakenOverAfterTheTTL() throws {
            guard let s = S3.server() else { return }
            try Self.killedHolder(url: s.url(S3.prefix("lease-kill")), env: S3.launcherEnvironment(s))
        }

        // MARK: - GCS and Azure Blob (preconditions enforced by the test servers, see Tests/README.md)

        @Test func gcsOverlappingDeployHandsOverWithinASecond() throws {
            guard let s = ReplicationIntegrationTests.GCSLauncherTests.server() else { return }
            try Self.overlappingDeploy(url: s.url(ReplicationIntegrationTests.GCSLauncherTests.prefix("lease")),
                                       env: ReplicationIntegrationTests.GCSLauncherTests.environment(s))
        }

        @Test func gcsKilledHolderIsTakenOverAfterTheTTL() throws {
            guard let s = ReplicationIntegrationTests.GCSLauncherTests.server() else { return }
            try Self.killedHolder(url: s.url(ReplicationIntegrationTests.GCSLauncherTests.prefix("lease-kill")),
                                  env: ReplicationIntegrationTests.GCSLauncherTests.environment(s))
        }

        static func azureTarget(_ s: ReplicationIntegrationTests.AzureLauncherTests.Server, _ tag: String) -> Target {
            .yaml(["- url: \"abs://\(s.account)@\(s.container)/\(ReplicationIntegrationTests.AzureLauncherTests.prefix(tag))\"",
                   "  endpoint: \"\(s.endpoint)\""])
        }

        @Test func azureOverlappingDeployHandsOverWithinASecond() throws {
            guard let s = ReplicationIntegrationTests.AzureLauncherTests.server() else { return }
            try Self.overlappingDeploy(target: Self.azureTarget(s, "lease"),
                                       env: ReplicationIntegrationTests.AzureLauncherTests.environment(key: s.key))
        }

        @Test func azureKilledHolderIsTakenOverAfterTheTTL() throws {
            guard let s = ReplicationIntegrationTests.AzureLauncherTests.server() else { return }
            try Self.killedHolder(target: Self.azureTarget(s, "lease-kill"),
                                  env: ReplicationIntegrationTests.AzureLauncherTests.environment(key: s.key))
        }

        /// A loses the store (the proxy stalls every connection) while B still reaches it: A stops its uploads
        /// and its app (exit 75) before B's lease starts, and nothing A wrote lands after B took over.
        @Test func s3PartitionedHolderStopsBeforeTheTakeover() throws {
            guard let s = S3.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = S3.launcherEnvironment(s)
            let proxy = try S3.FaultProxy(sb, upstream: s.endpoint, maxSeconds: 300)
            let prefix = S3.prefix("lease-part")
            let direct = s.url(prefix)
            let proxied = "s3://\(s.bucket).localhost:\(proxy.port)/\(prefix)"
            let a = try Self.deploy(sb, "a", url: proxied, env: env)
            defer { if a.launcher.process.isRunning { a.launcher.signal(SIGKILL) } }
            #expect(Self.waitForRows(sb, "a", 50), "\(H.tail(a.launcher.output))")
            let b = try Self.deploy(sb, "b", url: direct, env: env)
            defer { if b.launcher.process.isRunning { b.launcher.signal(SIGKILL) } }
            #expect(b.launcher.waitForOutput("waiting for the lease on", timeout: 30), "\(H.tail(b.launcher.output))")

            try proxy.set("stall")
            let partitioned = Date()
            // A gives the lease up within ttl - ttl/3 of its last renewal, stops its app and exits 75.
            let status = a.launcher.wait(timeout: 3 * Self.ttl + 30)
            #expect(status == 75, "A exited \(status.map(String.init) ?? "not at all"):\n\(H.tail(a.launcher.output))")
            #expect(a.launcher.output.contains("lease lost"), "\(H.tail(a.launcher.output))")
            #expect(b.launcher.waitForOutput("exec process started", timeout: 3 * Self.ttl + 30), "\(H.tail(b.launcher.output))")
            let lost = try #require(Self.logTime(a.launcher, "lease lost"))
            let taken = try #require(Self.logTime(b.launcher, "lease taken on"))
            #expect(lost < taken, "A gave the lease up at \(lost), after B took it at \(taken)")
            print("partition: A gave up \(Int(lost.timeIntervalSince(partitioned) * 1000)) ms after the partition, B took over \(Int(taken.timeIntervalSince(lost) * 1000)) ms later")

            #expect(Self.waitForRows(sb, "b", 50), "\(H.tail(b.launcher.output))")
            #expect(H.stop(b.launcher, timeout: 60) == 0, "\(H.tail(b.launcher.output))")
            let log = AppLog(sb.path("acks.log"))
            let aEnd = try #require(log.lastActivity("a")), bStart = try #require(log.starts["b"]?.ts)
            #expect(aEnd < taken.timeIntervalSince1970, "A's app was still writing at \(aEnd), after B took the lease")
            #expect(aEnd < bStart, "both apps ran at once")
            // One consistent history: the restore passes and holds every row B acknowledged, and no object of
            // the replica was written after B took over except by B.
            let restored = try Self.restoredRows(sb, direct, env: env)
            let missing = (log.acked["b"] ?? []).map { "b \($0.seq)" }.filter { !restored.contains($0) }
            #expect(missing.isEmpty, "\(missing.count) acknowledged rows of b are not in the restore")
            let wal = try runCommand(TestSupport.launcher, ["wal", direct], timeout: 60, environment: env)
            #expect(wal.status == 0, "\(wal.output)")
            let table = H.parseTable(wal.output)
            let gi = try #require(table.header.firstIndex(of: "generation")), ci = try #require(table.header.firstIndex(of: "created"))
            // `created` has whole seconds; A's last write is at least ttl/3 before the takeover.
            let generationsOfB = Set(table.rows.filter { row in
                guard row.count > max(gi, ci), let created = Self.rfc3339(row[ci]) else { return false }
                return created >= taken.addingTimeInterval(-1)
            }.map { $0[gi] })
            #expect(generationsOfB.count == 1, "objects written after the takeover belong to \(generationsOfB.count) generations: \(wal.output)")
        }

        static func rfc3339(_ s: String) -> Date? {
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime]
            if let d = f.date(from: s) { return d }
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return f.date(from: s)
        }

        // MARK: - bad input

        /// A lease where it cannot be kept, a ttl too short, a lease object that is not one: clear errors.
        @Test func badLeaseSettingsAreClearErrors() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            let short = try runCommand(TestSupport.launcher, ["replicate", "-lease-ttl", "1s", "-exec", "true", db, sb.url("r")])
            #expect(short.status != 0 && short.output.contains("-lease-ttl") && short.output.contains("at least 3s"), "\(short.output)")

            let sftp = try runCommand(TestSupport.launcher, ["replicate", "-lease", "-exec", "true", db,
                                                             "sftp://user:pw@127.0.0.1:1/backups"])
            #expect(sftp.status == 1 && sftp.output.contains("SFTP has no compare-and-swap"), "\(sftp.output)")
            #expect(!sftp.output.contains("pw@"), "the password leaked: \(sftp.output)")

            let cfg = sb.path("c.yml")
            try "dbs:\n  - path: \(db)\n    lease:\n      ttl: 2s\n    replicas:\n      - url: \(sb.url("r"))\n"
                .write(toFile: cfg, atomically: true, encoding: .utf8)
            let cfgShort = try runCommand(TestSupport.launcher, ["replicate", "-config", cfg])
            #expect(cfgShort.status == 1 && cfgShort.output.contains("dbs[0].lease.ttl: 2s is too short"), "\(cfgShort.output)")

            try "dbs:\n  - path: \(db)\n    lease:\n      tll: 10s\n    replicas:\n      - url: \(sb.url("r"))\n"
                .write(toFile: cfg, atomically: true, encoding: .utf8)
            let typo = try runCommand(TestSupport.launcher, ["replicate", "-config", cfg])
            #expect(typo.status == 1 && typo.output.contains("dbs[0].lease.tll: unknown lease setting (did you mean \"ttl\"?)"), "\(typo.output)")

            try "lease: {replica: backup}\ndbs:\n  - path: \(db)\n    replicas:\n      - url: \(sb.url("r"))\n"
                .write(toFile: cfg, atomically: true, encoding: .utf8)
            let noSuch = try runCommand(TestSupport.launcher, ["replicate", "-config", cfg])
            #expect(noSuch.status == 1 && noSuch.output.contains("lease replica \"backup\" is not one of this database's replicas"), "\(noSuch.output)")

            try FileManager.default.createDirectory(atPath: sb.path("r"), withIntermediateDirectories: true)
            try "not a lease".write(toFile: sb.path("r/lease.json"), atomically: true, encoding: .utf8)
            let garbage = try runCommand(TestSupport.launcher, ["replicate", "-lease", "-exec", "true", db, sb.url("r")], timeout: 30)
            #expect(garbage.status == 1 && garbage.output.contains("lease object \(sb.path("r/lease.json")) is unreadable"),
                    "\(garbage.output)")
            #expect(!FileManager.default.fileExists(atPath: db), "the launcher went on without the lease")
        }

        /// `lease.wait` bounds the wait: the second launcher gives up with status 75, naming the holder.
        @Test func waitingForTheLeaseGivesUpAfterTheWait() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let holder = try H.startReplicate(sb, ["-lease-ttl", "30s", sb.path("a.db"), sb.url("r")], log: "a.log")
            let started = Date()
            let r = try runCommand(TestSupport.launcher, ["replicate", "-lease-ttl", "30s", "-lease-wait", "2s", "-exec", "true",
                                                          sb.path("b.db"), sb.url("r")], timeout: 60)
            #expect(r.status == 75, "\(r.output)")
            #expect(r.output.contains("gave up after 2s (lease.wait)") && r.output.contains("held by"), "\(r.output)")
            #expect(Date().timeIntervalSince(started) < 20)
            #expect(H.stop(holder) == 0, "\(H.tail(holder.output))")
            #expect(holder.output.contains("lease released on"), "\(H.tail(holder.output))")
        }
    }
}
