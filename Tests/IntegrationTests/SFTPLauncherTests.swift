import Foundation
import Testing

/// Black-box tests of SFTP replicas through the built `launcher`, against the private sshd of
/// `scripts/start-sftp.sh` (RK_SFTP_*). Without RK_SFTP_HOST they skip with a message; under CI=true that fails.
/// Every launcher output is scanned for the test password and passphrase.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct SFTPLauncherTests {
        typealias H = ReplicationHarness
        typealias S3 = S3LauncherTests

        /// The private sshd, as `TestServers.swift` finds it.
        typealias Server = SFTPTestServer

        static func server(_ test: String = #function) -> Server? { SFTPTestServer.get(test) }

        static func dir(_ tag: String) -> String { "sftpl-\(tag)-\(UUID().uuidString.prefix(8).lowercased())" }

        /// A config with one `url: sftp://…` replica using the passphrase-protected key and the pinned host key.
        static func writeConfig(_ path: String, db: String, s: Server, port: Int? = nil, dir: String) throws {
            let lines = [
                "dbs:",
                "  - path: \"\(db)\"",
                "    replicas:",
                "      - url: \"sftp://\(s.user)@127.0.0.1:\(port ?? s.port)\(s.root)/\(dir)\"",
                "        key-path: \"\(s.passKey)\"",
                "        key-passphrase: \"\(s.passphrase)\"",
                "        host-key: \"\(s.hostKeyLine)\"",
                "        sync-interval: 200ms",
            ]
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }

        static func expectNoSecrets(_ s: Server, _ texts: [String], sourceLocation: SourceLocation = #_sourceLocation) {
            for t in texts { TestServers.expectNoSecrets(s.secrets, in: t, "the output", sourceLocation: sourceLocation) }
        }

        /// `launcher ARGS`, exit 0 required; returns the output.
        static func run(_ args: [String], env: [String: String]) throws -> String {
            let r = try runCommand(TestSupport.launcher, args, timeout: 120, environment: env)
            guard r.status == 0 else { throw TestFailure("launcher \(args.joined(separator: " ")) exited \(r.status):\n\(H.tail(r.output))") }
            return r.output
        }

        static func expectRestoreEquals(_ sb: H.Sandbox, _ args: [String], db: String, env: [String: String],
                                        name: String) throws -> String {
            let out = sb.path("restored-\(name).db")
            let log = try S3.restore(["-o", out] + args + (args.first == "-config" ? [db] : []), env: env)
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok", "restore log:\n\(log)")
            let diff = H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out))
            #expect(diff == nil, "restore (\(name)) differs from the source: \(diff ?? "")\n\(log)")
            return log
        }

        // MARK: - Config with host-key; listings; -exec restore-if-missing

        @Test func configWithHostKeyReplicatesRestoresListsAndExecRestores() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = ProcessInfo.processInfo.environment
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml"), dir = Self.dir("cfg")
            try Self.writeConfig(cfg, db: db, s: s, dir: dir)
            try H.runWriter(db, count: 1)
            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            try H.runWriter(db, rate: 1000, count: 1500)
            try S3.waitForReplicaEvents(sb, config: cfg, db: db, count: 1501, env: env, timeout: 60)
            let status = H.stop(launcher)
            #expect(status == 0, "launcher log:\n\(H.tail(launcher.output))")
            #expect(!launcher.output.contains(" ERROR "), "errors in the launcher log:\n\(H.tail(launcher.output))")
            #expect(FileManager.default.fileExists(atPath: s.root + "/" + dir + "/generations"))
            var outputs = [launcher.output]
            outputs.append(try Self.expectRestoreEquals(sb, ["-config", cfg], db: db, env: env, name: "config"))

            let gens = try Self.run(["generations", "-config", cfg, db], env: env)
            let snaps = try Self.run(["snapshots", "-config", cfg, db], env: env)
            let wal = try Self.run(["wal", "-config", cfg, db], env: env)
            outputs += [gens, snaps, wal]
            let gen = try #require(try FileManager.default.contentsOfDirectory(atPath: s.root + "/" + dir + "/generations").first)
            for (name, text) in [("generations", gens), ("snapshots", snaps), ("wal", wal)] {
                let rows = text.split(separator: "\n").dropFirst()
                #expect(rows.contains { $0.hasPrefix("sftp ") && $0.contains(gen) }, "\(name) lists no sftp row for \(gen):\n\(text)")
            }

            // -exec on a machine that lost the database: restored from the SFTP replica before the child starts.
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + suffix) }
            try? FileManager.default.removeItem(atPath: db + "-litestream")
            let count = sb.path("count")
            let r = try runCommand(TestSupport.launcher, ["replicate", "-config", cfg, "-exec",
                                                          "sh -c 'sqlite3 \"$LITESTREAM_DB_PATH\" \"SELECT count(*) FROM events\" > \(count)'"],
                                   timeout: 120, environment: env)
            outputs.append(r.output)
            #expect(r.status == 0, "\(H.tail(r.output))")
            #expect((try? String(contentsOfFile: count, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == "1501",
                    "\(H.tail(r.output))")
            #expect(r.output.contains("restored \(db) from replica"), "\(H.tail(r.output))")
            Self.expectNoSecrets(s, outputs)
        }

        // MARK: - URL form with known_hosts and the URL's password

        @Test func urlFormWithKnownHostsAndPassword() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            var env = ProcessInfo.processInfo.environment
            env["HOME"] = sb.path("home")  // ~/.ssh/known_hosts is the default host-key source
            try FileManager.default.createDirectory(atPath: sb.path("home/.ssh"), withIntermediateDirectories: true)
            let pct = s.password.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s.password
            let url = "sftp://\(s.user):\(pct)@127.0.0.1:\(s.port)\(s.root)/\(Self.dir("url"))"
            let db = sb.path("app.db")
            try H.runWriter(db, count: 1)

            // No known_hosts yet: refused with a clear error, nothing replicated.
            let refused = try runCommand(TestSupport.launcher, ["restore", "-o", sb.path("x.db"), url], timeout: 60, environment: env)
            #expect(refused.status != 0 && refused.output.contains("known_hosts"), "\(refused.output)")

            try FileManager.default.copyItem(atPath: s.knownHosts, toPath: sb.path("home/.ssh/known_hosts"))
            let launcher = try S3.startReplicate(sb, [db, url], env: env, log: "launcher.log")
            try H.runWriter(db, rate: 1000, count: 800)
            var last = ""
            let caughtUp = poll(timeout: 60) {
                let out = sb.path("probe-\(UUID().uuidString.prefix(8)).db")
                defer { H.removeDatabaseFiles(out) }
                last = (try? S3.restore(["-o", out, url], env: env)) ?? last
                if (try? H.eventCount(out)) == 801 { return true }
                usleep(300_000)
                return false
            }
            #expect(caughtUp, "the replica did not reach 801 rows:\n\(H.tail(launcher.output))")
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
            let restoreLog = try Self.expectRestoreEquals(sb, [url], db: db, env: env, name: "url")
            let gens = try Self.run(["generations", url], env: env)
            #expect(gens.split(separator: "\n").count >= 2, "\(gens)")
            Self.expectNoSecrets(s, [refused.output, launcher.output, restoreLog, gens, last])
        }

        // MARK: - sshd stopped for a while, then restarted

        /// A second sshd from the test server's config on its own port, which this test stops and restarts.
        final class PrivateSSHD {
            let config: String
            let port: Int
            let log: String
            let pidFile: String
            var pid: Int32?

            init(_ s: Server, dir: String) throws {
                port = Int(try runCommand("/usr/bin/env", ["python3", "-c",
                    "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"]).output
                    .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                config = dir + "/sshd_config"
                log = dir + "/sshd.log"
                pidFile = dir + "/sshd.pid"
                let base = try String(contentsOfFile: s.config, encoding: .utf8).split(separator: "\n").map { line -> String in
                    if line.hasPrefix("Port ") { return "Port \(port)" }
                    if line.hasPrefix("PidFile ") { return "PidFile \(dir)/sshd.pid" }
                    return String(line)
                }
                try (base.joined(separator: "\n") + "\n").write(toFile: config, atomically: true, encoding: .utf8)
                try start()
            }

            func start() throws {
                // Daemonised (not -D): a child of this test process would upset Foundation's reaping of the others.
                let r = try runCommand("/usr/sbin/sshd", ["-f", config, "-E", log], timeout: 30)
                guard r.status == 0 else { throw TestFailure("sshd: \(r.output)") }
                _ = poll(timeout: 10) { Int32((try? String(contentsOfFile: self.pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") != nil }
                pid = Int32((try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
                guard poll(timeout: 10, { Self.listening(self.port) }) else { throw TestFailure("private sshd did not listen") }
            }

            /// Kills the listener and every session process it forked (the connections drop).
            func stop() {
                guard let p = pid else { return }
                for d in Self.descendants(of: p) + [p] { kill(d, SIGKILL) }
                _ = poll(timeout: 10) { !Self.listening(self.port) }
                try? FileManager.default.removeItem(atPath: pidFile)
                pid = nil
            }

            static func descendants(of pid: Int32) -> [Int32] {
                var out: [Int32] = []
                for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                    guard let child = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                          let close = stat.lastIndex(of: ")") else { continue }
                    let fields = stat[stat.index(after: close)...].split(separator: " ")
                    if fields.count > 1, Int32(fields[1]) == pid { out += descendants(of: child) + [child] }
                }
                return out
            }

            static func listening(_ port: Int) -> Bool {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var a = sockaddr_in()
                a.sin_family = sa_family_t(AF_INET)
                a.sin_port = in_port_t(UInt16(port).bigEndian)
                a.sin_addr.s_addr = inet_addr("127.0.0.1")
                return withUnsafePointer(to: &a) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
                }
            }
        }

        @Test func sshdStoppedThenRestartedReplicationCatchesUp() throws {
            guard let s = Self.server() else { return }
            let sb = try H.Sandbox()
            let sshd = try PrivateSSHD(s, dir: sb.dir)
            defer { sshd.stop(); sb.cleanup() }
            let env = ProcessInfo.processInfo.environment
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml"), direct = sb.path("direct.yml")
            let dir = Self.dir("restart")
            try Self.writeConfig(cfg, db: db, s: s, port: sshd.port, dir: dir)
            try Self.writeConfig(direct, db: db, s: s, dir: dir)  // the always-up server, same directory
            try H.runWriter(db, count: 1)
            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 200, count: 2000),
                                         log: "writer.log", environment: env)
            #expect(launcher.waitForOutput("wal segment written", timeout: 30), "\(H.tail(launcher.output))")
            sshd.stop()
            #expect(poll(timeout: 30) { launcher.output.split(separator: "\n").contains { $0.contains(" ERROR ") && $0.contains("sftp") } },
                    "no ERROR line while sshd was down:\n\(H.tail(launcher.output))")
            Thread.sleep(forTimeInterval: 3)  // stays down a while: several sync attempts fail
            #expect(launcher.process.isRunning, "the launcher exited while sshd was down:\n\(H.tail(launcher.output))")
            try sshd.start()
            try H.finishWriter(writer, timeout: 120)
            try S3.waitForReplicaEvents(sb, config: direct, db: db, count: 2001, env: env, timeout: 90)
            #expect(launcher.process.isRunning)
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
            let errors = launcher.output.split(separator: "\n").filter { $0.contains(" ERROR ") }
            print("sshd restart: \(errors.count) ERROR lines, e.g. \(errors.first.map { String($0.prefix(300)) } ?? "-")")
            #expect(errors.allSatisfy { !$0.contains("\n") && $0.contains("curl error") }, "\(errors.prefix(3))")
            let log = try Self.expectRestoreEquals(sb, ["-config", direct], db: db, env: env, name: "restart")
            Self.expectNoSecrets(s, [launcher.output, log])
        }
    }
}
