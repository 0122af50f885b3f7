import Foundation
import Testing

/// A store outage longer than every timeout (issue 11): the S3 server unreachable for two minutes (the proxy drops
/// every connection, then stalls them) while the app keeps writing; the launcher keeps running with bounded memory
/// and catches up once the store is back.
extension ReplicationIntegrationTests.S3LauncherTests {
    @Test func aTwoMinuteOutageIsRiddenOut() throws {
        guard let s = Self.server() else { return }
        let sb = try H.Sandbox()
        defer { sb.cleanup() }
        let (env, proxy, db, cfg, direct) = try Self.proxiedSetup(s, sb, name: "outage", maxSeconds: 400)
        let launcher = try Self.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
        let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 100, count: 14_000),
                                     log: "writer.log", environment: ProcessInfo.processInfo.environment)
        #expect(launcher.waitForOutput("wal segment written", timeout: 30), "\(H.tail(launcher.output))")

        func rssKB() -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(launcher.pid)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        var samples: [Int] = []
        // 70 s of dropped connections, then 60 s of connections that hang: longer than the connect, stall and
        // retry budgets of every request.
        for (mode, seconds) in [("drop", 70), ("stall", 60)] {
            try proxy.set(mode)
            let until = Date().addingTimeInterval(TimeInterval(seconds))
            while Date() < until {
                Thread.sleep(forTimeInterval: 5)  // the outage's length is the test, not a synchronisation
                samples.append(rssKB())
                #expect(launcher.process.isRunning, "the launcher exited during the \(mode) phase:\n\(H.tail(launcher.output))")
            }
        }
        try proxy.set("pass")
        // Memory stays bounded: no growth beyond a few MB over the outage (nothing is buffered per failed attempt).
        let first = samples.prefix(3).max() ?? 0, last = samples.suffix(3).max() ?? 0
        #expect(last < first + 16_384 && (samples.max() ?? 0) < 200_000, "RSS during the outage (KB): \(samples)")
        try H.finishWriter(writer, timeout: 120)
        let total = try H.eventCount(db)
        try Self.waitForReplicaEvents(sb, config: direct, db: db, count: total, env: env, timeout: 120)
        #expect(launcher.output.contains("caught up after"), "\(H.tail(launcher.output))")
        #expect(H.stop(launcher) == 0, "\(H.tail(launcher.output))")
        print("outage: RSS KB every 5 s \(samples); proxy \(proxy.stats())")
        try Self.expectRestoreEqualsSource(sb, config: direct, db: db, env: env, name: "outage",
                                           context: "launcher log:\n\(H.tail(launcher.output, 40))")
    }

    /// A store that hangs at shutdown (every connection stalled) cannot hold the launcher past its deadline: the
    /// uploads in flight are aborted, the final sync returns its failures (named per replica) and the launcher
    /// exits through its normal path with a failing status, within the deadline plus the abort grace.
    @Test func aHungStoreAtShutdownIsAbortedAtTheDeadline() throws {
        guard let s = Self.server() else { return }
        let sb = try H.Sandbox()
        defer { sb.cleanup() }
        let (env, proxy, db, cfg, _) = try Self.proxiedSetup(s, sb, name: "abort", maxSeconds: 120)
        let launcher = try Self.startReplicate(sb, ["-config", cfg, "-shutdown-timeout", "3s"], env: env, log: "launcher.log")
        #expect(launcher.waitForOutput("snapshot written", timeout: 30), "\(H.tail(launcher.output))")
        try proxy.set("stall")
        try H.runWriter(db, count: 200)
        let stopped = Date()
        launcher.signal(SIGTERM)
        let status = launcher.wait(timeout: 30)
        let took = Date().timeIntervalSince(stopped)
        #expect(status == 1, "\(H.tail(launcher.output))")
        #expect(took < 3 + 2 + 2, "the launcher took \(took) s to exit")
        #expect(launcher.output.contains("aborting the uploads in flight"), "\(H.tail(launcher.output))")
        #expect(launcher.output.contains("aborted: final sync deadline passed"), "\(H.tail(launcher.output))")
        #expect(launcher.output.contains("final sync of \(db) to replica"), "\(H.tail(launcher.output))")
        #expect(launcher.output.contains("exiting with status 1"), "\(H.tail(launcher.output))")
    }
}
