import Foundation
import Testing

/// Black-box acceptance tests of S3 replicas (issue 4) through the built `launcher` binary, against the S3
/// server that `scripts/start-seaweedfs.sh` starts (RK_S3_* variables). Without RK_S3_ENDPOINT the server tests
/// skip with a message; under CI=true that is a failure. The fault and idle tests put `Tests/Tools/faultproxy.py`
/// between the launcher and the server.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct S3LauncherTests {
        typealias H = ReplicationHarness

        // MARK: - Server, configs, proxy

        /// SeaweedFS, as `TestServers.swift` finds it.
        typealias Server = S3IntegrationTests.Server

        static func server(_ test: String = #function) -> Server? { S3IntegrationTests.server(test) }

        /// A key prefix of its own for every test run (a short tag, not the test's name: the names contain the
        /// S3 error codes that the bad-input tests look for in the log).
        static func prefix(_ tag: String) -> String {
            "s3l-\(tag)-\(UUID().uuidString.prefix(8).lowercased())"
        }

        /// The launcher's environment: ours (AWS_* from start-seaweedfs.sh), with the S3 keys set explicitly so the
        /// credential chain resolves the test identity even when only RK_S3_* are exported.
        static func launcherEnvironment(_ s: Server) -> [String: String] {
            var env = ProcessInfo.processInfo.environment
            env["AWS_ACCESS_KEY_ID"] = s.accessKeyID
            env["AWS_SECRET_ACCESS_KEY"] = s.secretAccessKey
            env["LITESTREAM_ACCESS_KEY_ID"] = nil
            env["LITESTREAM_SECRET_ACCESS_KEY"] = nil
            return env
        }

        /// A config with one database and one `type: s3` replica; `extra` lines are added to the replica.
        /// The setup of the proxied tests: launcher environment, a counting/faulting proxy in front of the server, a
        /// config through the proxy (`cfg`, retention-check-interval left at its 1h default) and one straight to the
        /// server (`direct`, for checks that must not be counted), and a database holding one row.
        /// `extra` lines go into the proxied config's replica only.
        static func proxiedSetup(_ s: Server, _ sb: H.Sandbox, name: String, maxSeconds: Int,
                                 extra: [String] = []) throws
            -> (env: [String: String], proxy: FaultProxy, db: String, cfg: String, direct: String) {
            let env = launcherEnvironment(s)
            let proxy = try FaultProxy(sb, upstream: s.endpoint, maxSeconds: maxSeconds)
            let db = sb.path("app.db"), prefix = Self.prefix(name)
            let cfg = sb.path("litestream.yml"), direct = sb.path("direct.yml")
            try writeConfig(cfg, db: db, server: s, prefix: prefix, endpoint: proxy.endpoint, extra: extra)
            try writeConfig(direct, db: db, server: s, prefix: prefix)
            try H.runWriter(db, count: 1)
            return (env, proxy, db, cfg, direct)
        }

        static func writeConfig(_ path: String, db: String, server s: Server, prefix: String, endpoint: String? = nil,
                                bucket: String? = nil, extra: [String] = []) throws {
            var lines = [
                "dbs:",
                "  - path: \"\(db)\"",
                "    replicas:",
                "      - type: s3",
                "        bucket: \"\(bucket ?? s.bucket)\"",
                "        path: \"\(prefix)\"",
                "        endpoint: \"\(endpoint ?? s.endpoint)\"",
                "        region: \"\(s.region)\"",
                "        force-path-style: true",
            ]
            lines += extra.map { "        " + $0 }
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }

        /// Starts `launcher replicate ARGS` with `env` and waits (bounded) for `initialization complete`.
        static func startReplicate(_ sb: H.Sandbox, _ args: [String], env: [String: String],
                                   log: String) throws -> RunningProcess {
            let p = try sb.start(TestSupport.launcher, ["replicate"] + args, log: log, environment: env)
            guard p.waitForOutput("initialization complete", timeout: 60) else {
                throw TestFailure("launcher replicate \(args) did not initialise within 60 s:\n\(H.tail(p.output))")
            }
            return p
        }

        /// `launcher restore ARGS` with `env`; throws with the output unless it exits 0.
        @discardableResult
        static func restore(_ args: [String], env: [String: String], timeout: TimeInterval = 120) throws -> String {
            let r = try runCommand(TestSupport.launcher, ["restore"] + args, timeout: timeout, environment: env)
            guard r.status == 0 else {
                throw TestFailure("launcher restore \(args.joined(separator: " ")) exited \(r.status):\n\(H.tail(r.output))")
            }
            return r.output
        }

        /// Polls (bounded) until a restore through `cfg` (which must point at the server directly, not through a
        /// proxy) holds exactly `count` events rows.
        static func waitForReplicaEvents(_ sb: H.Sandbox, config cfg: String, db: String, count: Int, env: [String: String],
                                         timeout: TimeInterval) throws {
            var last = "no restore attempted"
            let ok = poll(timeout: timeout) {
                let out = sb.path("probe-\(UUID().uuidString.prefix(8)).db")
                defer { H.removeDatabaseFiles(out) }
                do {
                    try restore(["-o", out, "-config", cfg, db], env: env)
                    let n = try H.eventCount(out)
                    last = "restored \(n) rows"
                    if n == count { return true }
                } catch {
                    last = "\(error)"
                }
                usleep(500_000)
                return false
            }
            guard ok else { throw TestFailure("the S3 replica did not reach \(count) events rows in \(Int(timeout)) s: \(last)") }
        }

        /// Rows written so far by a running `example-writer` (its progress output is block-buffered).
        static func rows(_ db: String) -> Int {
            Int((try? sqlite(db, "SELECT coalesce(max(id), 0) FROM events;")) ?? "") ?? 0
        }

        /// `Tests/Tools/faultproxy.py` between the launcher and the server.
        final class FaultProxy {
            static var script: String {
                URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .appendingPathComponent("Tools/faultproxy.py").path
            }

            let process: RunningProcess
            let control: String
            let statsPath: String
            let port: Int
            var endpoint: String { "http://127.0.0.1:\(port)" }
            var log: String { process.output }

            init(_ sb: H.Sandbox, upstream: String, maxSeconds: Int) throws {
                control = sb.path("proxy.ctl")
                statsPath = sb.path("proxy.stats")
                let portFile = sb.path("proxy.port")
                try "pass\n".write(toFile: control, atomically: true, encoding: .utf8)
                let proc = try sb.start("/usr/bin/env", ["python3", "-u", Self.script, "--upstream", upstream,
                                                           "--control", control, "--stats", statsPath,
                                                           "--port-file", portFile, "--max-seconds", String(maxSeconds)],
                                          log: "proxy.log", environment: ProcessInfo.processInfo.environment)
                process = proc
                var p = 0
                _ = poll(timeout: 20) {
                    p = Int(((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "")
                        .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                    return p > 0 || !proc.process.isRunning
                }
                guard p > 0 else { throw TestFailure("faultproxy did not start:\n\(proc.output)") }
                port = p
            }

            /// Switches the mode (`pass`, `drop`, `stall`, `500`, `503`) and waits until the proxy reports it.
            func set(_ mode: String) throws {
                try (mode + "\n").write(toFile: control, atomically: true, encoding: .utf8)
                guard poll(timeout: 5, { (stats()["mode"] as? String) == mode }) else {
                    throw TestFailure("faultproxy did not switch to \(mode):\n\(H.tail(log))")
                }
            }

            func stats() -> [String: Any] {
                guard let d = FileManager.default.contents(atPath: statsPath),
                      let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return [:] }
                return o
            }

            func counter(_ name: String) -> Int { (stats()[name] as? NSNumber)?.intValue ?? -1 }

            /// The proxy's `REQ` log lines (one per request seen).
            var requestLines: [String] { log.split(separator: "\n").map(String.init).filter { $0.hasPrefix("REQ ") } }
        }

        /// Restores through `cfg` and compares with `db`: integrity ok and identical events rows.
        static func expectRestoreEqualsSource(_ sb: H.Sandbox, config cfg: String, db: String, env: [String: String],
                                              name: String, context: @autoclosure () -> String) throws {
            let out = sb.path("restored-\(name).db")
            let log = try restore(["-o", out, "-config", cfg, db], env: env)
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok", "restore log:\n\(log)")
            let diff = H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out))
            #expect(diff == nil, "restore (\(name)) differs from the source: \(diff ?? "")\n\(context())")
        }

        // MARK: - 1. Malformed s3:// URLs

        /// `launcher replicate DB URL` with a malformed `s3://` URL: a one-line error at startup, exit status 1.
        /// (No server needed: the URL must be rejected before any request.)
        @Test func malformedS3URLIsAOneLineStartupError() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            try H.runWriter(db, count: 1)
            var env = ProcessInfo.processInfo.environment
            env["AWS_ACCESS_KEY_ID"] = "AKIDDUMMY"        // credentials present, so only the URL can be at fault
            env["AWS_SECRET_ACCESS_KEY"] = "dummySecret"
            env["HOME"] = sb.dir
            let cases: [(url: String, expect: String)] = [
                ("s3://", "bucket required for s3 replica"),
                ("s3:///app.db", "bucket required for s3 replica"),
                ("s3://bkt.localhost:notaport/x", "invalid port \":notaport\" after host"),
            ]
            for c in cases {
                let r = try runCommand(TestSupport.launcher, ["replicate", db, c.url], timeout: 20, environment: env)
                let lines = r.output.split(separator: "\n", omittingEmptySubsequences: true)
                #expect(r.status == 1, "\(c.url): exit status \(r.status), output:\n\(r.output)")
                #expect(lines.count == 1, "\(c.url): expected a one-line error, got:\n\(r.output)")
                #expect(r.output.contains(c.expect), "\(c.url): expected \(c.expect), got:\n\(r.output)")
                #expect(!r.output.contains("initialization complete"), "\(c.url): replication started:\n\(r.output)")
            }
        }

        /// Hosts that Go's `url.Parse` rejects (upstream fails at startup with `parse "…": invalid URL escape "%zz"`
        /// and `parse "…": missing ']' in host`) must not start replication either.
        @Test func malformedS3URLHostIsRejectedAtStartup() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            try H.runWriter(db, count: 1)
            var env = ProcessInfo.processInfo.environment
            env["AWS_ACCESS_KEY_ID"] = "AKIDDUMMY"
            env["AWS_SECRET_ACCESS_KEY"] = "dummySecret"
            env["HOME"] = sb.dir
            let cases: [(url: String, expect: String)] = [
                ("s3://%zz/x", "invalid URL escape \"%zz\""),
                ("s3://[::1/x", "missing ']' in host"),
            ]
            for c in cases {
                let p = try sb.start(TestSupport.launcher, ["replicate", db, c.url], log: "launcher-\(UUID().uuidString.prefix(8)).log",
                                     environment: env)
                let status = p.wait(timeout: 5)
                if status == nil { p.signal(SIGKILL); _ = p.wait(timeout: 5) }
                let lines = p.output.split(separator: "\n", omittingEmptySubsequences: true)
                #expect(status == 1, "\(c.url): should exit 1 at startup, but \(status.map { "exited \($0)" } ?? "was still running after 5 s"):\n\(p.output)")
                #expect(lines.count == 1, "\(c.url): expected a one-line error, got:\n\(p.output)")
                #expect(p.output.contains(c.expect), "\(c.url): expected \(c.expect), got:\n\(p.output)")
            }
        }

        // MARK: - 2. Round trip with kill -9 and restart

        @Test func roundTripWithKillAndRestartUnderLoad() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.launcherEnvironment(s)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml"), prefix = Self.prefix("roundtrip")
            try Self.writeConfig(cfg, db: db, server: s, prefix: prefix)
            try H.runWriter(db, count: 1)

            let first = try Self.startReplicate(sb, ["-config", cfg], env: env, log: "launcher1.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 500, count: 3000),
                                         log: "writer.log", environment: ProcessInfo.processInfo.environment)
            // Mid-load: some uploads done (snapshot and WAL segments), the writer well under way.
            var rows = 0
            let midLoad = poll(timeout: 60) {
                rows = Self.rows(db)
                let segments = first.output.components(separatedBy: "wal segment written").count - 1
                if rows >= 1000 && segments >= 2 && first.output.contains("snapshot written") { return true }
                usleep(100_000)
                return false
            }
            #expect(midLoad, "writer/launcher did not reach mid-load (rows=\(rows)):\n\(H.tail(first.output))")
            #expect(writer.process.isRunning, "the writer should still be running when the launcher is killed")
            first.signal(SIGKILL)
            #expect(first.wait(timeout: 30) != nil, "launcher did not die after SIGKILL")

            let second = try Self.startReplicate(sb, ["-config", cfg], env: env, log: "launcher2.log")
            try H.finishWriter(writer, timeout: 120)
            for i in 1...3 {
                _ = try sqlite(db, "INSERT INTO events (at, payload) VALUES (strftime('%Y-%m-%dT%H:%M:%SZ','now'), 'after restart \(i)');")
            }
            let status = H.stop(second)
            #expect(status == 0, "restarted launcher should exit 0 after SIGTERM:\n\(H.tail(second.output))")
            for (line, wellFormed) in H.newGenerationLines(second.output) {
                #expect(wellFormed, "new-generation log line without the documented form/reason: \(line)")
            }
            #expect(!second.output.contains("ERROR"), "errors in the restarted launcher's log:\n\(H.tail(second.output))")
            #expect(try H.eventCount(db) == 3004)

            // Restore through the config (default -parallelism 8), and through the s3:// URL form with -parallelism 1.
            try Self.expectRestoreEqualsSource(sb, config: cfg, db: db, env: env, name: "config",
                                               context: "first launcher:\n\(H.tail(first.output, 15))\nsecond launcher:\n\(H.tail(second.output))")
            let byURL = sb.path("restored-url.db")
            let log = try Self.restore(["-o", byURL, "-parallelism", "1", s.url(prefix)], env: env)
            #expect(try sqlite(byURL, "PRAGMA integrity_check;") == "ok", "restore log:\n\(log)")
            let diff = H.difference(expected: try H.eventRows(db), actual: try H.eventRows(byURL))
            #expect(diff == nil, "restore by URL \(s.url(prefix)) differs from the source: \(diff ?? "")\n\(log)")
        }

        /// `kill -9` while a WAL upload is caught in its middle (the proxy holds the PUT body half-sent, then resets
        /// the server side when the launcher is gone), restart: the replica is still restorable and equal.
        @Test func killInTheMiddleOfAnUploadThenRestart() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let (env, proxy, db, cfg, direct) = try Self.proxiedSetup(s, sb, name: "killupload", maxSeconds: 180)

            let first = try Self.startReplicate(sb, ["-config", cfg], env: env, log: "launcher1.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 500, count: 3000),
                                         log: "writer.log", environment: ProcessInfo.processInfo.environment)
            #expect(poll(timeout: 30) { Self.rows(db) >= 500 && first.output.contains("wal segment written") },
                    "no upload before the kill:\n\(H.tail(first.output))")
            try proxy.set("hold-put")
            let held = poll(timeout: 60) { proxy.counter("held") > 0 }
            #expect(held, "no PUT was caught in its middle: \(proxy.stats())\n\(H.tail(first.output))")
            print("kill during upload: " + (proxy.log.split(separator: "\n").first { $0.hasPrefix("HOLD ") }.map(String.init) ?? "(no HOLD line)"))
            first.signal(SIGKILL)
            #expect(first.wait(timeout: 30) != nil, "launcher did not die after SIGKILL")
            // The proxy notices the dead client and resets the server side: that upload never completes.
            #expect(poll(timeout: 5) { proxy.log.contains("client went away") },
                    "the proxy did not see the killed launcher's held upload end:\n\(H.tail(proxy.log))")
            try proxy.set("pass")

            let second = try Self.startReplicate(sb, ["-config", cfg], env: env, log: "launcher2.log")
            try H.finishWriter(writer, timeout: 120)
            let status = H.stop(second)
            #expect(status == 0, "restarted launcher should exit 0 after SIGTERM:\n\(H.tail(second.output))")
            for (line, wellFormed) in H.newGenerationLines(second.output) {
                #expect(wellFormed, "new-generation log line without the documented form/reason: \(line)")
            }
            #expect(try H.eventCount(db) == 3001)
            try Self.expectRestoreEqualsSource(sb, config: direct, db: db, env: env, name: "killupload",
                                               context: "second launcher:\n\(H.tail(second.output))\nproxy: \(proxy.stats())")
        }

        // MARK: - 3. Bad credentials, missing bucket

        /// Runs `launcher replicate -config CFG` until a log line contains `code` (bounded), then stops it.
        /// Returns the launcher's whole output and the first line with `code`.
        private func replicateUntilError(_ sb: H.Sandbox, config: String, env: [String: String],
                                         code: String, log: String) throws -> (output: String, line: String?) {
            let p = try sb.start(TestSupport.launcher, ["replicate", "-config", config], log: log, environment: env)
            // The sandbox path (named after the test) is cut out first, so that it cannot match `code`.
            func lines() -> [String] {
                p.output.replacingOccurrences(of: sb.dir, with: "<sandbox>").split(separator: "\n").map(String.init)
            }
            _ = poll(timeout: 30) { lines().contains { $0.contains(code) } }
            if p.process.isRunning { _ = H.stop(p, timeout: 30) }
            let line = lines().first { $0.contains(code) }
            print("\(code) -> \(line ?? "(no such line)")")
            if let line { #expect(line.contains(" ERROR "), "the \(code) line is not logged at ERROR level: \(line)") }
            return (p.output, line)
        }

        @Test func wrongSecretLogsSignatureDoesNotMatchWithoutTheSecret() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.launcherEnvironment(s)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try H.runWriter(db, count: 5)
            let wrong = "WrongSecret/Q+z=9sTr0ngH1dden"
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("wrongsecret"),
                                 extra: ["access-key-id: \"\(s.accessKeyID)\"", "secret-access-key: \"\(wrong)\""])
            let r = try replicateUntilError(sb, config: cfg, env: env, code: "SignatureDoesNotMatch", log: "launcher.log")
            #expect(r.line != nil, "no SignatureDoesNotMatch line in the launcher log:\n\(H.tail(r.output))")
            // `restore` with the same config fails with a one-line error carrying the code.
            let restore = try runCommand(TestSupport.launcher, ["restore", "-o", sb.path("out.db"), "-config", cfg, db],
                                         timeout: 60, environment: env)
            #expect(restore.status == 1, "restore with a wrong secret: exit \(restore.status):\n\(restore.output)")
            let restoreLines = restore.output.replacingOccurrences(of: sb.dir, with: "<sandbox>")
                .split(separator: "\n", omittingEmptySubsequences: true)
            #expect(restoreLines.count == 1 && restoreLines[0].contains("SignatureDoesNotMatch"),
                    "restore with a wrong secret should fail with a one-line SignatureDoesNotMatch error:\n\(restore.output)")
            for text in [r.output, restore.output] {
                #expect(!text.contains(wrong), "the wrong secret appears in the output:\n\(H.tail(text))")
                #expect(!text.contains("WrongSecret"), "part of the secret appears in the output:\n\(H.tail(text))")
                #expect(!text.contains(s.secretAccessKey), "the real secret appears in the output")
                #expect(!text.contains("Signature="), "a request signature appears in the output:\n\(H.tail(text))")
            }
        }

        @Test func unknownAccessKeyLogsInvalidAccessKeyId() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.launcherEnvironment(s)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try H.runWriter(db, count: 5)
            let secret = "Unkn0wnKeySecret/+=xyz"
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("unknownkey"),
                                 extra: ["access-key-id: \"AKIDNOSUCHKEY0000\"", "secret-access-key: \"\(secret)\""])
            let r = try replicateUntilError(sb, config: cfg, env: env, code: "InvalidAccessKeyId", log: "launcher.log")
            #expect(r.line != nil, "no InvalidAccessKeyId line in the launcher log:\n\(H.tail(r.output))")
            #expect(!r.output.contains(secret), "the secret appears in the output:\n\(H.tail(r.output))")
            #expect(!r.output.contains(s.secretAccessKey), "the real secret appears in the output")
        }

        @Test func missingBucketLogsNoSuchBucketNamingTheBucket() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.launcherEnvironment(s)
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try H.runWriter(db, count: 5)
            let bucket = "rk-missing-\(UUID().uuidString.prefix(8).lowercased())"
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("nobucket"), bucket: bucket)
            let r = try replicateUntilError(sb, config: cfg, env: env, code: "NoSuchBucket", log: "launcher.log")
            let line = try #require(r.line, "no NoSuchBucket line in the launcher log:\n\(H.tail(r.output))")
            #expect(line.contains(bucket), "the NoSuchBucket line does not name the bucket \(bucket): \(line)")
            #expect(!r.output.contains(s.secretAccessKey), "the secret appears in the output")
        }

        /// An endpoint where nothing listens: the launcher keeps running, logs an error naming the endpoint, and a
        /// SIGTERM ends it (bounded) with status 1 because the final sync could not reach the replica.
        @Test func unreachableEndpointLogsAnErrorAndKeepsRunning() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = Self.launcherEnvironment(s)
            // A port that was free a moment ago (bound, then closed).
            let port = try runCommand("/usr/bin/env", ["python3", "-c",
                "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"]).output
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let endpoint = "http://127.0.0.1:\(port)"
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml")
            try H.runWriter(db, count: 5)
            try Self.writeConfig(cfg, db: db, server: s, prefix: Self.prefix("unreachable"), endpoint: endpoint)
            let p = try Self.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            let errorLine: () -> String? = {
                p.output.split(separator: "\n").map(String.init).first { $0.contains(" ERROR ") && $0.contains("127.0.0.1:\(port)") }
            }
            #expect(poll(timeout: 30) { errorLine() != nil }, "no ERROR line naming \(endpoint):\n\(H.tail(p.output))")
            print("unreachable -> \(errorLine() ?? "(no such line)")")
            Thread.sleep(forTimeInterval: 3)
            #expect(p.process.isRunning, "the launcher exited because the endpoint is unreachable:\n\(H.tail(p.output))")
            let status = H.stop(p, timeout: 60)
            #expect(status == 1, "after SIGTERM with an unreachable replica the final sync fails: expected exit 1, got \(status.map(String.init) ?? "no exit within 60 s"):\n\(H.tail(p.output))")
        }

        // MARK: - 4. Idle cost

        /// After the initial sync and a few quiet seconds, 60 s without writes see no request at all.
        @Test func idleReplicaSendsNoRequestsFor60Seconds() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let (env, proxy, db, cfg, direct) = try Self.proxiedSetup(s, sb, name: "idle", maxSeconds: 240)

            let launcher = try Self.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            try H.runWriter(db, rate: 500, count: 200)
            try Self.waitForReplicaEvents(sb, config: direct, db: db, count: 201, env: env, timeout: 30)
            #expect(proxy.counter("requests") > 0, "the launcher's requests do not go through the proxy:\n\(H.tail(proxy.log))")

            // Quiet: no request for 3 s in a row (bounded).
            var last = proxy.counter("requests"), lastChange = Date()
            let quiet = poll(timeout: 30) {
                let n = proxy.counter("requests")
                if n != last { last = n; lastChange = Date() }
                return Date().timeIntervalSince(lastChange) >= 3
            }
            #expect(quiet, "requests never stopped after the initial sync:\n\(H.tail(proxy.requestLines.joined(separator: "\n")))")

            let before = proxy.counter("requests"), linesBefore = proxy.requestLines.count
            Thread.sleep(forTimeInterval: 60)
            let after = proxy.counter("requests")
            #expect(launcher.process.isRunning, "the launcher died while idle:\n\(H.tail(launcher.output))")
            let during = proxy.requestLines.dropFirst(linesBefore)
            #expect(after == before, "\(after - before) requests during 60 idle seconds:\n\(during.prefix(20).joined(separator: "\n"))")

            // Sanity: a write afterwards does go through the proxy, and the replica catches up.
            _ = try sqlite(db, "INSERT INTO events (at, payload) VALUES (strftime('%Y-%m-%dT%H:%M:%SZ','now'), 'after idle');")
            #expect(poll(timeout: 15) { proxy.counter("requests") > after }, "no request after a write following the idle period")
            let status = H.stop(launcher)
            #expect(status == 0, "launcher log:\n\(H.tail(launcher.output))")
            try Self.expectRestoreEqualsSource(sb, config: direct, db: db, env: env, name: "idle",
                                               context: H.tail(launcher.output))
        }

        // MARK: - 5. Faults

        /// Dropped connections, a stall and 503/500 answers while the writer runs: the launcher keeps running,
        /// catches up once the faults stop, and the restore equals the source.
        @Test func replicationSurvivesProxyFaults() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let (env, proxy, db, cfg, direct) = try Self.proxiedSetup(s, sb, name: "faults", maxSeconds: 240)

            let launcher = try Self.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 250, count: 5000),
                                         log: "writer.log", environment: ProcessInfo.processInfo.environment)
            #expect(launcher.waitForOutput("wal segment written", timeout: 30), "no upload before the faults:\n\(H.tail(launcher.output))")

            // Each phase lasts a few seconds, long enough to exhaust the HTTP client's retries of one request.
            let phases: [(mode: String, seconds: Double)] = [
                ("drop", 4), ("pass", 2), ("stall", 5), ("pass", 2), ("503", 5), ("500", 3), ("pass", 0),
            ]
            for (mode, seconds) in phases {
                try proxy.set(mode)
                Thread.sleep(forTimeInterval: seconds)
                #expect(launcher.process.isRunning, "the launcher exited during the \(mode) phase:\n\(H.tail(launcher.output))")
            }
            #expect(proxy.counter("faulted") > 0, "no request was answered with 5xx: \(proxy.stats())")
            #expect(proxy.counter("reset") > 0, "no connection was dropped: \(proxy.stats())")
            #expect(proxy.counter("stalled") > 0, "no transfer was stalled: \(proxy.stats())")

            try H.finishWriter(writer, timeout: 120)
            let total = try H.eventCount(db)
            #expect(total == 5001)
            // Catches up through the proxy while the launcher keeps running.
            try Self.waitForReplicaEvents(sb, config: direct, db: db, count: total, env: env, timeout: 60)
            #expect(launcher.process.isRunning, "the launcher is not running after the faults:\n\(H.tail(launcher.output))")
            let status = H.stop(launcher)
            #expect(status == 0, "launcher should exit 0 after SIGTERM:\n\(H.tail(launcher.output))")
            for (line, wellFormed) in H.newGenerationLines(launcher.output) {
                #expect(wellFormed, "new-generation log line without the documented form/reason: \(line)")
            }
            let errors = launcher.output.split(separator: "\n").filter { $0.contains(" ERROR ") }
            print("faults: proxy \(proxy.stats()); \(errors.count) ERROR lines in the launcher log, e.g.\n"
                  + errors.prefix(4).map { "  " + $0.prefix(300) }.joined(separator: "\n"))
            try Self.expectRestoreEqualsSource(sb, config: direct, db: db, env: env, name: "faults",
                                               context: "launcher log:\n\(H.tail(launcher.output, 60))\nproxy: \(proxy.stats())")
        }
    }
}

extension S3IntegrationTests.Server {
    var accessKeyID: String { credentials.accessKeyID }
    var secretAccessKey: String { credentials.secretAccessKey }
    var port: String { String(endpoint.split(separator: ":").last ?? "") }
    /// `s3://BUCKET.localhost:PORT/PREFIX`: the URL form of a replica on this server (path-style endpoint).
    func url(_ prefix: String) -> String { "s3://\(bucket).localhost:\(port)/\(prefix)" }
}
