import Foundation
import Testing
import TestFixtures
@testable import ReplicationKit

/// What a replicating launcher keeps resident (issue 15, "Peak RSS while replicating"): the sync's WAL scan reads
/// little past the new frames.
@Suite struct ReplicationMemoryTests {
    /// The sync sizes its first read from the last batch; what follows the new frames (often stale frames of an
    /// earlier WAL lifetime) is read 16 frames at a time, not twice the batch again, so a large scan buffer is
    /// touched (made resident) only about as far as the batch reaches.
    @Test func scanReadsLittlePastTheNewFrames() throws {
        let batch = 40
        var wal = WALFixture.makeWAL(frames: (1...UInt32(batch)).map { ($0, $0) })
        let fs = 24 + 512
        // 200 stale frames: bytes that do not continue the checksum chain.
        wal += [UInt8](repeating: 0x5A, count: 200 * fs)
        let h = try WALHeader(bytes: wal)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * fs, alignment: 16)
        defer { buffer.deallocate() }
        var furthest = 0
        let (r, inBuffer) = try WALScanner(header: h).findCommittedEnd(
            from: 32, checksum: h.checksumState, buffer: buffer, firstRead: batch * fs) { buf, off in
            let s = Int(off), n = min(buf.count, wal.count - s)
            wal.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[s..<(s + n)])) }
            furthest = max(furthest, s + n)
            return n
        }
        #expect(r.committedEnd == UInt64(32 + batch * fs))
        #expect(inBuffer)
        #expect(furthest <= 32 + (batch + 16) * fs, "read up to frame \((furthest - 32) / fs) for a batch of \(batch)")
    }
}

/// The sync's WAL scan buffer is a view of one anonymous mapping per busy database (RealWAL), whatever pool thread
/// runs the sync: the next sync gets the same pages without a new allocation, only the pages a scan writes become
/// resident, and its pages go when it is released.
@Suite struct ScanBufferMappingTests {
    /// Pages of `region` resident now (mincore on our own mapping).
    static func residentPages(_ region: UnsafeMutableRawBufferPointer) -> Int {
        let page = RealWAL.pageSize
        var vec = [UInt8](repeating: 0, count: (region.count + page - 1) / page)
        let rc = mincore(region.baseAddress!, region.count, &vec)
        #expect(rc == 0, "mincore: errno \(errno)")
        return vec.count { $0 & 1 != 0 }
    }

    @Test func reusedAcrossSyncsAndOnlyTouchedPagesAreResident() throws {
        let wal = RealWAL(path: "/nonexistent-wal", keepBufferUntilIdle: true)
        let fs = 4096 + 24
        let first = wal.scanBuffer(frameSize: fs)
        #expect(first.count == max(RealWAL.bufferSize, 64 * fs))
        let region = try #require(wal.mappedRegion)
        #expect(region.count >= first.count && region.count - first.count < RealWAL.pageSize)
        #expect(Self.residentPages(region) == 0, "an untouched mapping is resident")
        memset(first.baseAddress!, 0x5A, 100 * 1024)
        #expect(Self.residentPages(region) == 100 * 1024 / RealWAL.pageSize, "pages no scan wrote are resident")

        // The next sync: the same mapping, the pages already written still there.
        let again = wal.scanBuffer(frameSize: fs)
        #expect(again.baseAddress == first.baseAddress && again.count == first.count, "a new allocation")
        #expect(again.load(fromByteOffset: 1000, as: UInt8.self) == 0x5A)

        // Pages of 64 KiB: 64 frames need a larger mapping.
        let large = wal.scanBuffer(frameSize: 65536 + 24)
        #expect(large.count == 64 * (65536 + 24))
        #expect(try #require(wal.mappedRegion).count >= large.count)

        // A small batch keeps the buffer (busy database) ...
        wal.lastCopyBytes = 100
        wal.endSync()
        #expect(wal.holdsBuffer)
        // ... until the idle release.
        wal.releaseBuffer()
        #expect(!wal.holdsBuffer && wal.mappedRegion == nil)

        // Without the idle release, a small batch gives it back at once.
        let eager = RealWAL(path: "/nonexistent-wal")
        _ = eager.scanBuffer(frameSize: fs)
        eager.lastCopyBytes = 100
        eager.endSync()
        #expect(!eager.holdsBuffer)
    }
}

/// The sync's one-pass copy (CommittedFrameReader): the bytes it returns are exactly the WAL's committed frames, in
/// order, through a buffer much smaller than the batch; a transaction longer than the buffer is reported, not split.
@Suite struct CommittedFrameReaderTests {
    /// Reads `wal` with a buffer of `bufferFrames` frames; returns what it returned and the reader.
    static func readAll(_ wal: [UInt8], bufferFrames: Int, firstRead: Int) throws -> ([UInt8], CommittedFrameReader) {
        let h = try WALHeader(bytes: wal)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferFrames * h.frameSize + 100, alignment: 16)
        defer { buffer.deallocate() }
        var reader = CommittedFrameReader(scanner: WALScanner(header: h), from: 32, checksum: h.checksumState,
                                          buffer: buffer, firstRead: firstRead) { buf, off in
            let s = min(Int(off), wal.count), n = min(buf.count, wal.count - s)
            wal.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[s..<(s + n)])) }
            return n
        }
        var out: [UInt8] = []
        while let bytes = try reader.next() { out += bytes }
        return (out, reader)
    }

    @Test func returnsExactlyTheCommittedFramesThroughASmallBuffer() throws {
        // Transactions of 1 to 3 frames, 60 frames in all, then an open transaction and stale bytes.
        var frames: [(UInt32, UInt32)] = []
        for i in 1...60 { frames.append((UInt32(i), i % 3 == 0 || i % 7 == 0 ? UInt32(i) : 0)) }
        frames.append((61, 0))
        var wal = WALFixture.makeWAL(frames: frames)
        wal += [UInt8](repeating: 0x33, count: 5 * (24 + 512))
        let h = try WALHeader(bytes: wal)
        let fs = h.frameSize
        let committed = 32 + 60 * fs  // frame 60 is the last commit
        let whole = try WALFixture.scan(wal)
        for bufferFrames in [4, 5, 16, 200] {
            for firstRead in [1, 10 * fs, 1 << 30] {
                let (out, reader) = try Self.readAll(wal, bufferFrames: bufferFrames, firstRead: firstRead)
                #expect(!reader.overflow, "buffer of \(bufferFrames) frames")
                #expect(out == Array(wal[32..<committed]), "buffer of \(bufferFrames) frames, first read \(firstRead)")
                #expect(reader.result == whole, "buffer of \(bufferFrames) frames, first read \(firstRead)")
            }
        }
        #expect(whole.committedEnd == UInt64(committed))
    }

    @Test func aTransactionLongerThanTheBufferIsReportedNotSplit() throws {
        // Two committed frames, then a transaction of 10 frames, then one more.
        let frames: [(UInt32, UInt32)] = [(1, 1), (2, 2)] + (3...11).map { ($0, 0) } + [(12, 12), (13, 13)]
        let wal = WALFixture.makeWAL(frames: frames)
        let fs = 24 + 512
        let (out, reader) = try Self.readAll(wal, bufferFrames: 4, firstRead: fs)
        #expect(reader.overflow)
        #expect(out == Array(wal[32..<(32 + 2 * fs)]), "returned more than the commits before the long transaction")
        #expect(reader.result.committedEnd == UInt64(32 + 2 * fs))
        // With room for it, the same WAL is returned whole.
        let (all, r2) = try Self.readAll(wal, bufferFrames: 12, firstRead: fs)
        #expect(!r2.overflow && all == Array(wal[32..<(32 + 13 * fs)]))
    }
}

/// Hundreds of reads through a buffer of a frame or two (a long transaction, a long batch): the read size stops
/// growing at the buffer's size (it once doubled without bound, and overflowed after some 50 reads).
@Suite struct ManyReadsTests {
    @Test func longScansThroughTinyBuffersEndWhereTheWALEnds() throws {
        let frames: [(UInt32, UInt32)] = (1...250).map { ($0, $0 % 50 == 0 ? $0 : 0) }  // the fixture's fill is a byte
        let wal = WALFixture.makeWAL(frames: frames)
        let h = try WALHeader(bytes: wal)
        let fs = h.frameSize
        let read: (UnsafeMutableRawBufferPointer, UInt64) throws -> Int = { buf, off in
            let s = min(Int(off), wal.count), n = min(buf.count, wal.count - s)
            wal.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[s..<(s + n)])) }
            return n
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * fs, alignment: 16)
        defer { buffer.deallocate() }
        let (r, _) = try WALScanner(header: h).findCommittedEnd(from: 32, checksum: h.checksumState, buffer: buffer,
                                                                firstRead: fs, read: read)
        #expect(r.committedEnd == UInt64(32 + 250 * fs))
        // Every frame a commit: the reader hands out each one through a one-frame buffer.
        let single = WALFixture.makeWAL(frames: (1...250).map { ($0, $0) })
        let (out, reader) = try CommittedFrameReaderTests.readAll(single, bufferFrames: 1, firstRead: fs)
        #expect(!reader.overflow && out == Array(single[32...]))
    }
}
