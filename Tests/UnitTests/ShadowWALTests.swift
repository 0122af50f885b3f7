import CLZ4
import Foundation
import Testing
@testable import ReplicationKit

/// A ShadowWAL in a fresh temporary directory.
private struct Fixture {
    let dir: String
    let shadow: ShadowWAL
    let g = Generation(name: "29cf4bced74e92ab")!

    init() throws {
        dir = try WALFixture.tempDir("shadow")
        shadow = ShadowWAL(meta: MetaDirectory(databasePath: dir + "/db"))
    }

    var meta: MetaDirectory { shadow.meta }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes `bytes[range]` as the segment at `range.lowerBound`.
    @discardableResult
    func put(_ bytes: [UInt8], _ range: Range<Int>, index: UInt32) throws -> ShadowSegment {
        try shadow.writeSegment(g, index: index, offset: UInt64(range.lowerBound)) { write in
            try WALFixture.feed(write, Array(bytes[range]))
        }
    }

    /// Writes a WAL as segments split at the given offsets (each must be a commit boundary or 32).
    func putSplit(_ wal: [UInt8], at cuts: [Int], index: UInt32) throws {
        let bounds = [0] + cuts + [wal.count]
        for i in 0..<(bounds.count - 1) where bounds[i] < bounds[i + 1] { try put(wal, bounds[i]..<bounds[i + 1], index: index) }
    }

    func files(under path: String) -> [String] {
        (FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? []).sorted()
    }
}

@Suite("ShadowWAL")
struct ShadowWALTests {
    private let fs = 24 + 512

    @Test func writeSegmentCompressesAndRenames() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 / 3) }
        let seg = try f.shadow.writeSegment(f.g, index: 3, offset: 0x2050) { write in
            try WALFixture.feed(write, Array(data[0..<4000]))
            try WALFixture.feed(write, [])
            try WALFixture.feed(write, Array(data[4000...]))
        }
        #expect(seg == ShadowSegment(index: 3, offset: 0x2050, path: f.meta.segmentPath(f.g, 3, 0x2050)))
        #expect(seg.path == f.dir + "/db-litestream/generations/29cf4bced74e92ab/wal/0000000000000003/0000000000002050.wal.lz4")
        let raw = try WALFixture.read(seg.path)
        #expect(Array(raw.prefix(4)) == [0x04, 0x22, 0x4D, 0x18])
        #expect(try LZ4.decompress(raw) == data)
        #expect(try f.shadow.readSegment(seg) == data)
        #expect(f.files(under: f.meta.indexDir(f.g, 3)) == ["0000000000002050.wal.lz4"])
    }

    /// A replica decodes the bytes this process kept of a segment it just wrote; the file is only flushed.
    @Test func keptBytesAreDecodedInsteadOfTheFile() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7 / 5) }
        let seg = try f.shadow.writeSegment(f.g, index: 0, offset: 32, keepCopy: true) { write in
            try WALFixture.feed(write, data)
        }
        let kept = try #require(seg.compressed)
        #expect(kept == (try WALFixture.read(seg.path)))
        // Damage the file: the kept bytes still decode (the file is not read), the file alone does not.
        var raw = kept
        raw[raw.count / 2] ^= 0xFF
        try WALFixture.write(seg.path, raw)
        var fromMemory: [UInt8] = []
        try f.shadow.openSegment(seg, durable: true).forEachChunk { fromMemory += $0 }
        #expect(fromMemory == data)
        var fileOnly = seg
        fileOnly.compressed = nil
        #expect(throws: (any Error).self) { try f.shadow.readSegment(fileOnly) }
    }

    /// A replica copies a segment's blocks into its object: from the bytes kept in memory without reading the file,
    /// from the file (listed, or with its copy dropped) after decoding it once to check its content checksum.
    @Test func copyBlocksTakesTheSegmentsBlocksFromMemoryOrTheCheckedFile() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = (0..<150_000).map { UInt8(truncatingIfNeeded: ($0 &* 7 / 5) ^ ($0 >> 9)) }
        let seg = try f.shadow.writeSegment(f.g, index: 0, offset: 32, keepCopy: true) { write in
            try WALFixture.feed(write, data)
        }
        #expect(seg.length == UInt64(data.count))
        let raw = try WALFixture.read(seg.path)
        let expected = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73] + raw[7..<(raw.count - 8)] + [0, 0, 0, 0]
        var fileOnly = seg
        fileOnly.compressed = nil
        let listed = try #require(try f.shadow.segments(f.g, index: 0).first)
        #expect(listed.length == nil && listed.compressed == nil)
        func copy(_ s: ShadowSegment) throws -> (UInt64?, [UInt8]) {
            var object: [UInt8] = []
            let encoder = try LZ4FrameEncoder(contentChecksum: false) { object.append(contentsOf: $0) }
            let n = try f.shadow.copyBlocks(of: s, durable: true, to: encoder)
            try encoder.finish()
            return (n, object)
        }
        for s in [seg, fileOnly, listed] {
            let (n, object) = try copy(s)
            #expect(n == UInt64(data.count))
            #expect(object == expected)
        }
        // A damaged file: the kept bytes are still copied (the file is not read), the file alone is refused.
        var damaged = raw
        damaged[damaged.count - 1] ^= 0x01
        try WALFixture.write(seg.path, damaged)
        #expect(try copy(seg).1 == expected)
        for s in [fileOnly, listed] {
            do {
                _ = try copy(s)
                Issue.record("a segment file with a wrong content checksum was copied")
            } catch {
                #expect("\(error)".contains(seg.path) && "\(error)".contains("ERROR_contentChecksum_invalid"), "\(error)")
            }
        }
    }

    /// A segment whose frame has linked blocks (not one this project writes, but a valid LZ4 frame) is not copied:
    /// nil, with nothing appended, so the replica decodes it instead.
    @Test func aSegmentWithLinkedBlocksIsLeftToTheDecoder() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let seg = try f.put((0..<200_000).map { UInt8(truncatingIfNeeded: $0 / 7) }, 0..<200_000, index: 0)
        let data = try f.shadow.readSegment(seg)
        try WALFixture.write(seg.path, liblz4OneShot(data, blockSize: LZ4F_max64KB, linked: true))
        var object: [UInt8] = []
        let encoder = try LZ4FrameEncoder(contentChecksum: false) { object.append(contentsOf: $0) }
        #expect(try f.shadow.copyBlocks(of: seg, durable: false, to: encoder) == nil)
        try encoder.finish()
        #expect(object == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73, 0, 0, 0, 0])
        #expect(try f.shadow.readSegment(seg) == data)
    }

    @Test func failedSegmentWriteLeavesNothing() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try f.shadow.writeSegment(f.g, index: 0, offset: 32) { write in
                try WALFixture.feed(write, [1, 2, 3])
                throw Boom()
            }
        }
        #expect(f.files(under: f.meta.indexDir(f.g, 0)).isEmpty)
        #expect(try f.shadow.segments(f.g, index: 0).isEmpty)
    }

    @Test func indexesAreSortedNumericallyWithLenientNames() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let wal = f.meta.walDir(f.g)
        for name in ["0000000000000002", "a", "1f", "0000000000000009", "100", "zz", "80000000", "7fffffff", "-1"] {
            try FileManager.default.createDirectory(atPath: wal + "/" + name, withIntermediateDirectories: true)
        }
        #expect(try f.shadow.indexes(f.g) == [2, 9, 0xa, 0x1f, 0x100, 0x7fff_ffff])
        // A missing generation has no indexes.
        #expect(try f.shadow.indexes(Generation(value: 7)).isEmpty)
    }

    @Test func segmentsAreSortedNumericallyAndIgnoreOtherFiles() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let dir = f.meta.indexDir(f.g, 1)
        let names = ["100.wal.lz4", "0000000000000000.wal.lz4", "20.wal.lz4", "0000000000001038.wal.lz4",
                     "0000000000002050.wal.lz4.tmp", "0000000000002050.wal.tmp", "junk.wal.lz4", "0000000000003068.wal",
                     "readme", ".wal.lz4"]
        for n in names { try WALFixture.write(dir + "/" + n, [1]) }
        let segs = try f.shadow.segments(f.g, index: 1)
        #expect(segs.map(\.offset) == [0, 0x20, 0x100, 0x1038])
        #expect(segs.allSatisfy { $0.index == 1 })
        #expect(segs.map { ($0.path as NSString).lastPathComponent }
                == ["0000000000000000.wal.lz4", "20.wal.lz4", "100.wal.lz4", "0000000000001038.wal.lz4"])
        #expect(try f.shadow.segments(f.g, index: 2).isEmpty)
    }

    @Test func generationAndPositionFiles() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        #expect(try f.shadow.currentGeneration() == nil)
        try f.shadow.setCurrentGeneration(f.g)
        #expect(try WALFixture.read(f.meta.generationFile) == Array("29cf4bced74e92ab\n".utf8))
        #expect(!FileManager.default.fileExists(atPath: f.meta.generationFile + ".tmp"))
        #expect(try f.shadow.currentGeneration() == f.g)
        try WALFixture.write(f.meta.generationFile, Array("  29cf4bced74e92ab \n\n".utf8))
        #expect(try f.shadow.currentGeneration() == f.g)
        try WALFixture.write(f.meta.generationFile, Array("29cf4bced74e92\n".utf8))
        #expect(try f.shadow.currentGeneration() == nil)
        try f.shadow.clearGeneration()
        try f.shadow.clearGeneration()  // missing is fine
        #expect(try f.shadow.currentGeneration() == nil)

        let pos = WALPosition(generation: f.g, index: 3, offset: 0x2050)
        let file = PositionFile(path: f.meta.positionFile, mode: 0o600)
        try file.write(pos)
        try file.write(WALPosition(generation: f.g, index: 3, offset: 0x20))
        file.close()
        #expect(try WALFixture.read(f.meta.positionFile) == Array("29cf4bced74e92ab/0000000000000003:0000000000000020\n".utf8))
    }

    @Test(arguments: [false, true])
    func recoverCursorReproducesState(bigEndian: Bool) throws {
        let f = try Fixture()
        defer { f.cleanup() }
        // An older index with another lifetime, a newer empty index directory: both ignored.
        let older = WALFixture.makeWAL(salt1: 1, salt2: 1, frames: [(1, 1)])
        try f.putSplit(older, at: [32], index: 3)
        try FileManager.default.createDirectory(atPath: f.meta.indexDir(f.g, 9), withIntermediateDirectories: true)

        let wal = WALFixture.makeWAL(salt1: 2, salt2: 5, bigEndian: bigEndian, frames: [(1, 0), (2, 2), (3, 3), (4, 0), (5, 5)])
        try f.putSplit(wal, at: [32, 32 + 2 * fs, 32 + 3 * fs], index: 4)
        let c = try #require(try f.shadow.recoverCursor(f.g))
        #expect(c.position == WALPosition(generation: f.g, index: 4, offset: UInt64(wal.count)))
        #expect(c.header == (try WALHeader(bytes: wal)))
        #expect(c.header.bigEndianChecksums == bigEndian)
        let sumAt = wal.count - fs + 16
        #expect(c.checksum == WALChecksum(bigEndian: bigEndian, s0: WALFixture.u32be(wal, sumAt), s1: WALFixture.u32be(wal, sumAt + 4)))
        #expect(c.lastFrame == WALFrameFingerprint(Array(wal[(wal.count - fs)...])))
    }

    @Test func recoverCursorFromRealWAL() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let conn = try WALFixture.makeRealDatabase(f.dir + "/src.db", transactions: 8)
        defer { conn.close() }
        let wal = try WALFixture.read(f.dir + "/src.db-wal")
        let h = try WALHeader(bytes: wal)
        // Segment 0 holds header + first transactions (as a replica segment may), then one segment per commit.
        let commits = WALFixture.frameLayout(wal).filter(\.commit).map { $0.offset + h.frameSize }
        try f.putSplit(wal, at: Array(commits.dropLast().dropFirst(2)), index: 0)
        let c = try #require(try f.shadow.recoverCursor(f.g))
        let scan = try WALFixture.scan(wal)
        #expect(c.position.offset == UInt64(wal.count))
        #expect(c.position.index == 0)
        #expect(c.header == h)
        #expect(c.checksum == scan.checksum)
        #expect(c.lastFrame == scan.lastCommitFrame.map(WALFrameFingerprint.init))
    }

    @Test func recoverHeaderOnlyAndEmpty() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        #expect(try f.shadow.recoverCursor(f.g) == nil)
        try FileManager.default.createDirectory(atPath: f.meta.indexDir(f.g, 0), withIntermediateDirectories: true)
        #expect(try f.shadow.recoverCursor(f.g) == nil)

        let wal = WALFixture.makeWAL(frames: [])
        try f.put(wal, 0..<32, index: 2)
        let c = try #require(try f.shadow.recoverCursor(f.g))
        #expect(c.position == WALPosition(generation: f.g, index: 2, offset: 32))
        #expect(c.lastFrame == nil)
        #expect(c.checksum == c.header.checksumState)
    }

    @Test func recoverFailsOnGap() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let wal = WALFixture.makeWAL(frames: [(1, 1), (2, 2), (3, 3)])
        try f.put(wal, 0..<32, index: 0)
        try f.put(wal, 32..<(32 + fs), index: 0)
        try f.put(wal, (32 + 2 * fs)..<wal.count, index: 0)  // frame 1 is missing
        #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
    }

    @Test func recoverFailsWithoutOffsetZero() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let wal = WALFixture.makeWAL(frames: [(1, 1)])
        try f.put(wal, 32..<wal.count, index: 0)
        #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
    }

    @Test func recoverFailsOnOverlap() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let wal = WALFixture.makeWAL(frames: [(1, 1), (2, 2)])
        try f.put(wal, 0..<(32 + 2 * fs), index: 0)
        try f.put(wal, (32 + fs)..<wal.count, index: 0)
        #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
    }

    @Test func recoverFailsOnCorruptSegments() throws {
        let wal = WALFixture.makeWAL(frames: [(1, 0), (2, 2), (3, 3)])
        // Not LZ4 at all.
        do {
            let f = try Fixture()
            defer { f.cleanup() }
            try f.putSplit(wal, at: [32], index: 0)
            try WALFixture.write(f.meta.segmentPath(f.g, 0, 32), [1, 2, 3, 4, 5, 6, 7, 8])
            #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
        }
        // Truncated LZ4 frame.
        do {
            let f = try Fixture()
            defer { f.cleanup() }
            try f.putSplit(wal, at: [32], index: 0)
            let path = f.meta.segmentPath(f.g, 0, 32)
            let raw = try WALFixture.read(path)
            try WALFixture.write(path, Array(raw.dropLast(10)))
            #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
        }
        // Valid LZ4, but a WAL frame whose checksum does not chain.
        do {
            let f = try Fixture()
            defer { f.cleanup() }
            var bad = wal
            bad[32 + fs + 24 + 5] ^= 1
            try f.putSplit(bad, at: [32], index: 0)
            #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
        }
        // A partial trailing frame.
        do {
            let f = try Fixture()
            defer { f.cleanup() }
            try f.putSplit(Array(wal.dropLast(8)), at: [32], index: 0)
            #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
        }
        // A segment ending on an uncommitted frame.
        do {
            let f = try Fixture()
            defer { f.cleanup() }
            try f.putSplit(WALFixture.makeWAL(frames: [(1, 0), (2, 2), (3, 0)]), at: [32], index: 0)
            #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
        }
        // A corrupt header segment.
        do {
            let f = try Fixture()
            defer { f.cleanup() }
            var bad = wal
            bad[25] ^= 1
            try f.putSplit(bad, at: [32], index: 0)
            #expect(throws: (any Error).self) { try f.shadow.recoverCursor(f.g) }
        }
    }

    @Test func removeTemporaryFilesDeletesOnlyTmp() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let root = f.meta.root
        let keep = ["generation", "position", "generations/29cf4bced74e92ab/wal/0000000000000000/0000000000000000.wal.lz4",
                    "generations/29cf4bced74e92ab/wal/0000000000000000/tmp", "generations/x.tmp.bak", "generations/tmpx"]
        let drop = ["generation.tmp", "generations/29cf4bced74e92ab/wal/0000000000000000/0000000000000020.wal.lz4.tmp",
                    "generations/29cf4bced74e92ab/wal/0000000000000000/0000000000000020.wal.tmp",
                    "generations/0000000000000001/wal/0000000000000005/.tmp", "generations/dir.tmp/inner.tmp"]
        for p in keep + drop { try WALFixture.write(root + "/" + p, [0]) }
        try f.shadow.removeTemporaryFiles()
        for p in keep { #expect(FileManager.default.fileExists(atPath: root + "/" + p), "\(p) kept") }
        for p in drop { #expect(!FileManager.default.fileExists(atPath: root + "/" + p), "\(p) removed") }
        // Directories stay (only files are removed).
        #expect(FileManager.default.fileExists(atPath: root + "/generations/dir.tmp"))
        // A missing metadata directory is not an error.
        let empty = ShadowWAL(meta: MetaDirectory(databasePath: f.dir + "/none"))
        try empty.removeTemporaryFiles()
    }

    @Test func removeGenerationsAndIndexes() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let other = Generation(value: 1)
        let wal = WALFixture.makeWAL(frames: [(1, 1)])
        for g in [f.g, other] {
            for i: UInt32 in [0, 1] {
                _ = try f.shadow.writeSegment(g, index: i, offset: 0) { try WALFixture.feed($0, Array(wal[0..<32])) }
            }
        }
        #expect(try f.shadow.removeGenerations(except: f.g) == [other.name])
        #expect(try f.shadow.indexes(other).isEmpty)
        try f.shadow.removeIndex(f.g, 0)
        #expect(try f.shadow.indexes(f.g) == [1])
        #expect(try f.shadow.removeGenerations(except: nil) == [f.g.name])
        #expect(try f.shadow.removeGenerations(except: nil).isEmpty)
    }

    @Test func metaDirectoryPaths() {
        let m = MetaDirectory(databasePath: "/tmp/db")
        let g = Generation(value: 0x1234)
        #expect(m.walPath == "/tmp/db-wal")
        #expect(m.root == "/tmp/db-litestream")
        #expect(m.generationFile == "/tmp/db-litestream/generation")
        #expect(m.positionFile == "/tmp/db-litestream/position")
        #expect(m.generationDir(g) == "/tmp/db-litestream/generations/0000000000001234")
        #expect(m.walDir(g) == "/tmp/db-litestream/generations/0000000000001234/wal")
        #expect(m.segmentPath(g, 3, 0x2050)
                == "/tmp/db-litestream/generations/0000000000001234/wal/0000000000000003/0000000000002050.wal.lz4")
    }
}
