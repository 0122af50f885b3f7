import Foundation
import Testing

/// Black-box tests of GCS replicas (issue 10) through the built `launcher`, against fake-gcs-server behind the
/// OAuth2-checking proxy of `scripts/start-gcs.sh` (RK_GCS_* variables). Without RK_GCS_ENDPOINT they skip with a
/// message; under CI=true that is a failure. Every output is scanned for the test secrets.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct GCSLauncherTests {
        typealias H = ReplicationHarness
        typealias S3 = S3LauncherTests

        /// fake-gcs-server behind its proxy, as `TestServers.swift` finds it.
        typealias Server = GCSIntegrationTests.Server

        /// The server; its secrets include any private key body.
        static func server(_ test: String = #function) -> Server? {
            guard var s = GCSIntegrationTests.server(test) else { return nil }
            s.secrets.append("PRIVATE KEY")
            return s
        }

        static func prefix(_ tag: String) -> String { "gcsl-\(tag)-\(UUID().uuidString.prefix(8).lowercased())" }

        /// The launcher's environment: a credential file and, unless `emulatorVariable` is false (then the config's
        /// `endpoint` key must name the server), `STORAGE_EMULATOR_HOST` pointing at the proxy.
        static func environment(_ s: Server, credentials: String? = nil, emulatorVariable: Bool = true) -> [String: String] {
            var env = ProcessInfo.processInfo.environment
            env["GOOGLE_APPLICATION_CREDENTIALS"] = credentials ?? s.saFile
            env["STORAGE_EMULATOR_HOST"] = emulatorVariable ? s.endpoint.replacingOccurrences(of: "http://", with: "") : nil
            env["GCE_METADATA_HOST"] = nil
            return env
        }

        static func writeConfig(_ path: String, db: String, type: String, bucket: String, prefix: String,
                                endpoint: String?) throws {
            var lines = ["dbs:", "  - path: \"\(db)\"", "    replicas:", "      - type: \(type)",
                         "        bucket: \"\(bucket)\"", "        path: \"\(prefix)\""]
            if let endpoint { lines.append("        endpoint: \"\(endpoint)\"") }
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }

        static func expectNoSecrets(_ s: Server, _ text: String, _ what: String) {
            TestServers.expectNoSecrets(s.secrets, in: text, what)
        }

        static func admin(_ url: String) throws {
            let r = try runCommand("/usr/bin/curl", ["-sf", "-X", "POST", url], timeout: 30)
            guard r.status == 0 else { throw TestFailure("proxy admin \(url) failed: \(r.output)") }
        }

        /// `launcher replicate DB gs://…` with a writer, SIGTERM (final sync), then restore by URL equals the source;
        /// `generations`, `snapshots` and `wal` list the objects.
        @Test func replicateByURLThenRestoreAndList() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.environment(s)
            let db = sb.path("app.db"), url = s.url(Self.prefix("url"))
            try H.runWriter(db, count: 1)
            let launcher = try S3.startReplicate(sb, [db, url], env: env, log: "launcher.log")
            try H.finishWriter(try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 500, count: 1500),
                                               log: "writer.log", environment: ProcessInfo.processInfo.environment))
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
            #expect(launcher.output.contains("snapshot written") && launcher.output.contains("wal segment written"),
                    "\(H.tail(launcher.output))")
            #expect(!launcher.output.contains("ERROR"), "\(H.tail(launcher.output))")
            let out = sb.path("restored.db")
            let log = try S3.restore(["-o", out, url], env: env)
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok", "\(log)")
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out)) == nil)

            let gens = try runCommand(TestSupport.launcher, ["generations", url], environment: env)
            let table = H.parseTable(gens.output)
            let gen = table.rows.first.map { $0.count > 1 ? $0[1] : "" } ?? ""
            #expect(gens.status == 0 && table.header.first == "name" && table.rows.count == 1 && H.isHex16(gen), "\(gens.output)")
            let snaps = try runCommand(TestSupport.launcher, ["snapshots", url], environment: env)
            #expect(snaps.status == 0 && snaps.output.contains(gen), "\(snaps.output)")
            let wal = try runCommand(TestSupport.launcher, ["wal", url], environment: env)
            #expect(wal.status == 0 && wal.output.split(separator: "\n").count >= 2 && wal.output.contains(gen), "\(wal.output)")
            for (t, what) in [(launcher.output, "launcher"), (log, "restore"), (gens.output, "generations"),
                              (snaps.output, "snapshots"), (wal.output, "wal")] {
                Self.expectNoSecrets(s, t, what)
            }
        }

        /// The config forms: `type: gs` with the `endpoint` key (no STORAGE_EMULATOR_HOST, authorized_user
        /// credentials) and `type: gcs` with the emulator variable.
        @Test(arguments: ["gs", "gcs"])
        func configFormsReplicateAndRestore(_ type: String) throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let byKey = type == "gs"
            let env = Self.environment(s, credentials: byKey ? s.userFile : s.saFile, emulatorVariable: !byKey)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, type: type, bucket: s.bucket, prefix: Self.prefix(type),
                                 endpoint: byKey ? s.endpoint : nil)
            try H.runWriter(db, rate: 1000, count: 200)
            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            _ = try sqlite(db, "INSERT INTO events (at, payload) VALUES ('now', 'while replicating');")
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
            try S3.expectRestoreEqualsSource(sb, config: cfg, db: db, env: env, name: type, context: H.tail(launcher.output))
            Self.expectNoSecrets(s, launcher.output, "launcher")
        }

        /// `-exec` restores a missing database from GCS before the app starts; the app sees every row.
        @Test func execRestoresAMissingDatabaseFirst() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.environment(s)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, type: "gs", bucket: s.bucket, prefix: Self.prefix("exec"), endpoint: nil)
            try H.runWriter(db, rate: 1000, count: 321)
            let seed = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "seed.log")
            #expect(H.stop(seed) == 0, "\(H.tail(seed.output))")
            let expected = try H.eventRows(db)
            H.removeDatabaseFiles(db)
            try? FileManager.default.removeItem(atPath: db + "-litestream")
            let count = sb.path("count")
            let r = try runCommand(TestSupport.launcher, ["-config", cfg, "-exec",
                                   "sh -c 'sqlite3 \"$LITESTREAM_DB_PATH\" \"SELECT count(*) FROM events\" > \(count)'"],
                                   timeout: 120, environment: env)
            #expect(r.status == 0, "\(r.output)")
            #expect((try? String(contentsOfFile: count, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                    == String(expected.count), "\(r.output)")
            #expect(r.output.contains("restored \(db)"), "\(r.output)")
            #expect(H.difference(expected: expected, actual: try H.eventRows(db)) == nil)
            Self.expectNoSecrets(s, seed.output + r.output, "launcher")
        }

        /// The proxy answers 503 for the replica's bucket for a while: replicate keeps running, retries, catches up.
        @Test func replicationSurvivesStorageFaults() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let bucket = "rk-faults-\(UUID().uuidString.prefix(8).lowercased())"
            try Self.admin(s.endpoint + "/__bucket?name=" + bucket)
            let env = Self.environment(s)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, type: "gs", bucket: bucket, prefix: "faults", endpoint: nil)
            try H.runWriter(db, count: 1)
            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 250, count: 2500),
                                         log: "writer.log", environment: ProcessInfo.processInfo.environment)
            #expect(launcher.waitForOutput("wal segment written", timeout: 30), "\(H.tail(launcher.output))")
            try Self.admin(s.endpoint + "/__fault?bucket=\(bucket)&mode=503")
            let failing = poll(timeout: 30) { launcher.output.contains("503") }
            Thread.sleep(forTimeInterval: 3)  // the fault lasts a while (several sync intervals)
            try Self.admin(s.endpoint + "/__fault?bucket=\(bucket)&mode=pass")
            #expect(failing, "no 503 reached the launcher's log:\n\(H.tail(launcher.output))")
            #expect(launcher.process.isRunning, "the launcher exited during the fault:\n\(H.tail(launcher.output))")
            try H.finishWriter(writer, timeout: 120)
            let total = try H.eventCount(db)
            try S3.waitForReplicaEvents(sb, config: cfg, db: db, count: total, env: env, timeout: 60)
            #expect(launcher.process.isRunning)
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
            let line = launcher.output.split(separator: "\n").first { $0.contains("503") }.map(String.init) ?? ""
            #expect(line.contains("gs") && line.contains(bucket), "error line should name the replica: \(line)")
            try S3.expectRestoreEqualsSource(sb, config: cfg, db: db, env: env, name: "faults", context: H.tail(launcher.output))
            Self.expectNoSecrets(s, launcher.output, "launcher")
        }

        /// A key the token endpoint rejects, no credentials at all, a missing bucket: the listing commands fail with
        /// exit status 1 and one line naming the replica and the cause, without any secret.
        @Test func authAndBucketFailuresAreOneLineErrors() throws {
            guard let s = Self.server() else { return }
            let url = s.url(Self.prefix("fail"))
            var wrong = Self.environment(s, credentials: s.wrongSAFile)
            let r1 = try runCommand(TestSupport.launcher, ["generations", url], environment: wrong)
            #expect(r1.status == 1 && r1.output.contains("HTTP 400 invalid_grant: Invalid JWT Signature."), "\(r1.output)")
            wrong["GOOGLE_APPLICATION_CREDENTIALS"] = nil
            wrong["STORAGE_EMULATOR_HOST"] = nil
            wrong["HOME"] = "/nonexistent"
            let r2 = try runCommand(TestSupport.launcher, ["generations", url], environment: wrong)
            #expect(r2.status == 1 && r2.output.contains("no Google credentials found; tried GOOGLE_APPLICATION_CREDENTIALS"),
                    "\(r2.output)")
            let r3 = try runCommand(TestSupport.launcher, ["snapshots", "gs://rk-no-such-bucket/x"], environment: Self.environment(s))
            #expect(r3.status == 1 && r3.output.contains("HTTP 404") && r3.output.contains("rk-no-such-bucket"), "\(r3.output)")
            for r in [r1, r2, r3] { Self.expectNoSecrets(s, r.output, "output") }
        }

        /// Token fetches the proxy counted for `key` (`jwt-bearer:<tag>`).
        static func fetches(_ s: Server, _ key: String) throws -> Int {
            let r = try runCommand("/usr/bin/curl", ["-sf", s.statsURL], timeout: 30)
            let obj = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
            return ((obj?["fetches"] as? [String: Any])?[key] as? NSNumber)?.intValue ?? 0
        }

        /// Tokens that live 4 s: replicate keeps uploading across several of them, renewing each once before it
        /// expires (not once per request), and the replica restores equal to the source.
        @Test func shortLivedTokensAreRenewedWhileReplicating() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let tag = "lrefresh-\(UUID().uuidString.prefix(8))"
            var key = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s.saFile))) as? [String: Any] ?? [:]
            key["token_uri"] = (key["token_uri"] as? String ?? "") + "?tag=\(tag)&lifetime=4"
            let file = sb.path("sa.json")
            try JSONSerialization.data(withJSONObject: key).write(to: URL(fileURLWithPath: file))
            let env = Self.environment(s, credentials: file)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, type: "gs", bucket: s.bucket, prefix: Self.prefix("refresh"), endpoint: nil)
            try H.runWriter(db, count: 1)
            let started = Date()
            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            try H.finishWriter(try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 40, count: 400),
                                               log: "writer.log", environment: ProcessInfo.processInfo.environment))
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
            let elapsed = Date().timeIntervalSince(started)
            let uploads = launcher.output.components(separatedBy: "wal segment written").count - 1
            let n = try Self.fetches(s, "jwt-bearer:\(tag)")
            print("gcs token renewal: \(n) token fetches, \(uploads) uploads in \(Int(elapsed)) s")
            #expect(n >= 3 && Double(n) <= elapsed / 2 + 2, "\(n) token fetches in \(Int(elapsed)) s (\(uploads) uploads)")
            #expect(uploads > n, "more uploads (\(uploads)) than token fetches (\(n))")
            #expect(!launcher.output.contains("ERROR"), "\(H.tail(launcher.output))")
            try S3.expectRestoreEqualsSource(sb, config: cfg, db: db, env: env, name: "refresh", context: H.tail(launcher.output))
            Self.expectNoSecrets(s, launcher.output, "launcher")
        }
    }
}

extension GCSIntegrationTests.Server {
    func url(_ prefix: String) -> String { "gs://\(bucket)/\(prefix)" }
}
