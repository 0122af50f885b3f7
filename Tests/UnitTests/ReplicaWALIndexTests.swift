import Foundation
import Testing
@testable import ReplicationKit

/// The streaming replica's own wal-index updates, checked against SQLite's: after the applier published frames in
/// place, SQLite's recovery (forced by marking the index stale) must build the same header and tables.
@Suite("ReplicaWALIndex (in-place wal-index updates, SQLite's recovery as the oracle)")
struct ReplicaWALIndexTests {
    /// The parts of a `-shm` file a reader uses: the header's first copy without the change counter and checksum
    /// (bytes 0..<8 and 12..<40), and each block's page numbers and hash table up to the block of `mxFrame`.
    static func readerView(_ path: String) throws -> (header: [UInt8], maxFrame: Int, tables: [UInt8]) {
        let shm = try #require(try FileSystem.readSmallFile(path + "-shm"))
        let maxFrame = Int(shm.withUnsafeBytes { $0.load(fromByteOffset: 16, as: UInt32.self) })
        let blocks = maxFrame == 0 ? 0 : ReplicaWALIndex.location(ofFrame: maxFrame).block + 1
        var tables: [UInt8] = []
        for b in 0..<blocks {
            let start = b * ReplicaWALIndex.blockSize + (b == 0 ? ReplicaWALIndex.headerSize : 0)
            tables += shm[start..<((b + 1) * ReplicaWALIndex.blockSize)]
        }
        return (Array(shm[0..<8]) + Array(shm[12..<40]), maxFrame, tables)
    }

    /// Makes every reader's next transaction rebuild the wal-index from the WAL file, and runs one.
    static func rebuildBySQLite(_ path: String) throws {
        let fd = try FileDescriptor.open(path + "-shm", flags: O_RDWR)
        defer { try? fd.close() }
        for offset in ReplicaWALIndex.isInitOffsets { try [UInt8(0)].withUnsafeBytes { try fd.pwriteAll($0, at: offset) } }
        let c = try SQLiteConnection(path: path)
        defer { c.close() }
        _ = try c.queryInt("SELECT count(*) FROM t")
    }

    /// A replica that applied a snapshot and one segment of a fresh primary.
    /// The replica holds the primary's rows and passes integrity_check; then the applier closes.
    static func expectEqualsPrimaryAndClose(_ env: ReplicaEnv, _ primary: StreamPrimary,
                                            sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try env.dump() == ReplicaEnv.dump(primary.path), sourceLocation: sourceLocation)
        #expect(try env.integrity() == "ok", sourceLocation: sourceLocation)
        env.applier.close()
    }

    /// Starts a background checkpoint once none is running and waits for it: with no batch applied meanwhile, it
    /// copies the whole WAL, so the next batch first empties it.
    static func waitForAFullBackgroundCheckpoint(_ env: ReplicaEnv, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let deadline = ContinuousClock.now + .seconds(30)
        var started = env.applier.requestBackgroundCheckpoint()
        while started == nil {
            guard ContinuousClock.now < deadline else { throw TestFailure("the running checkpoint never finished") }
            usleep(1000)
            started = env.applier.requestBackgroundCheckpoint()
        }
        while env.applier.backgroundCheckpoints <= started! {
            guard ContinuousClock.now < deadline else { throw TestFailure("the requested checkpoint never finished") }
            usleep(1000)
        }
    }

    static func following(_ tag: String) throws -> (ReplicaEnv, StreamPrimary) {
        let env = try ReplicaEnv(tag)
        let primary = try StreamPrimary(path: env.dir + "/primary.db")
        try primary.insert(10)
        try env.applier.prepare(pageSize: 4096)
        try env.feed(try primary.snapshot())
        try primary.insert(5)
        for s in try primary.segments() { try env.apply(s) }
        return (env, primary)
    }

    @Test(arguments: [4096, 512])
    func publishedIndexEqualsSQLiteRecovery(pageSize: Int) throws {
        let env = try ReplicaEnv("shm-\(pageSize)")
        let primary = try StreamPrimary(path: env.dir + "/primary.db", pageSize: pageSize)
        try primary.insert(30)
        env.applier.checkpointFrameThreshold = 1_000_000  // keep every frame: cross block boundaries
        try env.applier.prepare(pageSize: pageSize)
        try env.feed(try primary.snapshot(), chunk: 3000)
        var checked = 0
        // 512-byte pages: thousands of frames, past the first block's 4,062 and into the third block.
        let transactions = pageSize == 512 ? 1000 : 120
        for t in 0..<transactions {
            try primary.insert(1 + t % 17)
            for s in try primary.segments(headerAlone: t == 0) { try env.apply(s) }
            if t % 97 == 0 || t == transactions - 1 {
                let ours = try Self.readerView(env.path)
                try Self.rebuildBySQLite(env.path)
                let sqlite = try Self.readerView(env.path)
                #expect(ours.maxFrame == sqlite.maxFrame)
                #expect(ours.header == sqlite.header, "header differs after transaction \(t)")
                let differ = ours.tables.indices.first { $0 < sqlite.tables.count && ours.tables[$0] != sqlite.tables[$0] }
                    ?? (ours.tables.count == sqlite.tables.count ? nil : min(ours.tables.count, sqlite.tables.count))
                #expect(differ == nil, "tables differ at byte \(differ ?? 0) after transaction \(t)")
                checked += 1
            }
        }
        let frames = try Self.readerView(env.path).maxFrame
        if pageSize == 512 {
            #expect(frames > ReplicaWALIndex.firstBlockFrames + ReplicaWALIndex.blockFrames, "only \(frames) frames")
        }
        #expect(checked >= 2)
        #expect(env.applier.indexPublishes >= transactions, "\(env.applier.indexPublishes) in-place publishes")
        // The applier's own falls-back: at most the snapshot's, before any reader had built an index.
        #expect(env.applier.indexRebuilds <= 1, "\(env.applier.indexRebuilds) rebuilds")
        try Self.expectEqualsPrimaryAndClose(env, primary)
    }

    @Test func continuesAfterCheckpointsAndAnIndexRebuiltElsewhere() throws {
        let env = try ReplicaEnv("shm-ckpt")
        let primary = try StreamPrimary(path: env.dir + "/primary.db")
        try primary.insert(10)
        env.applier.checkpointFrameThreshold = 40
        try env.applier.prepare(pageSize: 4096)
        try env.feed(try primary.snapshot())
        var truncations = 0
        for t in 0..<150 {
            try primary.insert(2 + t % 9)
            for s in try primary.segments(headerAlone: t % 50 == 0) {
                let before = env.walSize
                try env.apply(s)
                if env.walSize < before { truncations += 1 }
            }
            if t % 50 == 49 { try primary.restartWAL() }
            // Now and then the background checkpoint catches up (as it does between a follower's batches), so the
            // next batch empties the WAL however slow the machine is.
            if t % 25 == 12 { try Self.waitForAFullBackgroundCheckpoint(env) }
            if t == 75 {
                // Another process rebuilds the index: its header changes (change counter), our next publish still
                // finds it describing the WAL and continues in place.
                try Self.rebuildBySQLite(env.path)
            }
            let c = try SQLiteConnection(path: env.path)
            let n = try c.queryInt("SELECT count(*) FROM t")
            c.close()
            #expect(n == Int64(primary.rows), "after transaction \(t)")
        }
        #expect(truncations > 2, "the WAL was emptied \(truncations) times")
        #expect(env.applier.indexRebuilds <= 1, "\(env.applier.indexRebuilds) rebuilds")
        try Self.expectEqualsPrimaryAndClose(env, primary)
    }

    @Test func aBackgroundCheckpointLetsTheApplierEmptyTheWAL() throws {
        let env = try ReplicaEnv("shm-bg")
        let primary = try StreamPrimary(path: env.dir + "/primary.db")
        try primary.insert(10)
        env.applier.checkpointFrameThreshold = 40
        try env.applier.prepare(pageSize: 4096)
        try env.feed(try primary.snapshot())
        var t = 0
        var peak: UInt64 = 0
        var emptied = false
        while env.applier.backgroundCheckpoints == 0 {
            try primary.insert(20)
            for s in try primary.segments(headerAlone: t == 0) {
                let before = env.walSize
                try env.apply(s)
                if env.walSize < before { emptied = true }
            }
            peak = max(peak, env.walSize)
            t += 1
            #expect(t < 200, "no background checkpoint requested or completed")
            if t >= 200 { return }
            if env.walSize >= 40 * 4120 { usleep(2000) }  // give the pool a moment once one is due
        }
        #expect(peak < 160 * 4120, "the WAL reached the inline fallback: \(peak) bytes")
        if !emptied {
            // Not yet emptied (the checkpoint ran while batches kept coming): once a checkpoint copied the whole
            // WAL, the next batch first empties it.
            try Self.waitForAFullBackgroundCheckpoint(env)
            let before = env.walSize
            try primary.insert(1)
            for s in try primary.segments() { try env.apply(s) }
            #expect(env.walSize < before, "WAL \(before) -> \(env.walSize) bytes")
        }
        try Self.expectEqualsPrimaryAndClose(env, primary)
    }

    @Test func anIndexNotDescribingTheWALIsLeftAlone() throws {
        let (env, primary) = try Self.following("shm-stale")

        // Another process marked the index stale: the applier's BEGIN IMMEDIATE makes SQLite rebuild it, and the
        // next publish is in place again.
        let fd = try FileDescriptor.open(env.path + "-shm", flags: O_RDWR)
        for offset in ReplicaWALIndex.isInitOffsets { try [UInt8(0)].withUnsafeBytes { try fd.pwriteAll($0, at: offset) } }
        try fd.close()
        let published = env.applier.indexPublishes
        try primary.insert(7)
        for s in try primary.segments() { try env.apply(s) }
        #expect(env.applier.indexPublishes == published + 1)
        #expect(try env.dump() == ReplicaEnv.dump(primary.path))

        // An append that does not continue the index (a gap, other salts, another page size) changes nothing.
        let index = try ReplicaWALIndex(path: env.path + "-shm")
        defer { try? index.close() }
        let before = try #require(try FileSystem.readSmallFile(env.path + "-shm"))
        let maxFrame = Int(before.withUnsafeBytes { $0.load(fromByteOffset: 16, as: UInt32.self) })
        let salt1 = UInt32(bigEndian: before.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 32, as: UInt32.self) })
        let salt2 = UInt32(bigEndian: before.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 36, as: UInt32.self) })
        let good = WALIndexAppend(firstFrame: maxFrame + 1, pages: [2, 3], databaseSize: 9,
                                  checksum: WALChecksum(bigEndian: false), salt1: salt1, salt2: salt2, pageSize: 4096)
        var gap = good
        gap.firstFrame += 3
        var salts = good
        salts.salt1 &+= 1
        var size = good
        size.pageSize = 8192
        var order = good
        order.checksum = WALChecksum(bigEndian: true)
        for bad in [gap, salts, size, order] {
            #expect(try index.publish(bad) == false)
            #expect(try FileSystem.readSmallFile(env.path + "-shm") == before)
        }
        env.applier.close()
    }

    @Test func headerChecksumMatchesSQLites() throws {
        // A header SQLite wrote (after its recovery) reads back with a valid checksum, and storing it again gives
        // the same bytes.
        let (env, _) = try Self.following("shm-hdr")
        try Self.rebuildBySQLite(env.path)
        let shm = try #require(try FileSystem.readSmallFile(env.path + "-shm"))
        try shm.withUnsafeBytes { raw in
            let h = try #require(IndexHeader(raw.baseAddress!))
            #expect(h.isInit == 1 && h.maxFrame > 0)
            var copy = [UInt8](repeating: 0, count: 48)
            copy.withUnsafeMutableBytes { h.store(to: $0.baseAddress!) }
            #expect(copy == Array(shm[0..<48]))
        }
        #expect(IndexHeader.encode(pageSize: 65536) == 1 && IndexHeader.encode(pageSize: 4096) == 4096)
        env.applier.close()
    }
}
