import Foundation
import Logging
import Testing
@testable import ReplicationKit

/// Snapshots, retention and snapshot-interval of a replica (REPLICATION §7.3–§7.5), in process with real SQLite.
@Suite("Replica snapshots and retention", .serialized)
struct ReplicaRetentionTests {
    final class Env {
        let dir: String
        let dbPath: String
        let app: SQLiteConnection
        let db: Database
        let client: FileReplicaClient
        let replica: Replica

        init(options: ReplicaOptions = ReplicaOptions()) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("retention-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            dbPath = dir + "/app.db"
            app = try SQLiteConnection(path: dbPath, create: true)
            _ = try app.queryText("PRAGMA journal_mode=wal;")
            try app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);")
            var o = DatabaseOptions()
            o.monitorDelayInterval = .zero
            db = Database(path: dbPath, options: o, logger: Logger(label: "test"))
            try db.start()
            client = FileReplicaClient(root: dir + "/replica")
            replica = Replica(name: "file", client: client, db: db, options: options, logger: Logger(label: "test"))
            replica.start()
        }

        func insert(_ n: Int) throws {
            for i in 0..<n { try app.exec("INSERT INTO t (v) VALUES ('row \(i)');") }
            try db.sync()
        }

        /// Makes the WAL restart so the next data lands in a new index.
        func nextIndex() throws {
            try db.checkpoint(.passive)
            try insert(1)
        }

        func age(_ s: SnapshotInfo, by seconds: TimeInterval) throws {
            try FileSystem.setModified(client.root + "/" + client.objectName(snapshot: s),
                                       to: Date().addingTimeInterval(-seconds))
        }

        func cleanup() {
            try? replica.stop(finalSync: false)
            try? db.close()
            app.close()
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func retentionDeletesOldSnapshotsAndTheWALBelowTheOldestKeptOne() throws {
        var o = ReplicaOptions()
        o.retention = .seconds(3600)
        let env = try Env(options: o)
        defer { env.cleanup() }
        try env.insert(5)
        try env.replica.sync()
        let g = try #require(env.db.position?.generation)
        try env.nextIndex()
        try env.replica.takeSnapshot()
        let snaps = try env.client.snapshots(generation: g)
        #expect(snaps.map(\.index) == [0, 1])
        try env.age(snaps[0], by: 7200)

        try env.replica.runRetention()
        #expect(try env.client.snapshots(generation: g).map(\.index) == [1])
        #expect(try env.client.walSegments(generation: g).allSatisfy { $0.index >= 1 })
        #expect(try !env.client.walSegments(generation: g).isEmpty)
    }

    @Test func retentionAlwaysKeepsOneSnapshot() throws {
        var o = ReplicaOptions()
        o.retention = .seconds(60)
        let env = try Env(options: o)
        defer { env.cleanup() }
        try env.insert(3)
        try env.replica.sync()
        let g = try #require(env.db.position?.generation)
        let first = try env.client.snapshots(generation: g)
        #expect(first.count == 1)
        try env.age(first[0], by: 3600)

        try env.replica.runRetention()
        let after = try env.client.snapshots(generation: g)
        #expect(after.count == 1, "an expired last snapshot is replaced, never just deleted")
        #expect(after[0].createdAt > Date().addingTimeInterval(-60))
    }

    @Test func retentionDeletesGenerationsWithoutARetainedSnapshot() throws {
        var o = ReplicaOptions()
        o.retention = .seconds(3600)
        let env = try Env(options: o)
        defer { env.cleanup() }
        try env.insert(2)
        try env.replica.sync()
        // A stale generation from an earlier run, with an old snapshot and some WAL.
        let old = Generation(value: 0x1234)
        let s = try env.client.writeSnapshot(generation: old, index: 0) { sink in
            try LZ4.compress([1, 2, 3]).withUnsafeBytes { try sink($0) }
        }
        _ = try env.client.writeWALSegment(position: WALPosition(generation: old, index: 0, offset: 0)) { sink in
            try LZ4.compress([4]).withUnsafeBytes { try sink($0) }
        }
        try env.age(s, by: 7200)
        #expect(try env.client.generations().contains(old))

        try env.replica.runRetention()
        #expect(try !env.client.generations().contains(old))
        #expect(try env.client.generations() == [try #require(env.db.position?.generation)])
    }

    @Test func snapshotIntervalTakesPeriodicSnapshots() throws {
        var o = ReplicaOptions()
        o.snapshotInterval = .milliseconds(300)
        let env = try Env(options: o)
        defer { env.cleanup() }
        try env.insert(2)
        let g = try #require(env.db.position?.generation)
        let deadline = Date().addingTimeInterval(20)
        var count = 0
        // Each snapshot is labelled with the current index, so move the index between them.
        while Date() < deadline && count < 3 {
            try env.nextIndex()
            usleep(100_000)
            count = try env.client.snapshots(generation: g).count
        }
        #expect(count >= 3)
    }

    /// The system clock jumping during replication (issue 11): back an hour, retention deletes nothing it needs;
    /// forward two days, it writes a new snapshot before deleting what is outside the window. Either way the replica
    /// restores to the source.
    @Test func clockJumpsNeverCostTheLatestData() throws {
        let offset = Locked<TimeInterval>(0)
        var o = ReplicaOptions()
        o.retention = .seconds(1800)
        o.now = { Date().addingTimeInterval(offset.current) }
        let env = try Env(options: o)
        defer { env.cleanup() }
        func restoresToSource(_ tag: String) throws {
            try env.replica.sync()
            let out = env.dir + "/restored-\(tag).db"
            try Restorer.restore(client: env.client, options: RestoreOptions(outputPath: out), logger: Logger(label: "test"))
            let restored = try SQLiteConnection(path: out, readOnly: true)
            defer { restored.close() }
            #expect(try restored.queryRows("SELECT id, v FROM t ORDER BY id") == env.app.queryRows("SELECT id, v FROM t ORDER BY id"), "\(tag)")
        }
        try env.insert(50)
        try env.replica.sync()
        try env.nextIndex()
        try env.insert(20)
        let g = try #require(env.db.position?.generation)
        let before = try env.client.snapshots(generation: g)
        // Back an hour: every snapshot looks "from the future"; nothing is deleted.
        offset.withLock { $0 = -3600 }
        try env.replica.runRetention()
        #expect(try env.client.snapshots(generation: g) == before)
        try restoresToSource("back")
        // Forward two days: everything looks expired; a new snapshot comes first, so the latest data stays.
        offset.withLock { $0 = 2 * 86400 }
        try env.insert(10)
        try env.replica.runRetention()
        let after = try env.client.snapshots(generation: g)
        #expect(!after.isEmpty && after.map(\.index).max()! >= before.map(\.index).max()!)
        try restoresToSource("forward")
    }
}
