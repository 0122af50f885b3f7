import CSQLite
import Foundation
import Logging
import Testing
@testable import ReplicationKit

/// Database behaviour across stops and restarts (REPLICATION §6.1, §6.2, §10.2); fixtures in DatabaseSyncTests.swift.
@Suite("Database sync across restarts (in-process, real SQLite)")
struct DatabaseSyncRestartTests {
    @Test func restartWithoutCheckpointContinuesGeneration() throws {
        let env = try DBTestEnv()
        try env.insert(3)
        let db = try env.open()
        try env.takeSnapshot()
        let p0 = env.pos
        try db.close()
        #expect(db.position == nil)
        try env.insert(4)  // while we are not running; the application's WAL keeps growing
        // Crash leftovers are deleted at open.
        let leftover = env.meta.segmentPath(p0.generation, 0, 0x7777) + ".tmp"
        try WALFixture.write(leftover, [1])
        try WALFixture.write(env.meta.generationFile + ".tmp", [1])
        _ = try env.open()
        #expect(!FileManager.default.fileExists(atPath: leftover))
        #expect(!FileManager.default.fileExists(atPath: env.meta.generationFile + ".tmp"))
        #expect(env.pos.generation == p0.generation && env.pos.index == p0.index)
        #expect(env.pos.offset == env.walSize && env.pos.offset > p0.offset)
        #expect(!env.logs.contains("clearing generation"))
        #expect(env.newGenerationLogs == 1)
        #expect(try env.restoredRows() == env.appRows())
    }

    /// Our read guard sits on SQLite's read slot 0 when the WAL was fully checkpointed before we started, so the
    /// application may restart (or truncate) the WAL; every frame of the old lifetime is copied by then.
    @Test(arguments: [false, true])
    func passiveCheckpointWhileStoppedThenRestartContinues(appTruncates: Bool) throws {
        let env = try DBTestEnv()
        try env.insert(3)
        let db = try env.open()
        try env.takeSnapshot()
        let p0 = env.pos
        try db.close()
        // While we are stopped the application checkpoints every frame but does not restart the WAL yet.
        let r = try env.app!.checkpoint(.passive)
        #expect(!r.busy && r.logFrames == r.checkpointedFrames)
        let db2 = try env.open()
        #expect(env.pos == p0)
        if appTruncates {
            let t = try env.app!.checkpoint(.truncate)
            #expect(!t.busy)
            #expect(env.walSize == 0)
            try db2.sync()  // finds an empty WAL
            #expect(env.pos.generation == p0.generation)
        }
        // The application's next writes restart the WAL and run past our old offset.
        try env.insert(8, oneTransaction: false)
        try db2.sync()
        #expect(env.pos.generation == p0.generation && env.pos.index > p0.index)
        #expect(env.pos.offset == env.committedEnd)
        #expect(env.newGenerationLogs == 1)
        #expect(try env.restoredRows() == env.appRows())
    }

    @Test func externalCheckpointWhileStoppedStartsNewGeneration() throws {
        let env = try DBTestEnv()
        try env.insert(3)
        let db = try env.open()
        let g0 = env.pos.generation
        // No application connection stays open in this process: closing our database's descriptor would drop
        // its POSIX locks, and the other process would then see a stale -shm.
        env.closeApp()
        try db.close()
        // While we are stopped, another process checkpoints (TRUNCATE), then writes 100 rows, one per transaction,
        // so the restarted WAL passes our old offset.
        try env.sqlite3("PRAGMA wal_checkpoint(TRUNCATE);"
                        + String(repeating: "INSERT INTO t(v) VALUES (randomblob(50));", count: 100), persistWAL: true)
        #expect(env.walSize > 100 * 4120)
        let db2 = try env.open()
        let p = env.pos
        #expect(p.generation != g0 && p.index == 0 && p.offset == env.walSize)
        #expect(env.logs.contains("init: cannot determine last wal position, clearing generation"))
        #expect(env.logs.contains("new generation \"\(p.generation.name)\", no generation exists"))
        #expect(!FileManager.default.fileExists(atPath: env.meta.generationDir(g0)))  // cleaned away
        env.app = try env.openApp()
        try env.takeSnapshot()
        try env.insert(2)
        try db2.sync()
        #expect(try env.appRows().count == 105)
        #expect(try env.restoredRows() == env.appRows())
    }

    @Test func deletedWALWhileStoppedStartsNewGeneration() throws {
        let env = try DBTestEnv()
        try env.insert(3)
        let db = try env.open()
        let g0 = env.pos.generation
        try db.close()
        _ = try env.app!.checkpoint(.truncate)
        env.closeApp()
        try? FileManager.default.removeItem(atPath: env.path + "-wal")
        try? FileManager.default.removeItem(atPath: env.path + "-shm")
        let db2 = try env.open()
        #expect(env.pos.generation != g0 && env.pos.index == 0 && env.pos.offset == env.walSize)
        #expect(env.logs.contains("clearing generation"))
        env.app = try env.openApp()
        try env.takeSnapshot()
        try env.insert(5)
        try db2.sync()
        #expect(try env.restoredRows() == env.appRows())
    }

    @Test func damagedShadowAtStartupStartsNewGeneration() throws {
        let env = try DBTestEnv()
        try env.insert(3)
        var db = try env.open()
        try env.insert(1)
        try db.sync()
        let g0 = env.pos.generation
        try db.close()
        // A corrupt last segment must not wedge startup.
        let segs = try ShadowWAL(meta: env.meta).segments(g0, index: 0)
        try WALFixture.write(try #require(segs.last).path, [0xde, 0xad, 0xbe, 0xef])
        db = try env.open()
        let g1 = env.pos.generation
        #expect(g1 != g0 && env.logs.contains("clearing generation"))
        // A generation whose shadow directory vanished.
        try db.close()
        try FileManager.default.removeItem(atPath: env.meta.generationDir(g1))
        db = try env.open()
        #expect(env.pos.generation != g1 && env.logs.contains("no wal files available"))
        try env.takeSnapshot()
        try env.insert(2)
        try db.sync()
        #expect(try env.restoredRows() == env.appRows())
    }

    @Test func openingEdgeCases() throws {
        let dir = try WALFixture.tempDir("db")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logger = Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }
        // A missing database is not an error and creates nothing.
        let missing = Database(path: dir + "/none.db", logger: logger)
        try missing.start()
        try missing.sync()
        #expect(missing.position == nil && !missing.isOpen)
        #expect(!FileManager.default.fileExists(atPath: dir + "/none.db-litestream"))
        try missing.close()
        // A rollback-journal database without a -wal is switched to WAL mode and gets index 0 at once.
        let path = dir + "/plain.db"
        let c = try SQLiteConnection(path: path, create: true)
        try c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        c.close()
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        let db = Database(path: path, logger: logger)
        defer { try? db.close() }
        try db.start()
        let p = try #require(db.position)
        #expect(p.index == 0 && p.offset > 32)
        #expect(p.offset == (try FileSystem.info(path + "-wal"))?.size)
        try db.close()
        try db.sync()  // after close: a no-op
        #expect(db.position == nil)
    }
}
