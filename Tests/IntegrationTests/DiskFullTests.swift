import Foundation
import Testing

/// The database's file system fills up while the app writes (issue 11): the app keeps writing while it can, the
/// launcher logs one line per change of state (not one per sync), keeps its shadow WAL sound, and catches up once
/// space returns; the restore equals the source. Needs root (a small tmpfs is mounted for the database).
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct DiskFullTests {
        typealias H = ReplicationHarness

        /// The app: 20 KB random blobs, 100 transactions a second; a failed write (disk full) is counted and
        /// retried; stops when `<db>.stop` appears.
        static let app = """
            import os, sqlite3, sys, time, signal
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
            db = sys.argv[1]
            con = sqlite3.connect(db, timeout=10, isolation_level=None)
            con.execute("PRAGMA journal_mode=wal")
            con.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)")
            ok = full = 0
            while not os.path.exists(db + ".stop"):
                try:
                    con.execute("INSERT INTO blobs (data) VALUES (?)", (os.urandom(20000),))
                    ok += 1
                except sqlite3.OperationalError as e:
                    full += 1
                    if full == 1 or full % 50 == 0:
                        print("FULL", full, e, flush=True)
                if ok % 100 == 0:
                    print("OK", ok, flush=True)
                time.sleep(0.01)
            print("DONE", ok, full, flush=True)
            """

        @Test func aFullDiskIsRiddenOutAndCaughtUp() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let data = sb.path("data")
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            let mount = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", data], timeout: 30)
            guard mount.status == 0 else {
                if TestSupport.isCI { Issue.record("cannot mount a tmpfs (needs root): \(mount.output)") } else {
                    print("SKIP disk-full test: cannot mount a tmpfs (needs root): \(mount.output)")
                }
                return
            }
            let db = data + "/app.db", replica = sb.url("r"), filler = data + "/filler"
            var processes: [RunningProcess] = []
            defer {
                for p in processes where p.process.isRunning { p.signal(SIGKILL); _ = p.wait(timeout: 10) }
                _ = try? runCommand("/bin/umount", ["-l", data], timeout: 30)
            }
            let python = ProcessInfo.processInfo.environment["RK_TEST_PYTHON"] ?? "/usr/bin/python3"
            let app = try RunningProcess(python, ["-c", Self.app, db], outputPath: sb.path("app.log"))
            processes.append(app)
            #expect(app.waitForOutput("OK 100", timeout: 30), "\(app.output)")
            let launcher = try H.startReplicate(sb, [db, replica], log: "launcher.log")
            processes.append(launcher)
            #expect(launcher.waitForOutput("wal segment written", timeout: 30), "\(H.tail(launcher.output))")

            // Fill the file system but for 1 MB.
            var st = statvfs()
            #expect(statvfs(data, &st) == 0)
            let free = Int(st.f_bavail) * Int(st.f_frsize)
            let fill = try runCommand("/usr/bin/fallocate", ["-l", String(max(free - (1 << 20), 0)), filler], timeout: 30)
            #expect(fill.status == 0, "\(fill.output)")
            #expect(app.waitForOutput("FULL 1 ", timeout: 60), "the app never hit the full disk: \(app.output.suffix(500))")
            #expect(poll(timeout: 60) { launcher.output.lowercased().contains("no space left on device") || launcher.output.contains("database or disk is full") },
                    "\(H.tail(launcher.output))")
            // The disk stays full for a while: the app keeps trying, the launcher keeps retrying without a line per try.
            #expect(app.waitForOutput("FULL 400 ", timeout: 60), "\(app.output.suffix(500))")
            let errorLines = launcher.output.split(separator: "\n").filter { $0.contains(" ERROR ") }
            #expect(errorLines.count <= 3, "one line per change of state, got:\n\(errorLines.joined(separator: "\n"))")

            // Space returns: the app writes again, the launcher catches up.
            try FileManager.default.removeItem(atPath: filler)
            let okBefore = app.output.components(separatedBy: "\nOK ").count
            #expect(poll(timeout: 60) { app.output.components(separatedBy: "\nOK ").count >= okBefore + 2 }, "\(app.output.suffix(500))")
            #expect(launcher.waitForOutput("sync recovered after", timeout: 60), "\(H.tail(launcher.output))")
            #expect(FileManager.default.createFile(atPath: db + ".stop", contents: nil), "cannot create the stop file")
            #expect(app.wait(timeout: 30) == 0, "\(app.output.suffix(500))")
            #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")

            let out = sb.path("restored.db")
            try H.restore(["-o", out, replica])
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok")
            let query = "SELECT count(*), sum(length(data)), hex(max(data)) FROM blobs;"
            #expect(try sqlite(out, query) == sqlite(db, query))
            print("disk full: app \(app.output.split(separator: "\n").last ?? ""); launcher ERROR lines: \(errorLines.count): \(errorLines.map { $0.suffix(160) })")
        }
    }
}
