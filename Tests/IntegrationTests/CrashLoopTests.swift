import Foundation
import Testing

/// Crash loops under a mixed load (issue 11): the launcher, the app, or both SIGKILLed at random moments and
/// restarted, again and again; at the end the restore equals the source row for row.
///
/// `RK_CRASH_CYCLES` sets the number of cycles (default 12 in the suite; the full run by hand uses 60).
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct CrashLoopTests {
        typealias H = ReplicationHarness

        static var python: String { ProcessInfo.processInfo.environment["RK_TEST_PYTHON"] ?? "/usr/bin/python3" }
        static var loadScript: String {
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Tools/mixed_load.py").path
        }

        /// A digest of every row of every table, in key order (blobs included), computed by Python's sqlite3.
        static func contentDigest(_ db: String) throws -> String {
            let script = """
                import hashlib, sqlite3, sys
                con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
                assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check failed"
                h = hashlib.sha256()
                for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\\\_litestream%' ESCAPE '\\\\' ORDER BY name"):
                    h.update(t.encode())
                    for row in con.execute('SELECT * FROM "%s" ORDER BY 1' % t):
                        h.update(repr(row).encode())
                counts = [con.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in ("items", "blobs")]
                print(h.hexdigest(), *counts)
                """
            let r = try runCommand(python, ["-c", script, db], timeout: 120)
            guard r.status == 0 else { throw TestFailure("digest of \(db) failed:\n\(r.output)") }
            return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        @Test func killLauncherAppOrBothAtRandomMoments() throws {
            let cycles = Int(ProcessInfo.processInfo.environment["RK_CRASH_CYCLES"] ?? "") ?? 12
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.url("r")
            var rng = SystemRandomNumberGenerator()
            var seed = 1
            func startApp() throws -> RunningProcess {
                seed += 1
                return try sb.start(Self.python, [Self.loadScript, db, "--seed", String(seed)], log: "app-\(seed).log")
            }
            var app = try startApp()
            #expect(poll(timeout: 30) { ((try? sqlite(db, "SELECT count(*) FROM items;")) ?? "0") != "0" }, "the load did not start")
            var launcher = try H.startReplicate(sb, [db, replica], log: "launcher-0.log")
            var kills = (launcher: 0, app: 0)
            for cycle in 1...cycles {
                // A random moment: the workload runs meanwhile (this is the schedule, not a synchronisation).
                usleep(UInt32.random(in: 200_000...1_200_000, using: &rng))
                let target = cycle % 3  // 0: the launcher, 1: the app, 2: both
                if target != 1 {
                    launcher.signal(SIGKILL)
                    _ = launcher.wait(timeout: 10)
                    kills.launcher += 1
                }
                if target != 0 {
                    app.signal(SIGKILL)
                    _ = app.wait(timeout: 10)
                    kills.app += 1
                    app = try startApp()
                }
                if target != 1 { launcher = try H.startReplicate(sb, [db, replica], log: "launcher-\(cycle).log") }
                #expect(launcher.process.isRunning, "cycle \(cycle): \(H.tail(launcher.output))")
            }
            app.signal(SIGTERM)
            let appStatus = app.wait(timeout: 30)
            if appStatus == nil {
                let pid = app.pid
                let state = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8))?.split(separator: "\n").filter { $0.hasPrefix("State") || $0.hasPrefix("Sig") } ?? []
                let wchan = (try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8)) ?? "?"
                let py = try? runCommand("/bin/sh", ["-c", "cat /proc/\(pid)/stack 2>/dev/null; ls -l /proc/\(pid)/fd"], timeout: 10)
                Issue.record("the app did not stop: \(state) wchan=\(wchan)\n\(py?.output ?? "")\n\(H.tail(app.output))")
            }
            #expect(appStatus == 0, "\(H.tail(app.output))")
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
            let out = sb.path("restored.db")
            try H.restore(["-o", out, replica])
            let want = try Self.contentDigest(db), got = try Self.contentDigest(out)
            #expect(got == want, "restored \(got) != source \(want) after \(cycles) cycles")
            print("crash loop: \(cycles) cycles (\(kills.launcher) launcher kills, \(kills.app) app kills): \(want)")
        }
    }
}
