import Foundation
import ReplicationKit
import Testing

/// Restores of snapshots larger than one download range (issue 15): the snapshot comes down as parallel ranged
/// GETs, a range whose connection drops is fetched again, and a slow restore logs its progress (issue 16).
extension ReplicationIntegrationTests.S3LauncherTests {
    /// A database of about 20 MB of text rows, uploaded as the snapshot of one generation (straight to the
    /// server); returns the database, a config whose replica goes through `proxy`, and the snapshot's size.
    static func rangedSetup(_ s: Server, _ sb: H.Sandbox, proxy: FaultProxy) throws -> (db: String, cfg: String, size: Int) {
        let db = sb.path("big.db")
        _ = try sqlite(db, """
            PRAGMA journal_mode=WAL;
            CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT);
            WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 60000)
            INSERT INTO big SELECT i, 'row ' || i || ' ' || hex(randomblob(150)) FROM c;
            PRAGMA wal_checkpoint(TRUNCATE);
            """)
        let prefix = Self.prefix("ranged")
        let client = S3ReplicaClient(location: S3Location(bucket: s.bucket, prefix: prefix, region: s.region, endpoint: s.endpoint),
                                     credentials: AWSCredentials(accessKeyID: s.accessKeyID, secretAccessKey: s.secretAccessKey))
        let compressed = try LZ4.compress(Array(try Data(contentsOf: URL(fileURLWithPath: db))))
        _ = try client.writeSnapshot(generation: Generation(value: 0xabc), index: 0) { sink in
            try compressed.withUnsafeBytes { try sink($0) }
        }
        let cfg = sb.path("ranged.yml")
        try writeConfig(cfg, db: db, server: s, prefix: prefix, endpoint: proxy.endpoint)
        return (db, cfg, compressed.count)
    }

    static func bigTableSummary(_ db: String) throws -> String {
        try sqlite(db, "SELECT count(*), sum(length(v)), sum(unicode(substr(v, -1)) * id) FROM big;")
    }

    /// Runs `body` with the server, a sandbox, a proxy in front of the server and `rangedSetup`'s replica.
    static func withRangedReplica(_ body: (Server, H.Sandbox, FaultProxy, _ db: String, _ cfg: String, _ size: Int) throws -> Void) throws {
        guard let s = Self.server() else { return }
        let sb = try H.Sandbox()
        defer { sb.cleanup() }
        let proxy = try FaultProxy(sb, upstream: s.endpoint, maxSeconds: 240)
        let (db, cfg, size) = try Self.rangedSetup(s, sb, proxy: proxy)
        try body(s, sb, proxy, db, cfg, size)
    }

    @Test func aSnapshotLargerThanARangeSurvivesADroppedConnection() throws {
        try Self.withRangedReplica { s, sb, proxy, db, cfg, size in
            let ranges = (size + (4 << 20) - 1) / (4 << 20)
            #expect(ranges >= 2, "snapshot of \(size) bytes")

            // The first response to pass 3 MB (a range of the snapshot) loses its connection in the middle.
            try proxy.set("cut-once-3000000")
            let out = sb.path("restored.db")
            var env = Self.launcherEnvironment(s)
            env["LAUNCHER_RESTORE_PROGRESS_INTERVAL"] = nil
            let log = try Self.restore(["-o", out, "-config", cfg, db], env: env)
            #expect(proxy.counter("cut") == 1, "\(H.tail(proxy.log))")
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok", "\(log)")
            #expect(try Self.bigTableSummary(out) == Self.bigTableSummary(db))
            // One GET per range, plus the range fetched again.
            let gets = proxy.requestLines.filter { $0.contains(" GET ") && $0.contains(".snapshot.lz4") }
            #expect(gets.count == ranges + 1, "\(gets)\n\(log)")
        }
    }

    @Test func aSlowRestoreLogsItsProgress() throws {
        try Self.withRangedReplica { s, sb, proxy, db, cfg, _ in
            // Every request waits 700 ms at the store; progress every 200 ms (the default is 5 s), output not a terminal.
            try proxy.set("delay-700")
            var env = Self.launcherEnvironment(s)
            env["LAUNCHER_RESTORE_PROGRESS_INTERVAL"] = "200ms"
            let out = sb.path("restored.db")
            let log = try Self.restore(["-o", out, "-config", cfg, db], env: env)
            let lines = log.split(separator: "\n").filter { $0.contains("restore progress: restoring restored.db: ") }
            #expect(!lines.isEmpty, "\(log)")
            #expect(lines.allSatisfy { $0.contains(" MB written, ") && $0.contains(" MB downloaded (") && $0.hasSuffix(" MB/s") },
                    "\(lines)")
            #expect(!log.contains("\r"), "a log, not a terminal line")
            #expect(try Self.bigTableSummary(out) == Self.bigTableSummary(db))
        }
    }

    @Test func onATerminalProgressIsOneUpdatingLine() throws {
        try Self.withRangedReplica { s, sb, proxy, db, cfg, _ in
            try proxy.set("delay-700")
            var env = Self.launcherEnvironment(s)
            env["LAUNCHER_RESTORE_PROGRESS_INTERVAL"] = nil
            let out = sb.path("restored.db")
            // script(1) runs the restore with a pseudo-terminal as its standard error.
            let command = [TestSupport.launcher, "restore", "-o", out, "-config", cfg, db]
                .map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            let r = try runCommand("/usr/bin/script", ["-qfec", command, "/dev/null"], timeout: 120, environment: env)
            #expect(r.status == 0, "\(r.output)")
            // Rewritten in place (carriage return, erase to the end of the line), then ended once; no progress log lines.
            #expect(r.output.contains("\rrestoring restored.db: ") && r.output.contains(" MB/s\u{1B}[K"), "\(r.output)")
            #expect(!r.output.contains("restore progress:"), "\(r.output)")
            #expect(try Self.bigTableSummary(out) == Self.bigTableSummary(db))
        }
    }
}
