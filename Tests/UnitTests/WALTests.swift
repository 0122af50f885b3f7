import CSQLite
import Foundation
import Testing
@testable import ReplicationKit

// MARK: - Shared fixtures (used by the WAL, Continuity, ShadowWAL and DatabaseSync tests)

/// Builders for synthetic and real WAL files. The checksum here is an independent re-implementation of
/// REPLICATION §5.3, so tests do not validate the product's checksum code against itself.
enum WALFixture {
    /// Makes a fresh temporary directory.
    static func tempDir(_ tag: String) throws -> String {
        let path = NSTemporaryDirectory() + "rk-unit-\(tag)-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func read(_ path: String) throws -> [UInt8] { try FileSystem.readSmallFile(path) ?? [] }

    static func write(_ path: String, _ bytes: [UInt8]) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func u32be(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }

    static func putU32be(_ v: UInt32, _ b: inout [UInt8], _ o: Int) {
        b[o] = UInt8(v >> 24); b[o + 1] = UInt8((v >> 16) & 0xff); b[o + 2] = UInt8((v >> 8) & 0xff); b[o + 3] = UInt8(v & 0xff)
    }

    /// SQLite's WAL checksum over `bytes` (length a multiple of 8), continuing from `s`.
    static func checksum(_ bytes: ArraySlice<UInt8>, bigEndian: Bool, from s: (UInt32, UInt32)) -> (UInt32, UInt32) {
        var (a, b) = s
        let base = bytes.startIndex
        var i = 0
        func word(_ o: Int) -> UInt32 {
            let p = base + o
            return bigEndian
                ? UInt32(bytes[p]) << 24 | UInt32(bytes[p + 1]) << 16 | UInt32(bytes[p + 2]) << 8 | UInt32(bytes[p + 3])
                : UInt32(bytes[p + 3]) << 24 | UInt32(bytes[p + 2]) << 16 | UInt32(bytes[p + 1]) << 8 | UInt32(bytes[p])
        }
        while i < bytes.count {
            a = a &+ word(i) &+ b
            b = b &+ word(i + 4) &+ a
            i += 8
        }
        return (a, b)
    }

    /// A valid 32-byte WAL header.
    static func header(pageSize: Int = 512, sequence: UInt32 = 0, salt1: UInt32, salt2: UInt32,
                       bigEndian: Bool = false) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 32)
        putU32be(bigEndian ? 0x377F_0683 : 0x377F_0682, &h, 0)
        putU32be(3_007_000, &h, 4)
        putU32be(UInt32(pageSize), &h, 8)
        putU32be(sequence, &h, 12)
        putU32be(salt1, &h, 16)
        putU32be(salt2, &h, 20)
        let (c1, c2) = checksum(h[0..<24], bigEndian: bigEndian, from: (0, 0))
        putU32be(c1, &h, 24)
        putU32be(c2, &h, 28)
        return h
    }

    /// Appends one frame whose checksum chains from the previous frame (or the header).
    /// `salts` overrides the header's salts (the checksum is then still computed, so only the salts are wrong).
    static func appendFrame(_ wal: inout [UInt8], page: UInt32, commit: UInt32, fill: UInt8,
                            salts: (UInt32, UInt32)? = nil) {
        let pageSize = Int(u32be(wal, 8))
        let bigEndian = u32be(wal, 0) == 0x377F_0683
        let fs = 24 + pageSize
        let prevSumAt = wal.count == 32 ? 24 : wal.count - fs + 16
        let prev = (u32be(wal, prevSumAt), u32be(wal, prevSumAt + 4))
        var f = [UInt8](repeating: 0, count: fs)
        putU32be(page, &f, 0)
        putU32be(commit, &f, 4)
        putU32be(salts?.0 ?? u32be(wal, 16), &f, 8)
        putU32be(salts?.1 ?? u32be(wal, 20), &f, 12)
        for i in 0..<pageSize { f[24 + i] = fill &+ UInt8(truncatingIfNeeded: i * 7) }
        var s = checksum(f[0..<8], bigEndian: bigEndian, from: prev)
        s = checksum(f[24..<fs], bigEndian: bigEndian, from: s)
        putU32be(s.0, &f, 16)
        putU32be(s.1, &f, 20)
        wal.append(contentsOf: f)
    }

    /// A synthetic WAL: header plus frames given as (page, commit) pairs.
    static func makeWAL(pageSize: Int = 512, salt1: UInt32 = 0x1111_2222, salt2: UInt32 = 0x3333_4444,
                        bigEndian: Bool = false, frames: [(UInt32, UInt32)]) -> [UInt8] {
        var wal = header(pageSize: pageSize, salt1: salt1, salt2: salt2, bigEndian: bigEndian)
        for (i, f) in frames.enumerated() { appendFrame(&wal, page: f.0, commit: f.1, fill: UInt8(i)) }
        return wal
    }

    /// (offset, isCommit) of every whole frame after the header, read naively from the frame headers.
    static func frameLayout(_ wal: [UInt8]) -> [(offset: Int, commit: Bool)] {
        let fs = 24 + Int(u32be(wal, 8))
        return stride(from: 32, through: wal.count - fs, by: fs).map { ($0, u32be(wal, $0 + 4) != 0) }
    }

    /// End offset of the last commit frame that ends at or before `limit` (32 when there is none).
    static func lastCommitEnd(_ wal: [UInt8], before limit: Int) -> Int {
        let fs = 24 + Int(u32be(wal, 8))
        return frameLayout(wal).filter { $0.commit && $0.offset + fs <= limit }.last.map { $0.offset + fs } ?? 32
    }

    /// Scans `wal` from the header with both of the product's scanners (`scan` and the buffer-reusing
    /// `findCommittedEnd` used by sync), expects them to agree, and returns the result.
    static func scan(_ wal: [UInt8], framesPerRead: Int = 64) throws -> WALScanResult {
        let h = try WALHeader(bytes: wal)
        let scanner = WALScanner(header: h, framesPerRead: framesPerRead)
        let a = try scanner.scan(from: 32, checksum: h.checksumState) { n, off in
            let s = min(Int(off), wal.count)
            return Array(wal[s..<min(wal.count, s + n)])
        }
        // An odd buffer size (not a whole number of frames) on purpose.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: framesPerRead * h.frameSize + 100, alignment: 16)
        defer { buffer.deallocate() }
        let b = try scanner.findCommittedEnd(from: 32, checksum: h.checksumState, buffer: buffer) { buf, off in
            let s = min(Int(off), wal.count)
            let n = min(buf.count, wal.count - s)
            wal.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[s..<(s + n)])) }
            return n
        }
        #expect(a == b, "scan and findCommittedEnd disagree")
        // The front-to-back form, with first reads of one frame, three frames and more than the buffer: the
        // same result, and when it says the bytes stayed in the buffer, they are exactly the WAL's.
        for firstRead in [1, 3 * h.frameSize, 1 << 30] {
            let (c, inBuffer) = try scanner.findCommittedEnd(from: 32, checksum: h.checksumState, buffer: buffer,
                                                             firstRead: firstRead) { buf, off in
                let s = min(Int(off), wal.count)
                let n = min(buf.count, wal.count - s)
                wal.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[s..<(s + n)])) }
                return n
            }
            #expect(c == a, "front-to-back findCommittedEnd disagrees (firstRead \(firstRead))")
            if inBuffer {
                let n = Int(c.committedEnd) - 32
                #expect(Array(buffer[0..<n]) == Array(wal[32..<(32 + n)]))
            } else {
                #expect(wal.count - 32 > buffer.count / h.frameSize * h.frameSize, "started over although the WAL fits")
            }
        }
        return b
    }

    /// Feeds bytes to a segment writer (accepts both the array and the raw-buffer form of the writer).
    static func feed(_ write: ([UInt8]) throws -> Void, _ bytes: [UInt8]) throws { try write(bytes) }
    static func feed(_ write: (UnsafeRawBufferPointer) throws -> Void, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Creates a WAL-mode database with `transactions` committed transactions (some of them multi-frame)
    /// and returns the open connection; the WAL is never checkpointed while it stays open.
    static func makeRealDatabase(_ path: String, transactions: Int) throws -> SQLiteConnection {
        let c = try SQLiteConnection(path: path, create: true)
        try c.exec("PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;")
        try c.setPersistentWAL()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        for i in 0..<transactions {
            // Every third transaction spills onto overflow pages, so transactions have 1 to several frames.
            let size = i % 3 == 2 ? 9000 : 50
            try c.exec("INSERT INTO t(v) VALUES (randomblob(\(size)))")
        }
        return c
    }
}

// MARK: - Tests

@Suite("WAL format and scanner")
struct WALTests {
    @Test func headerChecksumTestVector() throws {
        let bytes: [UInt8] = [0x37, 0x7f, 0x06, 0x82, 0x00, 0x2d, 0xe2, 0x18, 0x00, 0x00, 0x10, 0x00,
                              0x00, 0x00, 0x00, 0x00, 0x52, 0x38, 0x2e, 0xac, 0x85, 0x7b, 0x1a, 0x4e]
        var s = WALChecksum(bigEndian: false)
        bytes.withUnsafeBytes { s.update($0) }
        #expect(s.s0 == 0x8115_3B65)
        #expect(s.s1 == 0x8717_8E8F)

        // The same vector as a whole header: checksum stored big-endian at 24..31.
        var full = bytes
        full += [0x81, 0x15, 0x3B, 0x65, 0x87, 0x17, 0x8E, 0x8F]
        let h = try WALHeader(bytes: full)
        #expect(h.pageSize == 4096)
        #expect(h.version == 3_007_000)
        #expect(h.salt1 == 0x5238_2EAC && h.salt2 == 0x857B_1A4E)
        #expect(h.checksum1 == 0x8115_3B65 && h.checksum2 == 0x8717_8E8F)
        #expect(!h.bigEndianChecksums)
        #expect(h.frameSize == 4120)
        #expect(h.bytes == full)
        #expect(h.checksumState == WALChecksum(bigEndian: false, s0: 0x8115_3B65, s1: 0x8717_8E8F))
    }

    @Test func checksumMatchesReferenceBothByteOrders() {
        let data = (0..<256).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
        for be in [false, true] {
            var s = WALChecksum(bigEndian: be, s0: 5, s1: 9)
            data.withUnsafeBytes { s.update($0) }
            let ref = WALFixture.checksum(data[...], bigEndian: be, from: (5, 9))
            #expect(s.s0 == ref.0 && s.s1 == ref.1)
        }
    }

    @Test func headerErrors() {
        var bad = WALFixture.header(salt1: 1, salt2: 2)
        bad[3] = 0x81
        #expect(throws: ReplicationError.self) { try WALHeader(bytes: bad) }
        do { _ = try WALHeader(bytes: bad); Issue.record("no error") } catch {
            #expect(error.oneLine == "invalid wal header magic: 377f0681")
        }
        var sum = WALFixture.header(salt1: 1, salt2: 2)
        sum[31] ^= 1
        do { _ = try WALHeader(bytes: sum); Issue.record("no error") } catch {
            #expect(error.oneLine.hasPrefix("invalid wal header checksum"))
        }
        #expect(throws: ReplicationError.self) { try WALHeader(bytes: Array(sum[0..<31])) }
        #expect(throws: ReplicationError.self) { try WALHeader(bytes: []) }
        // A big-endian header (magic ...83) with its own checksum parses.
        let be = WALFixture.header(salt1: 1, salt2: 2, bigEndian: true)
        #expect((try? WALHeader(bytes: be))?.bigEndianChecksums == true)
    }

    /// Found by fuzz/FuzzWAL: a header with a valid checksum but a page size that is not a multiple of 8 was accepted,
    /// and scanning its frames stopped the process (WALChecksum's precondition) instead of reporting corruption.
    @Test(arguments: [0, 1, 100, 1000, 513, 256, 131_072, 0xFFFF_FFFF] as [UInt32])
    func headerWithInvalidPageSizeIsCorrupt(pageSize: UInt32) {
        let h = WALFixture.header(pageSize: Int(pageSize), salt1: 1, salt2: 2)
        do { _ = try WALHeader(bytes: h); Issue.record("page size \(pageSize) accepted") } catch {
            #expect(error.oneLine == "invalid wal header page size: \(pageSize)")
        }
        for valid in [512, 1024, 4096, 65536] {
            #expect((try? WALHeader(bytes: WALFixture.header(pageSize: valid, salt1: 1, salt2: 2)))?.pageSize == UInt32(valid))
        }
    }

    @Test func frameHeaderFields() {
        let wal = WALFixture.makeWAL(frames: [(7, 0), (3, 9)])
        let fs = 24 + 512
        let (f0, f1) = wal.withUnsafeBytes { (WALFrameHeader($0, at: 32), WALFrameHeader($0, at: 32 + fs)) }
        #expect(f0.pageNumber == 7 && f0.commitSize == 0 && !f0.isCommit)
        #expect(f1.pageNumber == 3 && f1.commitSize == 9 && f1.isCommit)
        #expect(f0.salt1 == 0x1111_2222 && f0.salt2 == 0x3333_4444)
        #expect(f1.checksum1 == WALFixture.u32be(wal, 32 + fs + 16))
    }

    @Test(arguments: [false, true])
    func syntheticScanBothByteOrders(bigEndian: Bool) throws {
        let wal = WALFixture.makeWAL(bigEndian: bigEndian, frames: [(1, 0), (2, 2), (2, 2), (3, 0), (4, 4), (5, 0)])
        let fs = 24 + 512
        for per in [1, 2, 64] {
            let r = try WALFixture.scan(wal, framesPerRead: per)
            #expect(r.committedEnd == UInt64(32 + 5 * fs))
            #expect(r.committedFrames == 5)
            #expect(r.lastCommitFrame == Array(wal[(32 + 4 * fs)..<(32 + 5 * fs)]))
            let stored = (WALFixture.u32be(wal, 32 + 4 * fs + 16), WALFixture.u32be(wal, 32 + 4 * fs + 20))
            #expect(r.checksum.s0 == stored.0 && r.checksum.s1 == stored.1)
        }
    }

    @Test func verifyFramesStopsAtFirstBadFrame() throws {
        let wal = WALFixture.makeWAL(frames: [(1, 0), (2, 2), (3, 0)])
        let h = try WALHeader(bytes: wal)
        let fs = h.frameSize
        func verify(_ w: [UInt8]) -> (Int, Bool, WALChecksum) {
            var sum = h.checksumState
            let r = Array(w[32...]).withUnsafeBytes { WALScanner(header: h).verifyFrames($0, checksum: &sum) }
            return (r.frames, r.lastIsCommit, sum)
        }
        let all = verify(wal)
        #expect(all.0 == 3 && !all.1)
        var bad = wal
        bad[32 + 2 * fs + 30] ^= 1
        let two = verify(bad)
        #expect(two.0 == 2 && two.1)
        #expect(two.2 == WALChecksum(bigEndian: false, s0: WALFixture.u32be(wal, 32 + fs + 16), s1: WALFixture.u32be(wal, 32 + fs + 20)))
        // A trailing partial frame is not looked at.
        #expect(verify(Array(wal.dropLast(1))).0 == 2)
    }

    @Test func uncommittedFramesAreNotCounted() throws {
        // No commit at all: nothing is valid past the header.
        let none = try WALFixture.scan(WALFixture.makeWAL(frames: [(1, 0), (2, 0)]))
        #expect(none.committedEnd == 32 && none.committedFrames == 0 && none.lastCommitFrame == nil)
        let h = try WALHeader(bytes: WALFixture.makeWAL(frames: []))
        #expect(none.checksum == h.checksumState)
    }

    @Test func scanFromMiddleAndCommittedBytesCallback() throws {
        let wal = WALFixture.makeWAL(frames: [(1, 1), (2, 0), (3, 3), (4, 0), (5, 5), (6, 0)])
        let fs = 24 + 512
        let h = try WALHeader(bytes: wal)
        let start = 32 + fs
        let startSum = WALChecksum(bigEndian: false, s0: WALFixture.u32be(wal, 32 + 16), s1: WALFixture.u32be(wal, 32 + 20))
        var txs: [[UInt8]] = []
        let r = try WALScanner(header: h, framesPerRead: 3).scan(from: UInt64(start), checksum: startSum, read: { n, off in
            Array(wal[min(Int(off), wal.count)..<min(wal.count, Int(off) + n)])
        }, onCommittedBytes: { txs.append(Array($0)) })
        #expect(r.committedEnd == UInt64(32 + 5 * fs))
        #expect(r.committedFrames == 4)
        #expect(txs.count == 2)
        #expect(txs.map(\.count) == [2 * fs, 2 * fs])
        #expect(Array(txs.joined()) == Array(wal[start..<(32 + 5 * fs)]))
        // A wrong starting checksum invalidates the first frame.
        let bad = try WALScanner(header: h).scan(from: UInt64(start), checksum: h.checksumState) { n, off in
            Array(wal[min(Int(off), wal.count)..<min(wal.count, Int(off) + n)])
        }
        #expect(bad.committedEnd == UInt64(start) && bad.committedFrames == 0)
    }

    // MARK: Real SQLite WAL

    @Test func realWALScanFindsLastCommit() throws {
        let dir = try WALFixture.tempDir("wal")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conn = try WALFixture.makeRealDatabase(dir + "/db", transactions: 9)
        defer { conn.close() }
        let wal = try WALFixture.read(dir + "/db-wal")
        let h = try WALHeader(bytes: wal)
        #expect(h.pageSize == 4096)
        let layout = WALFixture.frameLayout(wal)
        #expect(layout.count >= 12)  // multi-frame transactions exist
        #expect(layout.last?.commit == true)
        for per in [1, 5, 64] {
            let r = try WALFixture.scan(wal, framesPerRead: per)
            #expect(r.committedEnd == UInt64(wal.count))
            #expect(r.committedFrames == layout.count)
            #expect(r.lastCommitFrame == Array(wal[(wal.count - h.frameSize)...]))
        }
    }

    @Test func realWALDamageEndsAtPreviousCommit() throws {
        let dir = try WALFixture.tempDir("wal")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conn = try WALFixture.makeRealDatabase(dir + "/db", transactions: 9)
        defer { conn.close() }
        let wal = try WALFixture.read(dir + "/db-wal")
        let fs = try WALHeader(bytes: wal).frameSize
        let layout = WALFixture.frameLayout(wal)
        // Damage each frame in turn: the valid WAL must end at the last commit before that frame.
        for (k, frame) in layout.enumerated() {
            let expected = UInt64(WALFixture.lastCommitEnd(wal, before: frame.offset))
            let expectedFrames = (Int(expected) - 32) / fs

            // Torn tail: the file ends in the middle of frame k.
            let torn = Array(wal[0..<(frame.offset + fs / 2)])
            let rt = try WALFixture.scan(torn)
            #expect(rt.committedEnd == expected, "torn at frame \(k)")
            #expect(rt.committedFrames == expectedFrames)

            // A flipped byte in the page data of frame k.
            var flipped = wal
            flipped[frame.offset + 24 + 100] ^= 0x40
            #expect(try WALFixture.scan(flipped).committedEnd == expected, "flipped page byte in frame \(k)")

            // A flipped byte in the checksummed part of the frame header (commit field).
            var flippedHeader = wal
            flippedHeader[frame.offset + 7] ^= 0x01
            #expect(try WALFixture.scan(flippedHeader).committedEnd == expected, "flipped header byte in frame \(k)")

            // Frame k carries other salts (a stale frame of an earlier WAL lifetime).
            var salted = wal
            salted[frame.offset + 11] &+= 1
            #expect(try WALFixture.scan(salted).committedEnd == expected, "salt-1 of frame \(k)")
            var salted2 = wal
            salted2[frame.offset + 15] &+= 1
            #expect(try WALFixture.scan(salted2).committedEnd == expected, "salt-2 of frame \(k)")
        }
    }

    @Test func realWALUncommittedTailIsIgnored() throws {
        let dir = try WALFixture.tempDir("wal")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conn = try WALFixture.makeRealDatabase(dir + "/db", transactions: 4)
        defer { conn.close() }
        let committed = try WALFixture.read(dir + "/db-wal")
        // A large transaction with a tiny page cache spills uncommitted frames into the WAL.
        try conn.exec("PRAGMA cache_size=2; BEGIN; "
            + "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) "
            + "INSERT INTO t(v) SELECT randomblob(3000) FROM c;")
        defer { try? conn.exec("ROLLBACK") }
        let spilled = try WALFixture.read(dir + "/db-wal")
        #expect(spilled.count > committed.count, "SQLite did not spill; test precondition")
        #expect(Array(spilled[0..<committed.count]) == committed)
        #expect(WALFixture.frameLayout(spilled).last?.commit == false)
        let r = try WALFixture.scan(spilled)
        #expect(r.committedEnd == UInt64(committed.count))
        #expect(r.lastCommitFrame == Array(committed[(committed.count - 4120)...]))
    }

    @Test func staleFramesOfOlderLifetimeEndTheWAL() throws {
        // A restarted WAL: new header, one new commit, then old frames with the previous salts.
        var old = WALFixture.makeWAL(salt1: 10, salt2: 20, frames: [(1, 0), (2, 2), (3, 3), (4, 4)])
        var restarted = WALFixture.header(sequence: 1, salt1: 11, salt2: 99)
        WALFixture.appendFrame(&restarted, page: 9, commit: 9, fill: 0xAA)
        let fs = 24 + 512
        old.replaceSubrange(0..<(32 + fs), with: restarted)
        let r = try WALFixture.scan(old)
        #expect(r.committedEnd == UInt64(32 + fs))
        #expect(r.committedFrames == 1)
    }
}

/// The one frame reader (restore's verifier, the live snapshot builder, the stream applier) and the one frame
/// chain (every scan): same answers as the scanner on a real WAL, and a clear error for each kind of damage.
@Suite("WAL frame reader")
struct WALFrameReaderTests {
    /// A real WAL (header and frames) and its parsed header.
    private func realWAL() throws -> (wal: [UInt8], header: WALHeader) {
        let dir = try WALFixture.tempDir("frames")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try WALFixture.makeRealDatabase(dir + "/db", transactions: 12)
        defer { c.close() }
        let wal = try WALFixture.read(dir + "/db-wal")
        return (wal, try WALHeader(bytes: Array(wal.prefix(walHeaderSize))))
    }

    /// Reads every frame of `bytes` (header included) with a reader; returns it and the page numbers.
    private func readAll(_ bytes: [UInt8], pageSize: Int, verify header: WALHeader?, chunk: Int = 1000) throws
        -> (reader: WALFrameReader, pages: [UInt32]) {
        var reader = WALFrameReader(pageSize: pageSize, chain: header.map { WALFrameChain(header: $0, checksum: $0.checksumState) })
        var at = 0
        let read: (UnsafeMutableRawBufferPointer) throws -> Int = { buf in
            let n = min(buf.count, chunk, bytes.count - at)
            bytes.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
            at += n
            return n
        }
        _ = try reader.readHeader(read)
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: reader.frameSize, alignment: 8)
        defer { frame.deallocate() }
        var pages: [UInt32] = []
        while let fh = try reader.next(into: frame, read) { pages.append(fh.pageNumber) }
        return (reader, pages)
    }

    @Test func readsWhatTheScannerFindsInShortReads() throws {
        let (wal, header) = try realWAL()
        let scan = try WALFixture.scan(wal)
        for chunk in [1, 7, 4096, 1 << 20] {
            let (reader, pages) = try readAll(wal, pageSize: Int(header.pageSize), verify: header, chunk: chunk)
            #expect(reader.frames == scan.committedFrames)
            #expect(reader.endsWithCommit)
            #expect(reader.bytesRead == scan.committedEnd)
            #expect(reader.chain?.checksum == scan.checksum)
            #expect(pages.allSatisfy { $0 > 0 })
        }
    }

    @Test func eachKindOfDamageIsNamed() throws {
        let (wal, header) = try realWAL()
        let ps = Int(header.pageSize), fs = header.frameSize
        func message(_ bytes: [UInt8], verify: Bool = true, pageSize: Int? = nil) -> String {
            do {
                _ = try readAll(bytes, pageSize: pageSize ?? ps, verify: verify ? header : nil)
                return "no error"
            } catch let e as ReplicationError {
                return e.code == .corrupt ? e.message : "code \(e.code)"
            } catch { return "\(error)" }
        }
        #expect(message(Array(wal.dropLast(10))) == "ends with a partial frame of \(fs - 10) bytes")
        var page0 = wal
        for i in 0..<4 { page0[walHeaderSize + fs + i] = 0 }
        #expect(message(page0, verify: false) == "frame 2 has page number 0")
        var salt = wal
        salt[walHeaderSize + 2 * fs + 8] ^= 1
        #expect(message(salt) == "frame 3 salt mismatch")
        #expect(message(salt, verify: false) == "no error", "without a chain only the framing is checked")
        var page = wal
        page[walHeaderSize + 3 * fs + 100] ^= 0xFF
        #expect(message(page) == "frame 4 checksum mismatch")
        #expect(message(wal, pageSize: ps * 2) == "page size mismatch: \(ps * 2) <> \(ps)")
        #expect(message(Array(wal.prefix(20))) == "WAL header is 20 bytes")
    }

    @Test func theChainAcceptsExactlyTheScannersFrames() throws {
        let (wal, header) = try realWAL()
        var chain = WALFrameChain(header: header, checksum: header.checksumState)
        var running = header.checksumState
        let body = Array(wal[walHeaderSize...])
        let verified = body.withUnsafeBytes { WALScanner(header: header).verifyFrames($0, checksum: &running) }
        var accepted = 0
        body.withUnsafeBytes { raw in
            var base = 0
            while base + header.frameSize <= raw.count,
                  chain.accept(UnsafeRawBufferPointer(rebasing: raw[base..<(base + header.frameSize)])) {
                accepted += 1
                base += header.frameSize
            }
        }
        #expect(accepted == verified.frames)
        #expect(chain.checksum == running)
        let first = body.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[0..<header.frameSize]) }
        #expect(chain.rejection(of: first) != nil, "a frame already in the chain does not continue it")
    }
}
