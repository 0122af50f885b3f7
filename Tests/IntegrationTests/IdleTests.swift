import Foundation
import Testing

@Suite(.serialized)
struct IdleTests {
    /// An idle database costs nothing: after the initial sync, `launcher replicate` (inotify-driven) makes no
    /// read/write syscalls at all for 10 s, burns essentially no CPU and does not wake up periodically. A write to
    /// the database afterwards is still noticed and replicated (so the measurement did watch a live replicator).
    @Test(.timeLimit(.minutes(2)))
    func idleReplicatorDoesNoIOAndUsesNoCPU() async throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        // The database gets a directory of its own: the launcher watches the database's directory with inotify,
        // and the test's log file (which it reads) must not live there.
        let data = s.path("data")
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let db = data + "/idle.db"
        let replica = s.path("replica")
        try Interop.makeDatabase(db, rows: 100)

        let p = try s.start(TestSupport.launcher, ["replicate", db, "file://" + replica], log: "replicate.log")
        let pid = p.pid
        try #require(try await Interop.eventually(timeout: 60) { p.output.contains("snapshot written") },
                     "no initial snapshot:\n\(p.output)")

        // Initial sync done; wait (bounded) for 3 s without any I/O by the process.
        var last = try Interop.io(pid)
        var quietSince = Date()
        let quiet = try await Interop.eventually(timeout: 45, interval: .milliseconds(200)) {
            guard let now = try? Interop.io(pid) else { return false }
            if now != last { last = now; quietSince = Date() }
            return Date().timeIntervalSince(quietSince) >= 3
        }
        try #require(quiet, "launcher never went quiet after the initial sync (io: \(last)):\n\(p.output)")
        try #require(p.process.isRunning, "launcher exited:\n\(p.output)")

        // Measurement window: 10 s of a completely idle database. (This sleep is the measured interval, not a
        // synchronisation; it suspends, so other suites keep the runner's threads.)
        let ioBefore = try Interop.io(pid)
        let cpuBefore = try Interop.cpuTicks(pid)
        let switchesBefore = Interop.contextSwitches(pid)
        let logBefore = p.output
        try await Task.sleep(for: .seconds(10))
        try #require(p.process.isRunning, "launcher exited during the idle window:\n\(p.output)")
        let ioAfter = try Interop.io(pid)
        let cpuAfter = try Interop.cpuTicks(pid)
        let switchesAfter = Interop.contextSwitches(pid)

        // Bound: zero. /proc/PID/io counts every read/pread/readv (syscr, rchar) and write (syscw, wchar) syscall
        // of all threads, on any descriptor. An inotify-driven replicator with nothing to do is blocked in
        // poll()/sigwait() and has no reason to issue a single one; any periodic stat-and-read of the database or
        // WAL, and any periodic log line, shows up here.
        #expect(ioAfter.syscr == ioBefore.syscr && ioAfter.rchar == ioBefore.rchar,
                "idle launcher read data: before \(ioBefore), after \(ioAfter)")
        #expect(ioAfter.syscw == ioBefore.syscw && ioAfter.wchar == ioBefore.wchar,
                "idle launcher wrote data: before \(ioBefore), after \(ioAfter)")
        #expect(p.output == logBefore, "idle launcher logged:\n\(p.output.dropFirst(logBefore.count))")
        // CPU: utime+stime may grow by at most 5 ticks (50 ms at the usual 100 Hz, i.e. 0.5% of the window);
        // tick accounting is sampled, so allow a few for a stray runtime wake-up, but any polling loop costs more.
        let hz = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        #expect(cpuAfter - cpuBefore <= 5,
                "idle launcher used \(cpuAfter - cpuBefore) ticks (\(hz)/s) of CPU in 10 s")
        // Wake-ups: context switches of its threads. A timer or poll loop at >= 1 Hz would give >= 10 in 10 s.
        let wakeups = Interop.wakeups(before: switchesBefore, after: switchesAfter)
        #expect(wakeups <= 5, "idle launcher woke up \(wakeups) times in 10 s (before \(switchesBefore), after \(switchesAfter))")

        // Positive control: a write is still picked up and pushed (sync interval 1 s).
        let segmentsBefore = p.output.components(separatedBy: "wal segment written").count
        try Interop.insertRows(db, count: 3, tag: "after-idle")
        let pushed = try await Interop.eventually(timeout: 30) {
            p.output.components(separatedBy: "wal segment written").count > segmentsBefore
        }
        #expect(pushed, "write after the idle window was not replicated:\n\(p.output)")
        let ioFinal = try Interop.io(pid)
        #expect(ioFinal.syscr > ioAfter.syscr, "no reads after a write: \(ioAfter) → \(ioFinal); the counters do not track this process")

        p.signal(SIGTERM)
        #expect(try await Interop.exitStatus(p, timeout: 60) == 0, "launcher did not exit 0 on SIGTERM:\n\(p.output)")
        let mismatch = try Interop.restoreAndCompare(replicaURL: "file://" + replica, source: db, out: s.path("restored.db"))
        #expect(mismatch == nil, "\(mismatch ?? "")")
    }
}
