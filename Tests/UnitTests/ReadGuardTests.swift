import Foundation
import Testing
@testable import ReplicationKit

/// The read guard's invariant (see `ReadGuard`): while it is held, SQLite cannot restart the WAL past frames we
/// have not copied, the hand-over between its two connections has no gap, and the restart proof lives exactly as
/// long as the unbroken hold. Real SQLite files; the "application" is another connection, as in production.
@Suite struct ReadGuardTests {
    /// A WAL database with the tables the guard reads, an application connection, and helpers.
    final class Fixture {
        let dir: String
        let path: String
        let app: SQLiteConnection

        init() throws {
            dir = try WALFixture.tempDir("guard")
            path = dir + "/app.db"
            app = try SQLiteConnection(path: path, create: true, busyTimeout: 50)
            try app.setPersistentWAL()
            try app.exec("PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;")
            try app.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
            try app.exec(Database.createSeqTable)
            _ = try app.checkpoint(.truncate)
        }

        deinit {
            app.close()
            try? FileManager.default.removeItem(atPath: dir)
        }

        func insert(_ rows: Int = 1) throws {
            try app.exec("BEGIN;" + String(repeating: "INSERT INTO t(v) VALUES (randomblob(200));", count: rows) + "COMMIT;")
        }

        var walSize: UInt64 { (try? FileSystem.info(path + "-wal"))?.size ?? 0 }
        func walHeader() throws -> WALHeader { try WALHeader(bytes: Array(WALFixture.read(path + "-wal").prefix(walHeaderSize))) }
        func guardian() throws -> ReadGuard { try ReadGuard(path: path, busyTimeout: 50) }

        /// Hands `g` over while the application runs a TRUNCATE checkpoint in the middle (after the spare's begin,
        /// before the holder's end); a hand-over with a gap would let it empty the WAL.
        func handOverDuringTruncate(_ g: ReadGuard) throws {
            var midway: (CheckpointResult?, UInt64)?
            g.midHandOver = { [app, path] in
                midway = ((try? app.checkpoint(.truncate)), (try? FileSystem.info(path + "-wal"))?.size ?? 0)
            }
            try g.handOver()
            g.midHandOver = nil
            let (result, size) = try #require(midway)
            #expect(result.map { $0.busy || $0.checkpointedFrames < $0.logFrames } ?? true, "TRUNCATE completed mid-hand-over")
            #expect(size > UInt64(walHeaderSize), "the WAL was emptied mid-hand-over")
        }
    }

    @Test func aHeldGuardKeepsTheWALFromRestarting() throws {
        let f = try Fixture()
        try f.insert()
        let g = try f.guardian()
        defer { g.close() }
        try g.take()
        #expect(g.isHeld)
        let before = try f.walHeader()
        try f.insert(5)
        let r = try f.app.checkpoint(.truncate)
        #expect(r.busy || r.checkpointedFrames < r.logFrames, "a TRUNCATE checkpoint completed past the guard")
        try f.insert()
        #expect(try f.walHeader().salt1 == before.salt1, "the WAL restarted while the guard was held")
        #expect(f.walSize > UInt64(walHeaderSize))

        try g.release()
        #expect(!g.isHeld)
        let done = try f.app.checkpoint(.truncate)
        #expect(!done.busy)
        #expect(f.walSize == 0, "without the guard, TRUNCATE empties the WAL")
    }

    /// In the middle of a hand-over, with frames committed that the guard has not released, the application runs
    /// a TRUNCATE checkpoint: a hand-over with a gap (end, then begin) would let it empty the WAL and take those
    /// frames with it; ours keeps them.
    @Test func aHandOverLeavesNoGap() throws {
        let f = try Fixture()
        try f.insert(3)
        let g = try f.guardian()
        defer { g.close() }
        try g.take()
        let before = try f.walHeader()
        let first = g.holder
        try f.insert(2)  // after the guard's mark: not released yet

        try f.handOverDuringTruncate(g)
        #expect(try f.walHeader().salt1 == before.salt1, "the WAL restarted")
        #expect(g.isHeld)
        #expect(g.holder !== first, "the two connections swap roles")
        #expect(g.spare.map { !$0.inTransaction } == true, "after a hand-over the spare is open and idle")

        // Held on the newest snapshot, the guard still keeps the WAL from restarting.
        try f.insert()
        _ = try? f.app.checkpoint(.truncate)
        #expect(f.walSize > UInt64(walHeaderSize))
        #expect(try f.walHeader().salt1 == before.salt1)
    }

    /// An idle guard closes its spare (one connection left) and keeps the hold and the proof; the next hand-over
    /// reopens the spare and still leaves no gap for a TRUNCATE checkpoint.
    @Test func releaseIdleKeepsTheHoldAndTheNextHandOverHasNoGap() throws {
        let f = try Fixture()
        try f.insert(3)
        let g = try f.guardian()
        defer { g.close() }
        #expect(g.openConnections == 1, "the spare is opened only for a hand-over")
        try g.take()
        try g.handOver()
        #expect(g.openConnections == 2)
        let header = try f.walHeader()
        g.markCopied(header)

        g.releaseIdle()
        #expect(g.openConnections == 1)
        #expect(g.isHeld && g.provesRestart(of: header), "idling dropped the hold or the proof")
        try f.insert(2)
        let r = try f.app.checkpoint(.truncate)
        #expect(r.busy || r.checkpointedFrames < r.logFrames, "a TRUNCATE checkpoint completed past the idle guard")

        try f.handOverDuringTruncate(g)
        #expect(try f.walHeader().salt1 == header.salt1)
        #expect(g.isHeld && g.provesRestart(of: header) && g.openConnections == 2)
        g.close()
        #expect(g.openConnections == 0)
    }

    /// Taken on a fully checkpointed WAL the guard reads the database file (read mark 0): the WAL may restart, but
    /// no frame committed after the guard began can be copied into the database file.
    @Test func onReadMarkZeroNothingCanBeCheckpointed() throws {
        let f = try Fixture()
        try f.insert()
        _ = try f.app.checkpoint(.truncate)
        #expect(f.walSize == 0)
        let g = try f.guardian()
        defer { g.close() }
        try g.take()
        try f.insert(4)
        try f.insert(4)
        let r = try f.app.checkpoint(.passive)
        #expect(r.logFrames > 0)
        #expect(r.checkpointedFrames == 0, "a frame was checkpointed under a guard on read mark 0")
        try g.release()
        let after = try f.app.checkpoint(.passive)
        #expect(after.checkpointedFrames == after.logFrames)
    }

    @Test func theProofLivesExactlyAsLongAsTheHold() throws {
        let f = try Fixture()
        try f.insert()
        let h = try f.walHeader()
        var other = h
        other.salt1 &+= 1
        let g = try f.guardian()
        defer { g.close() }

        g.markCopied(h)
        #expect(!g.provesRestart(of: h), "no proof without a hold")
        try g.take()
        g.markCopied(h)
        #expect(g.provesRestart(of: h))
        #expect(!g.provesRestart(of: other))
        #expect(!g.provesRestart(of: nil))
        try g.handOver()
        #expect(g.provesRestart(of: h), "a hand-over keeps the hold unbroken")
        try g.takeOrHandOver()
        #expect(g.provesRestart(of: h))
        g.forgetProof()
        #expect(!g.provesRestart(of: h))
        g.markCopied(h)
        try g.release()
        #expect(!g.provesRestart(of: h), "a release breaks the hold")
        try g.take()
        #expect(!g.provesRestart(of: h), "a new hold starts without proof")
        g.markCopied(h)
        g.close()
        #expect(!g.provesRestart(of: h))
    }
}
