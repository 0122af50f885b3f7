import Foundation
import Testing

/// Black-box tests of Azure Blob replicas (`abs`) through the built `launcher`, against the verifying test server
/// of `scripts/start-azure.sh` (RK_AZURE_*). Without RK_AZURE_ENDPOINT they skip; under CI=true that is a failure.
/// Every output (launcher logs, listings, restores) is scanned for the run's secrets.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct AzureLauncherTests {
        typealias H = ReplicationHarness

        /// The Azure Blob test server, as `TestServers.swift` finds it.
        typealias Server = AzureTestServer

        static func server(_ test: String = #function) -> Server? { AzureTestServer.get(test) }

        static func prefix(_ tag: String) -> String { "absl-\(tag)-\(UUID().uuidString.prefix(8).lowercased())" }

        /// Our environment without Azure credentials; `key` sets `LITESTREAM_AZURE_ACCOUNT_KEY`.
        static func environment(key: String? = nil) -> [String: String] {
            var env = ProcessInfo.processInfo.environment
            for k in ["LITESTREAM_AZURE_ACCOUNT_KEY", "LITESTREAM_AZURE_SAS_TOKEN", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT",
                      "IDENTITY_HEADER", "AZURE_IMDS_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"] { env[k] = nil }
            env["LITESTREAM_AZURE_ACCOUNT_KEY"] = key
            return env
        }

        /// A config with one database and one abs replica: the `url:` form (account in the URL, key from the
        /// environment), or the key form with `sas-token`.
        static func writeConfig(_ path: String, db: String, server s: Server, prefix: String, endpoint: String? = nil,
                                sas: Bool = false, extra: [String] = []) throws {
            var lines = ["dbs:", "  - path: \"\(db)\"", "    replicas:"]
            if sas {
                lines += ["      - type: abs", "        account-name: \"\(s.account)\"", "        bucket: \"\(s.container)\"",
                          "        path: \"\(prefix)\"", "        sas-token: \"\(s.sas)\""]
            } else {
                lines += ["      - url: \"abs://\(s.account)@\(s.container)/\(prefix)\""]
            }
            lines.append("        endpoint: \"\(endpoint ?? s.endpoint)\"")
            lines += extra.map { "        " + $0 }
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }

        static func expectNoSecrets(_ s: Server, _ text: String, _ what: String) {
            TestServers.expectNoSecrets(s.secrets, in: text, what)
        }

        /// `launcher ARGS` with `env`; requires exit 0 and returns the output (scanned for secrets).
        @discardableResult
        static func run(_ s: Server, _ args: [String], env: [String: String], timeout: TimeInterval = 120) throws -> String {
            let r = try runCommand(TestSupport.launcher, args, timeout: timeout, environment: env)
            expectNoSecrets(s, r.output, "launcher \(args.first ?? "")")
            guard r.status == 0 else { throw TestFailure("launcher \(args.joined(separator: " ")) exited \(r.status):\n\(H.tail(r.output))") }
            return r.output
        }

        /// Polls (bounded) until a restore through `cfg` holds `count` events rows.
        static func waitForReplica(_ s: Server, _ sb: H.Sandbox, config cfg: String, db: String, count: Int,
                                   env: [String: String], timeout: TimeInterval = 60) throws {
            var last = "no restore attempted"
            let ok = poll(timeout: timeout) {
                let out = sb.path("probe-\(UUID().uuidString.prefix(8)).db")
                defer { H.removeDatabaseFiles(out) }
                do {
                    try run(s, ["restore", "-o", out, "-config", cfg, db], env: env)
                    let n = try H.eventCount(out)
                    last = "restored \(n) rows"
                    if n == count { return true }
                } catch { last = "\(error)" }
                usleep(300_000)
                return false
            }
            guard ok else { throw TestFailure("the abs replica did not reach \(count) events rows in \(Int(timeout)) s: \(last)") }
        }

        /// Restores through `cfg` into a new file and compares with `db`.
        static func expectRestoreEqualsSource(_ s: Server, _ sb: H.Sandbox, config cfg: String, db: String,
                                              env: [String: String], name: String, context: String) throws {
            let out = sb.path("restored-\(name).db")
            let log = try run(s, ["restore", "-o", out, "-config", cfg, db], env: env)
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok", "restore log:\n\(log)")
            let diff = H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out))
            #expect(diff == nil, "restore (\(name)) differs from the source: \(diff ?? "")\n\(context)")
        }

        /// replicate (config `url:` form + LITESTREAM_AZURE_ACCOUNT_KEY) under a writer, stop, restore equals source;
        /// then the listing commands show the generation, its snapshot and WAL objects.
        @Test func replicateURLFormWithEnvKeyThenRestoreAndList() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.environment(key: s.key)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("url"))
            try H.runWriter(db, count: 1)
            let p = try S3LauncherTests.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            try H.runWriter(db, rate: 1000, count: 1500)
            try Self.waitForReplica(s, sb, config: cfg, db: db, count: 1501, env: env)
            #expect(H.stop(p) == 0, "launcher should exit 0 after SIGTERM:\n\(H.tail(p.output))")
            Self.expectNoSecrets(s, p.output, "launcher log")
            #expect(!p.output.contains(" ERROR "), "errors in the launcher log:\n\(H.tail(p.output))")
            try Self.expectRestoreEqualsSource(s, sb, config: cfg, db: db, env: env, name: "url", context: H.tail(p.output))

            let gens = H.parseTable(try Self.run(s, ["generations", "-config", cfg, db], env: env))
            #expect(gens.header == ["name", "generation", "lag", "start", "end"])
            let gen = try #require(gens.rows.first?[1], "no generation listed: \(gens.rows)")
            #expect(gens.rows.count == 1 && gens.rows[0][0] == "abs" && H.isHex16(gen), "\(gens.rows)")
            let snaps = H.parseTable(try Self.run(s, ["snapshots", "-config", cfg, db], env: env))
            #expect(snaps.rows.contains { $0.count >= 4 && $0[0] == "abs" && $0[1] == gen }, "snapshots: \(snaps.rows)")
            let wal = H.parseTable(try Self.run(s, ["wal", "-config", cfg, db], env: env))
            #expect(wal.rows.count >= 1 && wal.rows.allSatisfy { $0[0] == "abs" && $0[1] == gen }, "wal: \(wal.rows)")
        }

        /// The key form with `sas-token` (no key anywhere): replicate, restore equals source, the SAS never printed.
        @Test func replicateWithSASTokenConfig() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.environment()
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("sas"), sas: true)
            try H.runWriter(db, count: 1)
            let p = try S3LauncherTests.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            try H.runWriter(db, rate: 1000, count: 800)
            try Self.waitForReplica(s, sb, config: cfg, db: db, count: 801, env: env)
            #expect(H.stop(p) == 0, "launcher should exit 0 after SIGTERM:\n\(H.tail(p.output))")
            Self.expectNoSecrets(s, p.output, "launcher log")
            #expect(!p.output.contains("sig="), "a SAS signature field in the log:\n\(H.tail(p.output))")
            try Self.expectRestoreEqualsSource(s, sb, config: cfg, db: db, env: env, name: "sas", context: H.tail(p.output))
        }

        /// A SAS config whose endpoint is unreachable: ERROR lines carry the request URL, with `sig=` redacted; the
        /// launcher keeps running.
        @Test func unreachableEndpointWithSASLogsNoSignature() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let port = try runCommand("/usr/bin/env", ["python3", "-c",
                "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"]).output
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("unreach"),
                                 endpoint: "http://127.0.0.1:\(port)/\(s.account)", sas: true)
            try H.runWriter(db, count: 5)
            let p = try S3LauncherTests.startReplicate(sb, ["-config", cfg], env: Self.environment(), log: "launcher.log")
            let errorLine = { p.output.split(separator: "\n").map(String.init).first { $0.contains(" ERROR ") && $0.contains("127.0.0.1:\(port)") } }
            #expect(poll(timeout: 30) { errorLine() != nil }, "no ERROR line naming the endpoint:\n\(H.tail(p.output))")
            print("unreachable (SAS) -> \(errorLine()?.prefix(400) ?? "(none)")")
            #expect(p.process.isRunning, "the launcher exited:\n\(H.tail(p.output))")
            _ = H.stop(p, timeout: 60)
            Self.expectNoSecrets(s, p.output, "launcher log")
            let sigs = p.output.components(separatedBy: "sig=").dropFirst().map { $0.prefix(10) }
            #expect(sigs.allSatisfy { $0 == "[redacted]" }, "an unredacted sig= in the log: \(sigs)")
        }

        /// No key or SAS anywhere: workload identity from the environment (federated token file exchanged at the
        /// test authority); the launcher fetches one token for its whole run and the restore equals the source.
        @Test func replicateWithWorkloadIdentity() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            var env = Self.environment()
            env["AZURE_FEDERATED_TOKEN_FILE"] = s.federatedTokenFile
            let client = s.launcherClientID
            env["AZURE_CLIENT_ID"] = client
            env["AZURE_TENANT_ID"] = s.tenantID
            env["AZURE_AUTHORITY_HOST"] = s.authority
            func fetches() -> Int {
                let out = (try? runCommand("/usr/bin/curl", ["-sf", s.control + "/_stats"]).output) ?? ""
                let json = (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any]
                return ((json?["token_fetches_by_client"] as? [String: Any])?["workload:\(client)"] as? NSNumber)?.intValue ?? 0
            }
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("wi"))
            try H.runWriter(db, count: 1)
            let before = fetches()
            let p = try S3LauncherTests.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            try H.runWriter(db, rate: 1000, count: 500)
            #expect(poll(timeout: 20) { p.output.components(separatedBy: "wal segment written").count > 2 }, "\(H.tail(p.output))")
            #expect(H.stop(p) == 0, "launcher should exit 0 after SIGTERM:\n\(H.tail(p.output))")
            #expect(fetches() - before == 1, "the launcher fetched \(fetches() - before) tokens in one token lifetime")
            Self.expectNoSecrets(s, p.output, "launcher log")
            try Self.expectRestoreEqualsSource(s, sb, config: cfg, db: db, env: env, name: "wi", context: H.tail(p.output))
        }

        /// `launcher -config CFG -exec CMD` with the database missing: restored from the abs replica before the child runs.
        @Test func execRestoresAMissingDatabaseFirst() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.environment(key: s.key)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("exec"))
            try H.runWriter(db, rate: 1000, count: 300)
            let seed = try S3LauncherTests.startReplicate(sb, ["-config", cfg], env: env, log: "seed.log")
            try Self.waitForReplica(s, sb, config: cfg, db: db, count: 300, env: env)
            #expect(H.stop(seed) == 0, "\(H.tail(seed.output))")
            let want = try H.eventRows(db)
            H.removeDatabaseFiles(db)
            try? FileManager.default.removeItem(atPath: db + "-litestream")

            let count = sb.path("count")
            let out = try Self.run(s, ["-config", cfg, "-exec", "sh -c 'sqlite3 \"$LITESTREAM_DB_PATH\" \"SELECT count(*) FROM events\" > \(count)'"],
                                   env: env)
            #expect((try? String(contentsOfFile: count, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == "300", "\(out)")
            #expect(out.contains("restored \(db) from replica"), "\(out)")
            #expect(try H.eventRows(db) == want)
        }

        /// Dropped connections, a stall and 503s (faultproxy between the launcher and the server), then the server
        /// itself refusing for a while: replicate keeps running and catches up; the restore equals the source.
        @Test func replicationSurvivesFaultsAndCatchesUp() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.environment(key: s.key)
            let origin = s.endpoint.components(separatedBy: "/").prefix(3).joined(separator: "/")  // http://127.0.0.1:PORT
            let proxy = try S3LauncherTests.FaultProxy(sb, upstream: origin, maxSeconds: 240)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml"), direct = sb.path("direct.yml")
            let prefix = Self.prefix("faults")
            try Self.writeConfig(cfg, db: db, server: s, prefix: prefix, endpoint: proxy.endpoint + "/" + s.account)
            try Self.writeConfig(direct, db: db, server: s, prefix: prefix)
            try H.runWriter(db, count: 1)
            let p = try S3LauncherTests.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 250, count: 6000),
                                         log: "writer.log", environment: ProcessInfo.processInfo.environment)
            #expect(p.waitForOutput("wal segment written", timeout: 30), "no upload before the faults:\n\(H.tail(p.output))")
            for (mode, seconds) in [("drop", 3.0), ("pass", 1.5), ("stall", 4.0), ("pass", 1.5), ("503", 4.0), ("pass", 0.0)] {
                try proxy.set(mode)
                Thread.sleep(forTimeInterval: seconds)  // the fault phase's length, not a synchronisation
                #expect(p.process.isRunning, "the launcher exited during the \(mode) phase:\n\(H.tail(p.output))")
            }
            func refused() -> Int {
                let out = (try? runCommand("/usr/bin/curl", ["-sf", s.control + "/_stats"]).output) ?? ""
                let json = (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any]
                return (json?["refused"] as? NSNumber)?.intValue ?? -1
            }
            let refusedBefore = refused()
            _ = try runCommand("/usr/bin/curl", ["-sf", "-X", "POST", s.control + "/_refuse?seconds=4&prefix=\(s.container)/\(prefix)"])
            #expect(poll(timeout: 10) { refused() > refusedBefore }, "the server refused none of the launcher's requests")
            #expect(writer.process.isRunning, "the writer finished before the server refused requests (the test lost its load)")
            #expect(proxy.counter("faulted") > 0 && proxy.counter("reset") > 0, "faults not applied: \(proxy.stats())")
            try H.finishWriter(writer, timeout: 120)
            let total = try H.eventCount(db)
            try Self.waitForReplica(s, sb, config: direct, db: db, count: total, env: env, timeout: 90)
            #expect(p.process.isRunning, "the launcher is not running after the faults:\n\(H.tail(p.output))")
            #expect(H.stop(p) == 0, "launcher should exit 0 after SIGTERM:\n\(H.tail(p.output))")
            Self.expectNoSecrets(s, p.output, "launcher log")
            let errors = p.output.split(separator: "\n").filter { $0.contains(" ERROR ") }
            print("abs faults: proxy \(proxy.stats()); \(errors.count) ERROR lines, e.g.\n" + errors.prefix(3).map { "  " + $0.prefix(300) }.joined(separator: "\n"))
            try Self.expectRestoreEqualsSource(s, sb, config: direct, db: db, env: env, name: "faults", context: H.tail(p.output, 60))
        }

        /// A wrong key: an ERROR line with AuthenticationFailed naming the container, the key never printed;
        /// `restore` fails with one line.
        @Test func wrongKeyIsAuthenticationFailedWithoutTheKey() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let wrong = Data((0..<64).map { UInt8(255 - $0) }).base64EncodedString()
            let env = Self.environment(key: wrong)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("wrongkey"))
            try H.runWriter(db, count: 5)
            let p = try sb.start(TestSupport.launcher, ["replicate", "-config", cfg], log: "launcher.log", environment: env)
            // The sandbox path (named after the test) is cut out first, so that it cannot match the error code.
            func log() -> String { p.output.replacingOccurrences(of: sb.dir, with: "<sandbox>") }
            #expect(poll(timeout: 30) { log().contains("AuthenticationFailed") }, "no AuthenticationFailed:\n\(H.tail(p.output))")
            _ = H.stop(p, timeout: 30)
            let line = log().split(separator: "\n").first { $0.contains("AuthenticationFailed") }.map(String.init) ?? ""
            print("wrong key -> \(line)")
            #expect(line.contains(" ERROR ") && line.contains(s.container), "\(line)")
            let r = try runCommand(TestSupport.launcher, ["restore", "-o", sb.path("out.db"), "-config", cfg, db], timeout: 60, environment: env)
            let lines = r.output.split(separator: "\n", omittingEmptySubsequences: true)
            #expect(r.status == 1 && lines.count == 1 && r.output.replacingOccurrences(of: sb.dir, with: "<sandbox>")
                .contains("AuthenticationFailed"), "restore:\n\(r.output)")
            for text in [p.output, r.output] {
                #expect(!text.contains(wrong), "the wrong key appears in the output:\n\(H.tail(text))")
                Self.expectNoSecrets(s, text, "wrong-key output")
            }
        }
    }
}
