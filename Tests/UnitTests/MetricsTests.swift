import Foundation
import Logging
import Testing
import TestFixtures
@testable import ReplicationKit

/// Prometheus metrics (INTERFACES §4) from a real database, file replica and (when configured) S3 server.
///
/// The metrics system is process-wide and shared with every other suite, so each test uses unique database paths
/// and replica types and only looks at its own series.
@Suite("Metrics", .serialized)
struct MetricsTests {
    /// The parser lives in TestFixtures (the S3 part of this suite, in IntegrationTests, uses it too).
    typealias Exposition = MetricsExposition

    static func scrape() -> Exposition {
        let bytes = ReplicationMetrics.exposition()
        if let out = ProcessInfo.processInfo.environment["RK_METRICS_EXPOSITION_OUT"] {
            _ = FileManager.default.createFile(atPath: out, contents: Data(bytes))
        }
        return Exposition(bytes)
    }

    static let dbSeries = ["litestream_db_size", "litestream_wal_size", "litestream_total_wal_bytes",
                           "litestream_shadow_wal_index", "litestream_shadow_wal_size", "litestream_sync_count",
                           "litestream_sync_error_count", "litestream_sync_seconds"]

    @Test func bootstrapIsIdempotent() {
        let a = ReplicationMetrics.bootstrap()
        let b = ReplicationMetrics.bootstrap()
        #expect(a === b)
        #expect(ReplicationMetrics.isBootstrapped)
    }

    @Test func databaseAndFileReplicaSeries() throws {
        ReplicationMetrics.bootstrap()
        let dir = try WALFixture.tempDir("metrics")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/app.db"
        let app = try SQLiteConnection(path: path, create: true)
        defer { app.close() }
        _ = try app.queryText("PRAGMA journal_mode=wal;")
        try app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);")
        var o = DatabaseOptions()
        o.monitorDelayInterval = .zero
        let db = Database(path: path, options: o, logger: Logger(label: "metrics-test"))
        defer { try? db.close() }
        DatabaseMetrics.register(path: path)  // what Database.init does

        // The eight db series exist at 0 before anything was synced; checkpoint series do not exist yet.
        var e = Self.scrape()
        for name in Self.dbSeries { #expect(e.value(name, db: path) == 0, "\(name)") }
        #expect(e.value("litestream_checkpoint_count", db: path, "mode=\"PASSIVE\"") == nil)

        try db.start()
        for i in 0..<20 { try app.exec("INSERT INTO t (v) VALUES ('row \(i) \(String(repeating: "x", count: 500))');") }
        try db.sync()
        try db.checkpoint(.passive)
        try app.exec("INSERT INTO t (v) VALUES ('after checkpoint');")
        try db.sync()

        let client = FileReplicaClient(root: dir + "/replica")
        let replica = Replica(name: "metrics-file", client: client, db: db, options: ReplicaOptions(),
                              logger: Logger(label: "metrics-test"))
        #expect(replica.type == "file")
        #expect(replica.lastSyncedAt.current == nil)
        try replica.sync()
        try app.exec("INSERT INTO t (v) VALUES ('for the replica');")
        try db.sync()
        try replica.sync()

        e = Self.scrape()
        #expect(e.malformed.isEmpty, "\(e.malformed)")
        let pos = try #require(db.position)
        #expect(try #require(e.value("litestream_sync_count", db: path)) >= 3)
        #expect(e.value("litestream_sync_error_count", db: path) == 0)
        #expect(try #require(e.value("litestream_sync_seconds", db: path)) > 0)
        #expect(try #require(e.value("litestream_total_wal_bytes", db: path)) > 0)
        #expect(e.value("litestream_db_size", db: path) == Double(try #require(try FileSystem.info(path)).size))
        #expect(e.value("litestream_wal_size", db: path) == Double(try FileSystem.info(path + "-wal")?.size ?? 0))
        #expect(e.value("litestream_shadow_wal_index", db: path) == Double(pos.index))
        #expect(e.value("litestream_shadow_wal_size", db: path) == Double(pos.offset))
        #expect(try #require(e.value("litestream_checkpoint_count", db: path, "mode=\"PASSIVE\"")) >= 1)
        #expect(e.value("litestream_checkpoint_error_count", db: path, "mode=\"PASSIVE\"") == 0)
        #expect(e.value("litestream_checkpoint_seconds", db: path, "mode=\"PASSIVE\"") != nil)

        let synced = try #require(replica.syncedPosition.current)
        #expect(synced == pos)
        #expect(replica.lastSyncedAt.current != nil)
        #expect(replica.lastError.current == nil)
        let r = "name=\"metrics-file\""
        #expect(e.value("litestream_replica_wal_index", db: path, r) == Double(synced.index))
        #expect(e.value("litestream_replica_wal_offset", db: path, r) == Double(synced.offset))
        #expect(try #require(e.value("litestream_replica_wal_bytes", db: path, r)) > 0)
        #expect(e.value("litestream_replica_snapshot_total", db: path, r) == 1)
        #expect(!e.samples.keys.contains { $0.contains("replica_type=\"file\"") })

        for name in Self.dbSeries + ["litestream_checkpoint_count", "litestream_replica_wal_index"] {
            #expect(e.helps[name] != nil, "HELP \(name)")
        }
        #expect(e.types["litestream_sync_count"] == "counter")
        #expect(e.types["litestream_sync_seconds"] == "counter")
        #expect(e.types["litestream_db_size"] == "gauge")
        #expect(e.types["litestream_replica_snapshot_total"] == "gauge")
        #expect(e.types["litestream_replica_wal_bytes"] == "counter")

        try replica.takeSnapshot()
        #expect(Self.scrape().value("litestream_replica_snapshot_total", db: path, r) == 2)
    }

    @Test func processFamily() throws {
        let e = Self.scrape()
        #expect(e.malformed.isEmpty, "\(e.malformed)")
        #expect(try #require(e.samples["process_resident_memory_bytes"]) > 0)
        #expect(try #require(e.samples["process_virtual_memory_bytes"]) > 0)
        #expect(try #require(e.samples["process_open_fds"]) >= 3)
        #expect(try #require(e.samples["process_max_fds"]) >= e.samples["process_open_fds"]!)
        #expect(try #require(e.samples["process_cpu_seconds_total"]) >= 0)
        #expect(e.samples["process_virtual_memory_max_bytes"] != nil)
        let start = try #require(e.samples["process_start_time_seconds"])
        #expect(abs(start - Date().timeIntervalSince1970) < 24 * 3600)
        #expect(e.types["process_cpu_seconds_total"] == "counter")
        #expect(e.types["process_resident_memory_bytes"] == "gauge")
        #expect(e.helps["process_start_time_seconds"] != nil)
    }

    @Test func procStatParsing() throws {
        // A command name with spaces and parentheses must not shift the fields.
        let line = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 4 0 123456 104857600 2560 "
            + "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0"
        let f = try #require(ProcessMetrics.parseStat(line))
        #expect(f == ProcessMetrics.StatFields(utime: 250, stime: 50, starttime: 123456, vsize: 104857600, rss: 2560))
        #expect(ProcessMetrics.parseBootTime("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n") == 1_700_000_000)
        #expect(ProcessMetrics.format(Double(UInt64.max)) == "1.8446744073709552e+19")
        #expect(ProcessMetrics.format(42) == "42")
        #expect(ProcessMetrics.format(0.25) == "0.25")
    }

    @Test func helpLinesAreAddedOnlyForKnownFamilies() {
        let raw = "# TYPE litestream_sync_count counter\nlitestream_sync_count{db=\"/a\"} 1\n# TYPE other gauge\nother 2\n"
        let out = String(decoding: ReplicationMetrics.addHelpLines(Array(raw.utf8)), as: UTF8.self)
        #expect(out == "# HELP litestream_sync_count Number of sync operations performed\n" + raw)
    }

    @Test func operationCounters() {
        ReplicationMetrics.bootstrap()
        let type = "metricstest"
        let ops = ReplicaOperationMetrics.for(type: type)
        ops.record(.get, bytes: 10)
        ops.record(.get, bytes: 5)
        ops.record(.list)
        let e = Self.scrape()
        #expect(e.samples["litestream_replica_operation_total{operation=\"GET\",replica_type=\"\(type)\"}"] == 2)
        #expect(e.samples["litestream_replica_operation_bytes{operation=\"GET\",replica_type=\"\(type)\"}"] == 15)
        #expect(e.samples["litestream_replica_operation_total{operation=\"LIST\",replica_type=\"\(type)\"}"] == 1)
        #expect(e.samples["litestream_replica_operation_bytes{operation=\"LIST\",replica_type=\"\(type)\"}"] == nil)
        #expect(e.samples["litestream_replica_operation_total{operation=\"PUT\",replica_type=\"\(type)\"}"] == nil)
    }
}
