import CSQLite
import Foundation
import Logging
import Testing
@testable import ReplicationKit

/// A real primary database whose WAL is cut at commit frames into LZ4 stream records, as the primary's shadow WAL
/// would be, plus snapshots of its file.
final class StreamPrimary {
    typealias Record = (header: StreamRecordHeader, payload: [UInt8])
    /// SQL value every row `id` of table `t` must hold (checked by readers of the replica).
    static let valueExpr = "printf('%d.', id) || substr(hex(zeroblob(300)), 1, 50 + id % 250)"

    let path: String
    let conn: SQLiteConnection
    let generation: Generation
    private(set) var index: UInt32 = 0
    /// Bytes of the current WAL already turned into segments.
    private var emitted = 0
    private(set) var rows = 0

    init(path: String, pageSize: Int = 4096, generation: Generation = .random()) throws {
        self.path = path
        self.generation = generation
        conn = try SQLiteConnection(path: path, create: true)
        try conn.exec("PRAGMA page_size=\(pageSize); PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0")
        try conn.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE TABLE total (n INTEGER)")
        try conn.exec("INSERT INTO total VALUES (0)")
    }

    /// Inserts `n` rows with the next ids and updates `total`, in one transaction.
    func insert(_ n: Int) throws {
        let first = rows + 1
        rows += n
        try conn.exec("""
            BEGIN;
            WITH RECURSIVE s(id) AS (SELECT \(first) UNION ALL SELECT id + 1 FROM s WHERE id < \(rows))
            INSERT INTO t(id, v) SELECT id, \(Self.valueExpr) FROM s;
            UPDATE total SET n = \(rows);
            COMMIT;
            """)
    }

    /// Empties the primary's WAL into its file; the next WAL is a new index.
    func restartWAL() throws {
        let r = try conn.checkpoint(.truncate)
        precondition(!r.busy, "primary checkpoint busy")
        index += 1
        emitted = 0
    }

    /// A snapshot record of the whole database at the start of a new index.
    func snapshot() throws -> Record {
        try restartWAL()
        let bytes = try FileSystem.readSmallFile(path) ?? []
        return (StreamRecordHeader(kind: .snapshot, generation: generation, index: index, offset: 0,
                                   size: UInt64(bytes.count)), bytes)
    }

    /// Every WAL byte not yet emitted, one LZ4 segment per transaction (the header alone first if asked).
    func segments(headerAlone: Bool = false) throws -> [Record] {
        let wal = try FileSystem.readSmallFile(path + "-wal") ?? []
        guard wal.count >= 32 else { return [] }
        let fs = 24 + Int(WALFixture.u32be(wal, 8))
        var out: [Record] = []
        var start = emitted
        if start == 0 && headerAlone {
            out.append(try Self.segment(generation, index, 0, Array(wal[0..<32])))
            start = 32
        }
        var at = max(start, 32)
        while at + fs <= wal.count {
            at += fs
            if WALFixture.u32be(wal, at - fs + 4) != 0 {
                out.append(try Self.segment(generation, index, UInt64(start), Array(wal[start..<at])))
                start = at
            }
        }
        emitted = start
        return out
    }

    static func segment(_ g: Generation, _ index: UInt32, _ offset: UInt64, _ raw: [UInt8]) throws -> Record {
        let lz = try LZ4.compress(raw)
        return (StreamRecordHeader(kind: .walSegment, generation: g, index: index, offset: offset,
                                   size: UInt64(lz.count)), lz)
    }
}

/// A replica path with its applier and helpers to feed records and read the local database.
struct ReplicaEnv {
    let dir: String
    let path: String
    let applier: StreamApplier

    init(_ tag: String) throws {
        dir = try WALFixture.tempDir("applier-\(tag)")
        path = dir + "/replica.db"
        applier = StreamApplier(path: path, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    }

    func feed(_ r: StreamPrimary.Record, chunk: Int = 1000) throws {
        try applier.beginSnapshot(r.header)
        var i = 0
        while i < r.payload.count {
            let n = min(chunk, r.payload.count - i)
            try r.payload.withUnsafeBytes { try applier.snapshotData(UnsafeRawBufferPointer(rebasing: $0[i..<(i + n)])) }
            i += n
        }
        try applier.finishSnapshot()
    }

    @discardableResult
    func apply(_ r: StreamPrimary.Record) throws -> Bool {
        try r.payload.withUnsafeBytes { try applier.applySegment(r.header, compressed: $0) }
    }

    var walSize: UInt64 { (try? FileSystem.info(path + "-wal"))?.size ?? 0 }

    /// Schema, rows and totals through a fresh connection.
    static func dump(_ path: String) throws -> [[String?]] {
        let c = try SQLiteConnection(path: path)
        defer { c.close() }
        var out = try c.queryRows("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        for table in try c.queryRows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") {
            out += try c.queryRows("SELECT * FROM \(table[0]!) ORDER BY 1")
        }
        return out
    }

    func dump() throws -> [[String?]] { try Self.dump(path) }

    func integrity() throws -> String? {
        let c = try SQLiteConnection(path: path)
        defer { c.close() }
        return try c.queryText("PRAGMA integrity_check")
    }
}

/// The error code `body` throws, nil when it does not throw.
private func thrownCode(_ body: () throws -> Void) -> ReplicationError.Code? {
    do { try body() } catch let e as ReplicationError { return e.code } catch { return .other }
    return nil
}

@Suite("StreamApplier (live replica apply, real SQLite)")
struct StreamApplierTests {
    @Test func snapshotThenSegmentsMatchPrimary() throws {
        let env = try ReplicaEnv("basic")
        let primary = try StreamPrimary(path: env.dir + "/primary.db")
        try primary.insert(20)
        let snap = try primary.snapshot()
        try env.applier.prepare(pageSize: 4096)
        try env.feed(snap, chunk: 777)  // not page aligned
        #expect(env.applier.storedPosition() == snap.header.position)
        #expect(env.walSize == 0, "the snapshot was checkpointed (no reader active)")
        #expect(try env.dump() == ReplicaEnv.dump(primary.path))

        for n in [1, 5, 40, 3] { try primary.insert(n) }
        var segs = try primary.segments(headerAlone: true)
        try primary.restartWAL()
        for n in [7, 2] { try primary.insert(n) }
        segs += try primary.segments()
        for s in segs { #expect(try env.apply(s)) }
        let last = try #require(segs.last)
        let end = WALPosition(generation: primary.generation, index: last.header.index,
                              offset: last.header.offset + UInt64(try LZ4.decompress(last.payload).count))
        #expect(env.applier.storedPosition() == end)
        #expect(try FileSystem.readSmallFile(MetaDirectory(databasePath: env.path).positionFile)
            == Array((end.description + "\n").utf8))
        #expect(try env.integrity() == "ok")
        #expect(try env.dump() == ReplicaEnv.dump(primary.path))
        env.applier.close()
    }

    @Test func concurrentReaderNeverSeesPartialOrOlderData() throws {
        let env = try ReplicaEnv("reader")
        let primary = try StreamPrimary(path: env.dir + "/primary.db")
        try primary.insert(10)
        // Checkpoints (busy or not) also run while the reader is active.
        env.applier.checkpointFrameThreshold = 60
        try env.applier.prepare(pageSize: 4096)
        try env.feed(try primary.snapshot())

        struct ReaderState { var stop = false; var iterations = 0; var advances = 0; var errors: [String] = [] }
        let state = Locked(ReaderState())
        let finished = DispatchSemaphore(value: 0)
        let check = """
            SELECT count(*), coalesce(max(id), 0), coalesce(sum(id), 0),
                   coalesce(sum(v != \(StreamPrimary.valueExpr)), 0), (SELECT n FROM total) FROM t
            """
        let path = env.path
        let reader = Thread {
            defer { finished.signal() }
            do {
                let c = try SQLiteConnection(path: path)
                defer { c.close() }
                var last = 0
                while !state.current.stop {
                    try c.exec("BEGIN")
                    let a = try c.queryRows(check)[0].map { Int($0 ?? "") ?? -1 }
                    let b = try c.queryRows(check)[0].map { Int($0 ?? "") ?? -1 }
                    try c.exec("COMMIT")
                    let n = a[0]
                    var bad: [String] = []
                    if a != b { bad.append("snapshot changed inside a read transaction: \(a) then \(b)") }
                    if n < last { bad.append("row count went backwards: \(last) -> \(n)") }
                    if a[1] != n || a[2] != n * (n + 1) / 2 || a[4] != n { bad.append("partial transaction: \(a)") }
                    if a[3] != 0 { bad.append("\(a[3]) damaged rows") }
                    state.withLock {
                        $0.iterations += 1
                        if n > last { $0.advances += 1 }
                        $0.errors += bad
                        if !bad.isEmpty { $0.stop = true }
                    }
                    last = n
                }
            } catch {
                state.withLock { $0.errors.append("reader: \(error)"); $0.stop = true }
            }
        }
        reader.start()
        func waitForReader() {
            let before = state.current.iterations
            while true {
                let s = state.current
                if s.iterations > before + 1 || s.stop { return }
                sched_yield()
            }
        }

        var applied = 0
        for round in 0..<4 {
            for t in 0..<40 {
                try primary.insert(5 + (round * 40 + t) % 23)
                for s in try primary.segments(headerAlone: t == 0) {
                    try env.apply(s)
                    applied += 1
                }
                if t % 8 == 0 { waitForReader() }
            }
            if round == 1 {
                // A snapshot (one big transaction) applied under the reader too.
                try env.feed(try primary.snapshot(), chunk: 5000)
                waitForReader()
            } else {
                try primary.restartWAL()
            }
        }
        waitForReader()
        state.withLock { $0.stop = true }
        finished.wait()
        let s = state.current
        #expect(s.errors.isEmpty, "\(s.errors.prefix(5))")
        #expect(s.iterations > 10 && s.advances > 10, "reader saw \(s.advances) changes in \(s.iterations) reads")
        #expect(primary.rows > 2000 && applied >= 160)
        #expect(try env.dump() == ReplicaEnv.dump(primary.path))
        #expect(try env.integrity() == "ok")

        // Without readers the WAL is emptied once enough frames accumulated (then the next batch starts it again).
        var shrank = false
        for _ in 0..<400 where !shrank {
            let before = env.walSize
            try primary.insert(3)
            for s in try primary.segments() { try env.apply(s) }
            shrank = env.walSize < before
        }
        #expect(shrank, "WAL never truncated: \(env.walSize) bytes")
        #expect(try env.dump() == ReplicaEnv.dump(primary.path))
        env.applier.close()
    }

    @Test func newGenerationSnapshotReplacesContent() throws {
        let env = try ReplicaEnv("regen")
        let big = try StreamPrimary(path: env.dir + "/big.db")
        for _ in 0..<5 { try big.insert(200) }
        try env.applier.prepare(pageSize: 4096)
        try env.feed(try big.snapshot())
        try big.insert(30)
        for s in try big.segments() { try env.apply(s) }

        let small = try StreamPrimary(path: env.dir + "/small.db")
        try small.conn.exec("CREATE TABLE other (x TEXT); INSERT INTO other VALUES ('only me')")
        try small.insert(3)
        let snap = try small.snapshot()
        #expect(snap.header.size < (try FileSystem.info(big.path))!.size)
        try env.feed(snap, chunk: 4096 * 3 + 5)
        #expect(env.applier.storedPosition() == snap.header.position)
        #expect(try env.dump() == ReplicaEnv.dump(small.path))
        #expect(try env.integrity() == "ok")
        // Segments of the old generation are now conflicts.
        try big.insert(1)
        let old = try #require(try big.segments().first)
        #expect(thrownCode { try env.apply(old) } == .conflict)
        env.applier.close()
    }

    @Test func corruptSegmentAndShortSnapshotChangeNothing() throws {
        let env = try ReplicaEnv("corrupt")
        let primary = try StreamPrimary(path: env.dir + "/primary.db")
        try primary.insert(10)
        try env.applier.prepare(pageSize: 4096)
        try env.feed(try primary.snapshot())
        try primary.insert(50)
        let good = try #require(try primary.segments().first)
        let before = try env.dump(), pos = env.applier.storedPosition(), wal = env.walSize

        for at in [good.payload.count / 2, good.payload.count - 2, 4] {
            var bad = good
            bad.payload[at] ^= 0x5a
            #expect(thrownCode { try env.apply(bad) } == .corrupt, "flipped byte \(at)")
            #expect(try env.dump() == before)
            #expect(env.applier.storedPosition() == pos)
            #expect(env.walSize == wal)
        }
        // A segment of frames that does not end on a commit frame.
        let raw = try LZ4.decompress(good.payload)
        let partial = try StreamPrimary.segment(good.header.generation, good.header.index, good.header.offset,
                                                Array(raw[0..<(32 + 4120)]))
        #expect(raw.count > 32 + 2 * 4120)
        #expect(thrownCode { try env.apply(partial) } == .corrupt)
        #expect(try env.apply(good))
        #expect(try env.dump() == ReplicaEnv.dump(primary.path))

        // Short snapshot: finish after fewer bytes; then an interrupted one (abort); then a good one.
        let other = try StreamPrimary(path: env.dir + "/other.db")
        try other.insert(400)
        let snap = try other.snapshot()
        let afterGood = try env.dump(), goodPos = env.applier.storedPosition()
        try env.applier.beginSnapshot(snap.header)
        try snap.payload.withUnsafeBytes { try env.applier.snapshotData(UnsafeRawBufferPointer(rebasing: $0[0..<(snap.payload.count - 100)])) }
        #expect(thrownCode { try env.applier.finishSnapshot() } == .corrupt)
        #expect(try env.dump() == afterGood)
        #expect(env.applier.storedPosition() == goodPos)
        try env.applier.beginSnapshot(snap.header)
        try snap.payload.withUnsafeBytes { try env.applier.snapshotData(UnsafeRawBufferPointer(rebasing: $0[0..<9000])) }
        env.applier.abort()
        #expect(try env.dump() == afterGood)
        var odd = snap
        odd.header.size -= 1
        odd.payload.removeLast()
        #expect(thrownCode { try env.feed(odd) } == .corrupt, "size not a multiple of the page size")
        #expect(try env.dump() == afterGood)
        try env.feed(snap)
        #expect(try env.dump() == ReplicaEnv.dump(other.path))
        #expect(try env.integrity() == "ok")
        env.applier.close()
    }

    @Test func skipsAppliedSegmentsAndRejectsGaps() throws {
        let env = try ReplicaEnv("order")
        let primary = try StreamPrimary(path: env.dir + "/primary.db")
        try env.applier.prepare(pageSize: 4096)
        try primary.insert(1)
        let early = try #require(try primary.segments().first)
        #expect(thrownCode { try env.apply(early) } == .conflict, "no snapshot yet")
        try env.feed(try primary.snapshot())
        for n in [4, 4, 4] { try primary.insert(n) }
        let segs = try primary.segments()
        #expect(segs.count == 3)
        #expect(thrownCode { try env.apply(segs[1]) } == .conflict, "gap")
        #expect(try env.apply(segs[0]))
        #expect(try env.apply(segs[0]) == false)
        #expect(try env.apply(segs[1]))
        #expect(try env.apply(segs[0]) == false)
        try primary.restartWAL()
        try primary.restartWAL()
        try primary.insert(2)
        let later = try primary.segments()
        var midIndex = later[0]
        midIndex.header.offset = 4152
        #expect(thrownCode { try env.apply(midIndex) } == .conflict, "later index not at offset 0")
        #expect(try env.apply(later[0]), "a later index at offset 0 follows a WAL restart")
        #expect(try env.apply(segs[2]) == false, "older index")
        #expect(env.applier.storedPosition()?.index == later[0].header.index)
        env.applier.close()
    }

    @Test func segmentDecisions() {
        let g = Generation(value: 7), h = Generation(value: 8)
        let stored = WALPosition(generation: g, index: 3, offset: 4184)
        func d(_ gen: Generation, _ i: UInt32, _ o: UInt64) -> StreamSegmentDecision {
            StreamSegmentDecision.decide(segment: WALPosition(generation: gen, index: i, offset: o), stored: stored)
        }
        #expect(d(g, 3, 4184) == .apply)
        #expect(d(g, 4, 0) == .apply)
        #expect(d(g, 9, 0) == .apply)
        #expect(d(g, 3, 32) == .skip)
        #expect(d(g, 2, 9000) == .skip)
        for c in [d(g, 3, 8336), d(g, 4, 32), d(h, 3, 4184)] {
            guard case .conflict = c else { Issue.record("expected conflict, got \(c)"); continue }
        }
        guard case .conflict = StreamSegmentDecision.decide(segment: stored, stored: nil) else {
            Issue.record("a segment before any snapshot must conflict"); return
        }
    }

    @Test func restartRecoversWALTailAndContinues() throws {
        let env = try ReplicaEnv("restart")
        let primary = try StreamPrimary(path: env.dir + "/primary.db")
        try primary.insert(10)
        try env.applier.prepare(pageSize: 4096)
        try env.feed(try primary.snapshot())
        for n in [3, 9, 27] { try primary.insert(n) }
        for s in try primary.segments(headerAlone: true) { try env.apply(s) }
        #expect(env.walSize > 0)
        // An aborted record leaves a torn tail in the WAL file (as a crash mid-append would).
        try primary.insert(30)
        let next = try primary.segments()
        let pos = env.applier.storedPosition()
        env.applier.close()
        let tornWAL = try WALFixture.read(env.path + "-wal") + [UInt8](repeating: 0xAB, count: 5000)
        try WALFixture.write(env.path + "-wal", tornWAL)

        let again = StreamApplier(path: env.path, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        #expect(again.storedPosition() == pos)
        try again.prepare(pageSize: 4096)
        #expect(again.storedPosition() == pos)
        for s in next { #expect(try s.payload.withUnsafeBytes { try again.applySegment(s.header, compressed: $0) }) }
        try primary.insert(2)
        for s in try primary.segments() { _ = try s.payload.withUnsafeBytes { try again.applySegment(s.header, compressed: $0) } }
        #expect(try env.integrity() == "ok")
        #expect(try env.dump() == ReplicaEnv.dump(primary.path))
        // The local WAL is a valid chain: SQLite's view and the scanner agree it ends on the last commit.
        let wal = try WALFixture.read(env.path + "-wal")
        #expect(try WALFixture.scan(wal).committedEnd == UInt64(wal.count))
        again.close()
    }

    @Test func pageSizeMismatchNamesBothSizes() throws {
        let env = try ReplicaEnv("pagesize")
        try env.applier.prepare(pageSize: 4096)
        env.applier.close()
        let other = StreamApplier(path: env.path, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        do {
            try other.prepare(pageSize: 1024)
            Issue.record("prepare accepted a different page size")
        } catch {
            #expect(error.oneLine == "init replica: page size mismatch: 4096 <> 1024")
        }
        // A fresh database gets the requested page size, and a position left from a deleted database is dropped.
        let fresh = try ReplicaEnv("pagesize2")
        let stale = MetaDirectory(databasePath: fresh.path).positionFile
        try WALFixture.write(stale, Array("0123456789abcdef/0000000000000001:0000000000000020\n".utf8))
        let bootFile = MetaDirectory(databasePath: fresh.path).root + "/boot-id"
        // Written during an earlier boot of the machine: not trusted.
        try WALFixture.write(bootFile, Array("00000000-0000-0000-0000-000000000000\n".utf8))
        #expect(fresh.applier.storedPosition() == nil)
        // Written during this boot: trusted until prepare finds the database gone.
        let thisBoot = try String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)
        try WALFixture.write(bootFile, Array(thisBoot.utf8))
        #expect(fresh.applier.storedPosition() != nil)
        try fresh.applier.prepare(pageSize: 1024)
        let c = try SQLiteConnection(path: fresh.path)
        #expect(try c.queryInt("PRAGMA page_size") == 1024)
        #expect(try c.queryText("PRAGMA journal_mode") == "wal")
        #expect(fresh.applier.storedPosition() == nil)
        c.close()
        fresh.applier.close()
    }
}
