import Foundation
import Testing

/// Stop requests around the app's lifetime (issue 11 item 8): before the app exists, and while it is stopped.
extension ExecTests {
    @Suite(.serialized) struct ExecStopTests {
        typealias H = ReplicationHarness

        /// TERM while the missing database is being restored: the restore is abandoned, the app never starts,
        /// the launcher exits 128 + 15, and nothing half-restored is left under the database's name.
        @Test func stopDuringRestoreNeverStartsTheApp() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.url("r"), marker = sb.path("started")
            // 48 MB of random pages: the restore takes a moment (decompress, verify, quick_check).
            _ = try sqlite(db, "PRAGMA journal_mode=wal; CREATE TABLE b(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 48) INSERT INTO b SELECT randomblob(1000000) FROM n;")
            let seed = try H.startReplicate(sb, [db, replica], log: "seed.log")
            #expect(seed.waitForOutput("snapshot written", timeout: 60), "\(H.tail(seed.output))")
            #expect(H.stop(seed) == 0)
            for suffix in ["", "-wal", "-shm"] { unlink(db + suffix) }
            let config = sb.path("c.yml")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - url: \(replica)\n".write(toFile: config, atomically: true, encoding: .utf8)
            let p = try sb.start(TestSupport.launcher, ["-config", config, "-exec", "sh -c 'touch \(marker); exec sleep 30'"],
                                 log: "exec.log")
            #expect(p.waitForOutput("database missing, restoring from replicas", timeout: 60), "\(H.tail(p.output))")
            p.signal(SIGTERM)
            #expect(p.wait(timeout: 30) == 128 + SIGTERM, "\(H.tail(p.output))")
            #expect(p.output.contains("signal received: TERM while preparing the databases; not starting the exec process"),
                    "\(H.tail(p.output))")
            #expect(!FileManager.default.fileExists(atPath: marker), "the app started")
            #expect(!p.output.contains("exec process started"))
            // Either the restore finished before the stop (a complete database) or nothing is at the database's path.
            if FileManager.default.fileExists(atPath: db) {
                #expect(try sqlite(db, "PRAGMA integrity_check;") == "ok")
            }
        }

        /// A stopped app still shuts down on a relayed TERM: the launcher continues its group after relaying.
        @Test func aStoppedAppIsContinuedAfterARelayedStop() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            try H.runWriter(db, count: 1)
            let config = sb.path("c.yml")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - url: \(sb.url("r"))\n".write(toFile: config, atomically: true, encoding: .utf8)
            let p = try sb.start(TestSupport.launcher, ["-config", config, "-exec", "sleep 60"], log: "exec.log")
            #expect(p.waitForOutput("exec process started: pid=", timeout: 60), "\(H.tail(p.output))")
            let line = p.output.split(separator: "\n").first { $0.contains("exec process started: pid=") } ?? ""
            let pidText = line.split(separator: "pid=").last?.prefix { $0.isNumber } ?? ""
            let app = try #require(Int32(pidText))
            #expect(kill(app, SIGSTOP) == 0)
            #expect(poll(timeout: 10) {
                ((try? String(contentsOfFile: "/proc/\(app)/stat", encoding: .utf8)) ?? "").split(separator: " ").dropFirst(2).first == "T"
            }, "the app did not stop")
            p.signal(SIGTERM)
            #expect(p.wait(timeout: 30) == 128 + SIGTERM, "\(H.tail(p.output))")
        }
    }
}
