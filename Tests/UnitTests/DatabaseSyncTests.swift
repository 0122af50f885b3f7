import CSQLite
import Foundation
import Logging
import Testing
import TestFixtures
@testable import ReplicationKit

// MARK: - Fixtures

/// A WAL-mode application database, its tracker, and helpers (shared with DatabaseSyncRestartTests). Never opens the main database file directly:
/// closing any descriptor of it would drop SQLite's POSIX locks held in this process.
final class DBTestEnv {
    let dir: String
    let path: String
    let logs = DBTestLogLines()
    let options: DatabaseOptions
    var app: SQLiteConnection?
    var db: Database?
    var snapshot: (bytes: [UInt8], position: WALPosition)?

    init(minPages: Int = 1000, maxPages: Int = 10000, interval: Duration = .zero, autocheckpoint: Int = 0,
         retention: Int = 32, idleConnectionDelay: Duration? = nil) throws {
        dir = try WALFixture.tempDir("db")
        path = dir + "/app.db"
        var o = DatabaseOptions()
        (o.minCheckpointPageCount, o.maxCheckpointPageCount, o.checkpointInterval) = (minPages, maxPages, interval)
        (o.monitorDelayInterval, o.shadowRetentionCount) = (.zero, retention)
        if let d = idleConnectionDelay { o.idleConnectionDelay = d }
        options = o
        app = try openApp(autocheckpoint: autocheckpoint)
        // Checkpointed, so the database file is not empty (SQLite ignores a WAL next to an empty file on restore).
        try app!.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
        _ = try app!.checkpoint(.truncate)
    }

    func openApp(autocheckpoint: Int = 0, persist: Bool = true) throws -> SQLiteConnection {
        let c = try SQLiteConnection(path: path, create: true, busyTimeout: 100)
        if persist { try c.setPersistentWAL() }
        try c.exec("PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=\(autocheckpoint);")
        return c
    }

    func open() throws -> Database {
        let d = Database(path: path, options: options, logger: Logger(label: "db-test") { [logs] _ in DBTestLogHandler(sink: logs) })
        try d.start()
        db = d
        return d
    }

    deinit {
        try? db?.close()
        app?.close()
        try? FileManager.default.removeItem(atPath: dir)
    }

    var meta: MetaDirectory { MetaDirectory(databasePath: path) }
    var walSize: UInt64 { (try? FileSystem.info(path + "-wal"))?.size ?? 0 }
    var pos: WALPosition { db!.position! }
    var newGenerationLogs: Int { logs.lines.filter { $0.contains("new generation") }.count }
    func closeApp() { app?.close(); app = nil }
    /// End of the last valid commit in the real WAL (old frames of an earlier lifetime may follow it).
    var committedEnd: UInt64 { (try? WALFixture.scan(WALFixture.read(path + "-wal")).committedEnd) ?? 0 }

    func insert(_ rows: Int, size: Int = 50, oneTransaction: Bool = true) throws {
        let sql = "INSERT INTO t(v) VALUES (randomblob(\(size)));"
        if oneTransaction {
            try app!.exec("BEGIN;" + String(repeating: sql, count: rows) + "COMMIT;")
        } else {
            for _ in 0..<rows { try app!.exec(sql) }
        }
    }

    /// Runs a script in a separate `sqlite3` process (another process's locks, as in production).
    /// `persistWAL` keeps that process from deleting the WAL when it closes the last connection.
    func sqlite3(_ script: String, persistWAL: Bool = false) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        p.arguments = [path]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = output
        try p.run()
        input.fileHandleForWriting.write(Data(((persistWAL ? ".filectrl persist_wal 1\n" : "") + script + "\n").utf8))
        try input.fileHandleForWriting.close()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "sqlite3: \(String(decoding: out, as: UTF8.self))")
    }

    /// Takes a snapshot through the product's lease (the way a replica does).
    func takeSnapshot() throws {
        let lease = try db!.beginSnapshot()
        defer { db!.endSnapshot(lease) }
        var bytes = [UInt8](repeating: 0, count: Int(lease.size))
        var done = 0
        while done < bytes.count {
            let n = try bytes.withUnsafeMutableBytes { try lease.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[done...]), at: UInt64(done)) }
            if n == 0 { break }
            done += n
        }
        #expect(done == bytes.count)
        snapshot = (bytes, lease.position)
    }

    /// The decompressed shadow WAL of one index, checking that segments are contiguous from offset 0.
    func shadowIndex(_ g: Generation, _ index: UInt32) throws -> [UInt8] {
        let shadow = ShadowWAL(meta: meta)
        var out: [UInt8] = []
        for seg in try shadow.segments(g, index: index) {
            #expect(seg.offset == UInt64(out.count), "segment \(seg.path) starts at \(out.count)")
            out += try LZ4.decompress(try WALFixture.read(seg.path))
        }
        return out
    }

    /// Rows as the application sees them.
    func appRows() throws -> [[String?]] { try app!.queryRows(Self.rowsSQL) }

    static let rowsSQL = "SELECT id, length(v), hex(substr(v, 1, 8)), hex(substr(v, -8)) FROM t ORDER BY id"

    /// Restores snapshot + every shadow index up to the current one into a new file and returns its rows.
    func restoredRows() throws -> [[String?]] {
        let snap = try #require(snapshot)
        let g = snap.position.generation
        #expect(pos.generation == g)
        let out = dir + "/restored-\(UUID().uuidString).db"
        try WALFixture.write(out, snap.bytes)
        for index in snap.position.index...pos.index {
            try WALFixture.write(out + "-wal", try shadowIndex(g, index))
            let c = try SQLiteConnection(path: out)
            // A read first: a checkpoint on a connection that has not opened the WAL yet sees no frames.
            _ = try c.queryInt("SELECT count(*) FROM sqlite_master")
            let r = try c.checkpoint(.truncate)
            #expect(!r.busy && r.logFrames == r.checkpointedFrames)
            c.close()
            try? FileManager.default.removeItem(atPath: out + "-wal")
            try? FileManager.default.removeItem(atPath: out + "-shm")
        }
        let c = try SQLiteConnection(path: out)
        defer { c.close() }
        #expect(try c.queryText("PRAGMA integrity_check") == "ok")
        return try c.queryRows(Self.rowsSQL)
    }
}

// MARK: - Tests

@Suite("Database sync (in-process, real SQLite)")
struct DatabaseSyncTests {
    /// Without the idle release, the WAL scratch buffer (256 KiB or more) is kept only while batches are large: an
    /// idle database holds none.
    @Test func anIdleDatabaseHoldsNoScanBuffer() throws {
        let env = try DBTestEnv(idleConnectionDelay: .zero)
        let db = try env.open()
        try env.insert(1)
        try db.sync()
        #expect(!db.onQueue { db.realWAL.holdsBuffer }, "a small batch left its buffer behind")
        try env.insert(300, size: 1000)  // ~300 KB of WAL in one batch
        try db.sync()
        #expect(db.onQueue { db.realWAL.holdsBuffer }, "a large batch keeps its buffer for the next one")
        try env.insert(1)
        try db.sync()
        #expect(!db.onQueue { db.realWAL.holdsBuffer })
        #expect(env.pos.offset == UInt64(env.committedEnd), "everything was copied")
    }

    /// With the idle release (the default), the buffer of a busy database outlives its small batches (no new
    /// mapping and page faults at every change of batch size) and goes with the idle connections.
    @Test func theScanBufferStaysUntilTheDatabaseIdles() throws {
        let env = try DBTestEnv(idleConnectionDelay: .seconds(3600))
        let db = try env.open()
        try env.insert(300, size: 1000)
        try db.sync()
        #expect(db.onQueue { db.realWAL.holdsBuffer })
        try env.insert(1)
        try db.sync()
        #expect(db.onQueue { db.realWAL.holdsBuffer }, "a small batch of a busy database gave its buffer back")
        db.onQueue { db.releaseIdleConnections() }
        #expect(!db.onQueue { db.realWAL.holdsBuffer }, "the idle release kept the buffer")
        try env.insert(2)
        try db.sync()
        #expect(env.pos.offset == UInt64(env.committedEnd), "everything was copied")
    }

    @Test func firstSyncThenOneInsert() throws {
        let env = try DBTestEnv()
        try env.insert(3)
        let db = try env.open()
        let p0 = env.pos
        #expect(p0.index == 0 && p0.offset == env.walSize)
        #expect(try ShadowWAL(meta: env.meta).currentGeneration() == p0.generation)
        #expect(env.logs.contains("new generation \"\(p0.generation.name)\", no generation exists"))
        #expect(db.currentPageSize == 4096)
        // Helper tables are created in the user's database.
        #expect(try env.app!.queryInt("SELECT count(*) FROM sqlite_master WHERE name IN ('_litestream_seq', '_litestream_lock')") == 2)

        try env.insert(1)
        try db.sync()
        #expect(env.pos == WALPosition(generation: p0.generation, index: 0, offset: p0.offset + 4096 + 24))
        #expect(env.pos.offset == env.walSize)
        // The position file names the start of the last segment written.
        let posFile = WALPosition(generation: p0.generation, index: 0, offset: p0.offset).description + "\n"
        #expect(try WALFixture.read(env.meta.positionFile) == Array(posFile.utf8))
        // Nothing new: no new segment, same position.
        let before = try ShadowWAL(meta: env.meta).segments(p0.generation, index: 0).count
        try db.sync()
        #expect(env.pos.offset == p0.offset + 4120)
        #expect(try ShadowWAL(meta: env.meta).segments(p0.generation, index: 0).count == before)
    }

    /// `hold()`, what runs before the app starts, writes no shadow file and fsyncs nothing: it only makes sure our
    /// tables exist (one unsynced transaction) and pins the WAL, so the app's TRUNCATE checkpoint cannot discard
    /// frames. The rest of the open and the first sync then run in the background and copy everything, including
    /// what the app wrote meanwhile, into one new generation.
    @Test func holdWritesNoShadowAndPinsTheWALUntilTheBackgroundStart() throws {
        let env = try DBTestEnv()
        try env.insert(3)
        let d = Database(path: env.path, options: env.options,
                         logger: Logger(label: "db-test") { [logs = env.logs] _ in DBTestLogHandler(sink: logs) })
        env.db = d
        try d.hold()
        #expect(!FileManager.default.fileExists(atPath: env.meta.generationFile), "hold() wrote the shadow generation")
        #expect(!FileManager.default.fileExists(atPath: env.meta.positionFile), "hold() wrote the position file")
        // Our tables exist before the app starts: the app never contends with our writes at its start.
        let ours = "SELECT count(*) FROM sqlite_master WHERE name IN ('_litestream_seq', '_litestream_lock')"
        #expect(try env.app!.queryInt(ours) == 2)
        // The app writes and tries to empty the WAL: the guard keeps every frame where the first sync will read it.
        try env.insert(5)
        let walBefore = env.walSize
        let r = try env.app!.checkpoint(.truncate)
        #expect(r.busy, "the app's TRUNCATE checkpoint went through under the guard: \(r)")
        #expect(env.walSize == walBefore)
        let done = DispatchSemaphore(value: 0)
        d.startInBackground { done.signal() }
        #expect(done.wait(timeout: .now() + 30) == .success, "the background start did not finish")
        #expect(env.newGenerationLogs == 1)
        #expect(env.pos.index == 0 && env.pos.offset == env.committedEnd, "not everything was copied: \(env.pos)")
        #expect(env.logs.contains("initialized db: \(env.path)"))
    }

    /// One batch far larger than the sync's 256 KiB read buffer, mixing small transactions with one longer than the
    /// buffer (copied in two passes from its start): the shadow index is still the real WAL byte for byte.
    @Test func aBatchLargerThanTheReadBufferIsCopiedWhole() throws {
        let env = try DBTestEnv()
        try env.insert(2)
        let db = try env.open()
        try env.insert(120, size: 3000, oneTransaction: false)  // ~120 frames, one commit each
        try env.insert(200, size: 2000)  // one transaction of ~100 frames (400 KB), longer than the buffer
        try env.insert(90, size: 3000, oneTransaction: false)
        try db.sync()
        let p = env.pos
        #expect(p.offset == UInt64(env.committedEnd), "not everything was copied: \(p)")
        let shadow = try env.shadowIndex(p.generation, p.index)
        let real = try WALFixture.read(env.path + "-wal")
        #expect(shadow.count == real.count && shadow == real)
    }

    @Test func shadowSegmentsEqualRealWALPrefix() throws {
        let env = try DBTestEnv()
        try env.insert(2)
        let db = try env.open()
        for round in 0..<6 {
            try env.insert(round + 1, size: round % 2 == 0 ? 100 : 5000)
            try db.sync()
        }
        let p = env.pos
        let segs = try ShadowWAL(meta: env.meta).segments(p.generation, index: 0)
        #expect(segs.count >= 7)
        // Offset 0 holds the header with the first frames; every later segment is whole committed frames.
        let first = try LZ4.decompress(try WALFixture.read(segs[0].path)).count
        #expect(first > 32 && (first - 32) % 4120 == 0)
        for s in segs.dropFirst() { #expect((s.offset - 32) % 4120 == 0) }
        let shadow = try env.shadowIndex(p.generation, 0)
        let real = try WALFixture.read(env.path + "-wal")
        #expect(UInt64(shadow.count) == p.offset && shadow.count == real.count)
        #expect(shadow == real)
    }

    @Test func uncommittedFramesAreNotCopied() throws {
        let env = try DBTestEnv()
        try env.insert(2)
        let db = try env.open()
        let p0 = env.pos
        try env.app!.exec("PRAGMA cache_size=2; BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
                          + "INSERT INTO t(v) SELECT randomblob(3000) FROM c;")
        #expect(env.walSize > p0.offset, "SQLite did not spill; test precondition")
        try db.sync()
        #expect(env.pos == p0)
        try env.app!.exec("COMMIT")
        try db.sync()
        #expect(env.pos.generation == p0.generation && env.pos.index == 0 && env.pos.offset == env.walSize)
    }

    @Test func minPageCountCheckpointStartsNextIndexPastEightTimesTheMinimum() throws {
        let env = try DBTestEnv(minPages: 10)
        try env.insert(1)
        let db = try env.open()
        try env.takeSnapshot()
        let g = env.pos.generation
        // Past the minimum: a PASSIVE checkpoint, and the index continues (CheckpointPolicy.restartsWAL).
        try env.insert(12, size: 3000)
        try db.sync()
        #expect(env.logs.contains("checkpoint(PASSIVE)"))
        #expect(env.pos.generation == g && env.pos.index == 0)
        // Past eight times the minimum: the checkpoint also restarts the WAL.
        try env.insert(70, size: 3000)
        try db.sync()
        #expect(env.pos.generation == g && env.pos.index == 1)
        // The new index starts from the restarted WAL (salt-1 + 1) and covers it completely.
        #expect(env.pos.offset == env.committedEnd)
        let idx1 = try env.shadowIndex(g, 1)
        #expect(idx1 == Array(try WALFixture.read(env.path + "-wal").prefix(idx1.count)))
        #expect(try WALHeader(bytes: idx1).salt1 == (try WALHeader(bytes: env.shadowIndex(g, 0))).salt1 &+ 1)
        try env.insert(2)
        try db.sync()
        #expect(env.pos.index == 1)
        #expect(try env.restoredRows() == env.appRows())
    }

    /// A stopped watcher closes its inotify descriptor on its own thread soon after `stop()` (see the next test),
    /// without waiting for `deinit`, and refuses new watches.
    @Test func aStoppedFileWatcherClosesItsInotifyDescriptorAtOnce() throws {
        let env = try DBTestEnv()
        let watcher = try FileWatcher(logger: Logger(label: "watcher-test"))
        try watcher.watch(databasePath: env.path) { ContinuousClock.now }
        #expect(!watcher.inotifyIsClosed)
        watcher.stop()
        let deadline = ContinuousClock.now + .seconds(10)
        while !watcher.inotifyIsClosed && ContinuousClock.now < deadline { usleep(1000) }
        #expect(watcher.inotifyIsClosed, "the watcher still holds its inotify descriptor after stop()")
        #expect(throws: ReplicationError.self) { try watcher.watch(databasePath: env.path + "2") { ContinuousClock.now } }
    }

    /// `stop()` removes every watch from the kernel before it returns, while the descriptor stays open until
    /// `closeDelay`: the kernel frees the watches in the background, so the later close (or the process's exit)
    /// does not wait for an RCU grace period, as closing a descriptor that still has watches does (10–20 ms).
    @Test func stoppingTheFileWatcherRemovesItsWatchesAtOnceAndClosesLater() throws {
        let env = try DBTestEnv()
        let other = try DBTestEnv()
        let watcher = try FileWatcher(logger: Logger(label: "watcher-test"), closeDelay: .seconds(3))
        try watcher.watch(databasePath: env.path) { ContinuousClock.now }
        try watcher.watch(databasePath: other.path) { ContinuousClock.now }
        #expect(watcher.kernelWatchCount == 2)
        watcher.stop()
        #expect(watcher.kernelWatchCount == 0, "stop() left watches in the kernel (or closed the descriptor at once)")
        #expect(!watcher.inotifyIsClosed)
        let deadline = ContinuousClock.now + .seconds(20)
        while !watcher.inotifyIsClosed && ContinuousClock.now < deadline { usleep(10_000) }
        #expect(watcher.inotifyIsClosed, "the watcher still holds its inotify descriptor long after its close delay")
    }

    /// The final sync's checkpoint (`checkpointBeforeClose`) runs on the database's lane while the replicas upload:
    /// once the lane has run it, the database file alone holds every committed row, and it wrote nothing to the WAL
    /// (no restart, no row of ours), so the shadow WAL the replicas upload is unchanged.
    @Test func theShutdownCheckpointFillsTheDatabaseFileBeforeCloseAndLeavesTheWALAlone() throws {
        let env = try DBTestEnv()
        let db = try env.open()
        try env.insert(300, size: 1000)
        try db.sync()
        let position = env.pos
        let wal = try WALFixture.read(env.path + "-wal")
        db.checkpointBeforeClose()
        db.onQueue {}  // runs after the checkpoint queued before it
        #expect(db.isOpen)
        #expect(env.pos == position)
        #expect(try WALFixture.read(env.path + "-wal") == wal, "the shutdown checkpoint wrote to the WAL")
        // A copy of the database file without its WAL has every row: the checkpoint copied every frame into it.
        let copy = env.dir + "/file-alone.db"
        try FileManager.default.copyItem(atPath: env.path, toPath: copy)
        let c = try SQLiteConnection(path: copy)
        defer { c.close() }
        #expect(try c.queryInt("SELECT count(*) FROM t") == env.app!.queryInt("SELECT count(*) FROM t"))
        try env.insert(1)
        try db.sync()
        #expect(env.pos.generation == position.generation && env.pos.index == position.index)
        try db.close()
    }

    /// Before the final sync a replica stops taking the database's wake-ups (`ignoreWakeUps`): a wake-up queues an
    /// item on the replica's lane that the final sync's `stop` would wait for. A replica that takes them (the
    /// control) has a sync scheduled once its lane has run what was queued; one that ignores them has not.
    @Test func aReplicaIgnoringWakeUpsQueuesNothingForTheFinalSyncToWaitFor() throws {
        let env = try DBTestEnv()
        let db = try env.open()
        var options = ReplicaOptions()
        options.syncInterval = .seconds(3600)
        let quiet = Replica(name: "quiet", client: FileReplicaClient(root: env.dir + "/quiet"), db: db, options: options,
                            logger: Logger(label: "replica-test"))
        let control = Replica(name: "control", client: FileReplicaClient(root: env.dir + "/control"), db: db,
                              options: options, logger: Logger(label: "replica-test"))
        quiet.ignoreWakeUps()
        quiet.shadowDidChange()
        control.shadowDidChange()
        #expect(quiet.queue.syncInOrder { quiet.syncScheduled } == false, "a wake-up was queued after ignoreWakeUps()")
        #expect(control.queue.syncInOrder { control.syncScheduled } == true)
        try quiet.stop(finalSync: false)
        try control.stop(finalSync: false)
    }

    /// After the final sync's `lastSync()`, a background sync still scheduled (a file event, a retry) copies
    /// nothing, so the close waiting for the lane does not pay for one; before it, the same event copies.
    @Test func afterTheLastSyncABackgroundSyncCopiesNothing() throws {
        let env = try DBTestEnv()
        let db = try env.open()
        /// Schedules a background sync as a file event does and waits until the lane has run it.
        func backgroundSync() {
            db.notifyChanged()
            let deadline = ContinuousClock.now + .seconds(10)
            while db.syncPending.current != nil && ContinuousClock.now < deadline { usleep(1000) }
            db.onQueue {}
        }
        try env.insert(1)
        backgroundSync()
        #expect(env.pos.offset == env.committedEnd, "the control: a background sync copies the new frames")
        try db.lastSync()
        let last = env.pos
        try env.insert(1)
        backgroundSync()
        #expect(env.pos == last, "a background sync copied frames after lastSync()")
        #expect(env.committedEnd > last.offset)
        try db.close()  // its own sync copies them
        #expect(try ShadowWAL(meta: env.meta).currentGeneration() == last.generation)
    }

    /// A restarted WAL's header travels with its first frames: the new index starts with one segment at offset 0
    /// holding both (a header-only segment of its own cost a file, an fsync and a replica object per restart),
    /// and a replica synced after the restart stores that index as one object which restores.
    @Test func aRestartedIndexStartsWithItsHeaderAndFramesInOneSegment() throws {
        let env = try DBTestEnv(minPages: 10)
        try env.insert(1)
        let db = try env.open()
        let replicaRoot = env.dir + "/replica"
        let replica = Replica(name: "file", client: FileReplicaClient(root: replicaRoot), db: db,
                              options: ReplicaOptions(), logger: Logger(label: "replica-test"))
        try replica.sync()
        let g = env.pos.generation
        try env.insert(82, size: 3000)  // past eight times the minimum: the checkpoint restarts the WAL
        try db.sync()
        #expect(env.pos.generation == g && env.pos.index == 1)
        let shadow = ShadowWAL(meta: env.meta)
        for index: UInt32 in [0, 1] {
            let segs = try shadow.segments(g, index: index)
            #expect(segs.first?.offset == 0)
            for s in segs {
                let n = try shadow.readSegment(s).count
                #expect(n > walHeaderSize, "segment \(s.path) holds \(n) bytes: a header without frames")
            }
        }
        #expect(try shadow.segments(g, index: 1).count == 1)
        try replica.sync()
        let objects = try FileManager.default.subpathsOfDirectory(atPath: replicaRoot + "/generations/\(g.name)/wal")
            .filter { $0.hasSuffix(".wal.lz4") }.sorted()
        // Index 0: its start (with the first sync) and its tail; index 1: one object from offset 0.
        #expect(objects.filter { $0.hasPrefix(Hex.format(UInt32(1), width: 16) + "/") }
                == [Hex.format(UInt32(1), width: 16) + "/" + Hex.format(UInt64(0), width: 16) + ".wal.lz4"], "\(objects)")
        let out = env.dir + "/restored.db"
        _ = try Restorer.restore(client: FileReplicaClient(root: replicaRoot), options: RestoreOptions(outputPath: out),
                                 logger: Logger(label: "restore-test"))
        let restored = try SQLiteConnection(path: out)
        defer { restored.close() }
        #expect(try restored.queryRows(DBTestEnv.rowsSQL) == env.appRows())
    }

    /// Under a steady stream of commits the WAL is never fully checkpointed at the moment our guard moves, so
    /// the restart after a checkpoint needs the application's writers held off for a moment; without that the
    /// WAL only grew (to `max-checkpoint-page-count`, then a blocking checkpoint).
    @Test func steadyWriterStillLetsTheWALRestart() throws {
        let env = try DBTestEnv(minPages: 20, maxPages: 0)
        try env.insert(1)
        let db = try env.open()
        try env.takeSnapshot()
        let g = env.pos.generation
        let stop = Locked(false)
        let written = Locked(0)
        let failure = Locked<String?>(nil)
        let path = env.path
        let writer = Thread {
            do {
                let c = try SQLiteConnection(path: path, busyTimeout: 2000)
                defer { c.close() }
                while !stop.current {
                    try c.exec("INSERT INTO t(v) VALUES (randomblob(200));")
                    written.withLock { $0 += 1 }
                    usleep(200)
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        writer.start()
        var largestWAL: UInt64 = 0
        let deadline = Date().addingTimeInterval(60)
        while env.pos.index < 3 && Date() < deadline {
            try db.sync()
            largestWAL = max(largestWAL, env.walSize)
            usleep(5000)
        }
        stop.withLock { $0 = true }
        while !writer.isFinished { usleep(1000) }
        #expect(failure.current == nil)
        try db.sync()
        #expect(env.pos.generation == g && env.pos.index >= 3, "\(written.current) commits, largest wal \(largestWAL)")
        #expect(env.newGenerationLogs == 1)
        // A restart every time the checkpoint threshold is passed: the WAL stays a few thresholds long.
        #expect(largestWAL < UInt64(32 + 200 * (24 + 4096)), "largest wal \(largestWAL)")
        #expect(try env.restoredRows() == env.appRows())
    }

    @Test func checkpointIntervalStartsNextIndex() throws {
        let env = try DBTestEnv(interval: .nanoseconds(1))
        try env.insert(1)
        let db = try env.open()
        let g = env.pos.generation
        try env.insert(3, oneTransaction: false)
        try db.sync()
        #expect(env.pos.generation == g && env.pos.index >= 1)
    }

    @Test func explicitCheckpointsKeepGeneration() throws {
        let env = try DBTestEnv(retention: 2)
        try env.insert(20, size: 3000)
        let db = try env.open()
        try env.takeSnapshot()
        let p0 = env.pos
        let bigWAL = env.walSize
        try db.checkpoint(.truncate)
        #expect(env.pos.generation == p0.generation && env.pos.index == p0.index + 1)
        #expect(env.walSize < bigWAL)  // TRUNCATE shrinks the file
        #expect(env.pos.offset == env.walSize)
        for _ in 0..<4 {
            try env.insert(3)
            try db.sync()
            try db.checkpoint(.passive)
        }
        #expect(env.pos.index == p0.index + 5)
        try env.insert(2)
        try db.sync()
        // Shadow retention (2, no replicas): after a sync, indexes below current - 2 are gone.
        #expect(try ShadowWAL(meta: env.meta).indexes(env.pos.generation) == [3, 4, 5])
        env.snapshot = nil
        try env.takeSnapshot()
        try env.insert(1)
        try db.sync()
        #expect(try env.restoredRows() == env.appRows())
    }

    @Test("Database.checkpoint(_:) runs on the database queue")
    func publicCheckpointIsSerializedWithSyncs() throws {
        let env = try DBTestEnv()
        let db = try env.open()
        let started = Locked(false), finished = Locked(false)
        db.queue.async {
            started.withLock { $0 = true }
            usleep(300_000)
            finished.withLock { $0 = true }
        }
        while !started.current { usleep(1000) }
        try db.checkpoint(.passive)
        #expect(finished.current, "checkpoint ran while another job held the database queue")
        db.queue.sync {}
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func applicationTruncateCheckpointKeepsGeneration(afterOwnCheckpoint: Bool, otherProcess: Bool) throws {
        let env = try DBTestEnv(minPages: 10)
        try env.insert(3)
        let db = try env.open()
        try env.takeSnapshot()
        let g = env.pos.generation
        if afterOwnCheckpoint {
            try env.insert(82, size: 3000)  // past eight times the minimum: the checkpoint restarts the WAL
            try db.sync()
            #expect(env.pos.index == 1)
        }
        for round in 0..<3 {
            try env.insert(2, size: 200)
            try db.sync()
            // The application checkpoints on its own connection (or in another process) while we are running.
            if otherProcess {
                try env.sqlite3("PRAGMA busy_timeout=50; PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t(v) VALUES (randomblob(10));",
                                persistWAL: true)
            } else {
                _ = try env.app!.checkpoint(.truncate)
            }
            try env.insert(1 + round, oneTransaction: false)
            try db.sync()
            #expect(env.pos.generation == g, "round \(round)")
        }
        #expect(env.newGenerationLogs == 1)
        #expect(env.pos.offset == env.committedEnd)
        #expect(try env.restoredRows() == env.appRows())
    }

    @Test func busyApplicationWithAutocheckpointKeepsGeneration() throws {
        let env = try DBTestEnv(minPages: 8, maxPages: 30, autocheckpoint: 4)
        try env.insert(1)
        let db = try env.open()
        try env.takeSnapshot()
        let g = env.pos.generation
        for round in 0..<30 {
            try env.insert(1 + round % 4, size: round % 5 == 0 ? 9000 : 1500, oneTransaction: round % 2 == 0)
            if round % 3 == 0 { try db.sync() }
        }
        try db.sync()
        #expect(env.pos.generation == g && env.pos.index >= 1)
        #expect(env.newGenerationLogs == 1)
        #expect(try env.restoredRows() == env.appRows())
    }

    @Test func notifyChangedSyncsInBackground() throws {
        let env = try DBTestEnv()
        let db = try env.open()
        let p0 = env.pos
        try env.insert(1)
        db.notifyChanged()
        db.notifyChanged()
        let deadline = Date().addingTimeInterval(5)
        while db.position == p0 && Date() < deadline { usleep(2000) }
        #expect(db.position == WALPosition(generation: p0.generation, index: 0, offset: p0.offset + 4120))
    }
}
