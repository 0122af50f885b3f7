import Foundation
import Testing
import TestFixtures
@testable import ReplicationKit

/// An idle database keeps one SQLite connection (the read guard's holder): the writer and the guard's spare are
/// opened when a sync, checkpoint or snapshot needs them and closed once the database idles (issue 15). Real
/// SQLite files; the "application" is another connection.
@Suite struct IdleConnectionsTests {
    /// Polls `condition` every 2 ms until it holds or `seconds` pass.
    static func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { return false }
            usleep(2000)
        }
        return true
    }

    /// Idle: one connection, the guard still held (an application TRUNCATE cannot empty the WAL). Then writes,
    /// syncs and checkpoints reopen what they need, and a restore equals the source.
    @Test func anIdleDatabaseKeepsOnlyTheGuardAndWakesUpForWrites() throws {
        let env = try DBTestEnv(retention: 8, idleConnectionDelay: .milliseconds(300))
        try env.insert(5)
        let db = try env.open()
        try env.takeSnapshot()
        try env.insert(3)
        try db.sync()  // a hand-over: the spare is open, and the writer from the open
        #expect(db.openConnections == 3)

        #expect(Self.eventually { db.openConnections == 1 }, "still \(db.openConnections) connections after idling")
        #expect(db.onQueue { db.readGuard?.isHeld == true }, "idling released the read guard")
        #expect(db.onQueue { db.writeConnection == nil })

        // Frames committed while idle are pinned: the application's TRUNCATE cannot empty the WAL under the guard.
        let g = env.pos.generation
        try env.insert(4)
        let r = try env.app!.checkpoint(.truncate)
        #expect(r.busy || r.checkpointedFrames < r.logFrames, "a TRUNCATE checkpoint completed past the idle guard")
        #expect(env.walSize > UInt64(walHeaderSize))

        try db.sync()
        #expect(env.pos.generation == g, "a new generation after idling")
        #expect(env.pos.offset == UInt64(env.committedEnd), "everything was copied")
        let index = env.pos.index
        try db.checkpoint(.truncate)  // reopens the writer
        #expect(db.openConnections >= 2)
        #expect(env.pos.generation == g && env.pos.index == index + 1, "\(env.logs.lines.suffix(8))")
        try env.insert(2)
        try db.sync()
        #expect(try env.restoredRows() == env.appRows())

        // And idles again.
        #expect(Self.eventually { db.openConnections == 1 })
        try env.insert(1)
        try db.sync()
        #expect(env.pos.generation == g)
        #expect(try env.restoredRows() == env.appRows())
    }

    /// A snapshot in progress keeps the connections; they close after it ends.
    @Test func aSnapshotInProgressKeepsTheConnections() throws {
        let env = try DBTestEnv(idleConnectionDelay: .milliseconds(50))
        try env.insert(2)
        let db = try env.open()
        let lease = try db.beginSnapshot()
        usleep(200_000)  // several idle delays: nothing may close while the snapshot runs
        #expect(db.onQueue { db.writeConnection != nil })
        db.endSnapshot(lease)
        #expect(Self.eventually { db.openConnections == 1 })
    }

    /// `idleConnectionDelay` 0 keeps every connection open.
    @Test func aZeroDelayKeepsTheConnections() throws {
        let env = try DBTestEnv(idleConnectionDelay: .zero)
        try env.insert(2)
        let db = try env.open()
        try env.insert(1)
        try db.sync()
        usleep(100_000)
        #expect(db.openConnections == 3)
    }

    /// The flag behind "none of our connections checkpoints on close": the last connection to a database closes
    /// without copying the WAL into the database file; with SQLite's default it does.
    @Test(arguments: [false, true])
    func checkpointOnCloseFollowsTheFlag(_ on: Bool) throws {
        let dir = try WALFixture.tempDir("ckptclose")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/a.db"
        let setup = try SQLiteConnection(path: path, create: true)
        try setup.exec("PRAGMA journal_mode=wal; CREATE TABLE t(v BLOB);")
        _ = try setup.checkpoint(.truncate)
        setup.close()
        let before = try #require(try FileSystem.info(path)).size

        let c = try Database.openOwnConnection(path: path, busyTimeout: 100)
        if on { try c.setCheckpointOnClose(true) }
        try c.exec("INSERT INTO t VALUES (randomblob(20000));")
        let wal = try #require(try FileSystem.info(path + "-wal")).size
        c.close()
        let after = try #require(try FileSystem.info(path)).size
        #expect(try FileSystem.info(path + "-wal")?.size == wal, "the persistent WAL was kept")
        if on {
            #expect(after > before, "SQLite's default: the last close checkpoints")
        } else {
            #expect(after == before, "closing our connection checkpointed the WAL into the database file")
        }
    }
}
