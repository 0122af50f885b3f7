import CLZ4
import Foundation
import Logging
import Testing
@testable import ReplicationKit

/// Text-like bytes (compress to roughly half), deterministic.
private func textBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    let words = ["select", "insert", "row", "page", "commit", "wal", "alpha", "beta", "42", " ", "\n", "lorem ipsum"]
        .map { Array($0.utf8) }
    var state = seed
    var out: [UInt8] = []
    out.reserveCapacity(count + 16)
    while out.count < count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        out += words[Int(state >> 33) % words.count]
        if state & 0xF == 0 { out.append(UInt8(truncatingIfNeeded: state >> 40)) }
    }
    return Array(out.prefix(count))
}

/// One frame written by liblz4's one-shot frame API with the given block size and flags (shared with LZ4Tests).
func liblz4OneShot(_ data: [UInt8], blockSize: LZ4F_blockSizeID_t, linked: Bool = false, blockChecksum: Bool = false,
                   contentChecksum: Bool = true, contentSize: Bool = false) -> [UInt8] {
    var p = LZ4F_preferences_t()
    p.frameInfo.blockSizeID = blockSize
    p.frameInfo.blockMode = linked ? LZ4F_blockLinked : LZ4F_blockIndependent
    p.frameInfo.contentChecksumFlag = contentChecksum ? LZ4F_contentChecksumEnabled : LZ4F_noContentChecksum
    p.frameInfo.blockChecksumFlag = blockChecksum ? LZ4F_blockChecksumEnabled : LZ4F_noBlockChecksum
    p.frameInfo.contentSize = contentSize ? UInt64(data.count) : 0
    var out = [UInt8](repeating: 0, count: LZ4F_compressFrameBound(data.count, &p))
    let n = out.withUnsafeMutableBytes { o in
        data.withUnsafeBytes { i in LZ4F_compressFrame(o.baseAddress, o.count, i.baseAddress, i.count, &p) }
    }
    precondition(LZ4F_isError(n) == 0)
    return Array(out.prefix(n))
}

private let small = LZ4ParallelDecoder.Tuning(jobInput: 40 << 10, jobBlocks: 3, output: 512 << 10, readBuffer: 1000)

/// Decodes `stream` into a temporary file (read in pieces of `chunk` bytes) and returns the file's bytes.
private func decode(_ stream: [UInt8], workers: Int = 3, tuning: LZ4ParallelDecoder.Tuning = small,
                    chunk: Int = 7919) throws -> [UInt8] {
    let path = NSTemporaryDirectory() + "/lz4-parallel-" + UUID().uuidString
    let fd = try FileDescriptor.create(path, mode: 0o600)
    defer { try? fd.close(); try? FileSystem.remove(path) }
    var position = 0
    var lastProgress: (UInt64, UInt64) = (0, 0)
    let written = try LZ4ParallelDecoder.decode(source: { buffer in
        let n = min(buffer.count, chunk, stream.count - position)
        stream.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: n) }
        position += n
        return n
    }, to: fd.raw, path: path, workers: workers, tuning: tuning) { lastProgress = ($0, $1) }
    let bytes = try FileSystem.readSmallFile(path) ?? []
    #expect(written == UInt64(bytes.count))
    #expect(lastProgress == (UInt64(stream.count), written))
    return bytes
}

@Suite("LZ4ParallelDecoder")
struct LZ4ParallelDecoderTests {
    @Test func xxh32MatchesKnownDigests() {
        // Reference values of the XXH32 specification's implementation (seed 0).
        #expect(XXH32.digest(UnsafeRawBufferPointer(start: nil, count: 0)) == 0x02CC_5D05)
        let abc = Array("abc".utf8)
        #expect(abc.withUnsafeBytes { XXH32.digest($0) } == 0x32D1_53FF)
        // Streaming in odd pieces gives the one-shot digest.
        let data = textBytes(100_003, seed: 9)
        var h = XXH32()
        var i = 0
        while i < data.count {
            let n = min(1 + i % 37, data.count - i)
            data.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[i..<i + n])) }
            i += n
        }
        #expect(h.finish() == data.withUnsafeBytes { XXH32.digest($0) })
    }

    @Test(arguments: [1, 2, 4])
    func ourFramesWithManyBlocksAndAPartialLastBlock(workers: Int) throws {
        // Our encoder writes 64 KiB blocks under a 4 MiB block-size ID; 1 MiB + a partial block.
        let data = textBytes((1 << 20) + 12_345, seed: UInt64(workers))
        let stream = try LZ4.compress(data)
        #expect(Array(stream.prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x64, 0x70, 0xB9])
        #expect(try decode(stream, workers: workers) == data)
        #expect(try decode(stream, workers: workers, tuning: LZ4ParallelDecoder.Tuning()) == data)
    }

    @Test func upstreamStyleFourMiBBlocksWithBlockChecksumsAndContentSize() throws {
        let data = textBytes((9 << 20) + 77, seed: 3)
        let stream = liblz4OneShot(data, blockSize: LZ4F_max4MB, blockChecksum: true, contentSize: true)
        #expect(try decode(stream, tuning: LZ4ParallelDecoder.Tuning()) == data)
        // A worker buffer smaller than a block's output: the job is written in pieces, in order.
        let tiny = LZ4ParallelDecoder.Tuning(jobInput: 1 << 20, jobBlocks: 8, output: 4 << 20, readBuffer: 4096)
        #expect(try decode(stream, tuning: tiny) == data)
    }

    @Test func aZeroContentSizeMeansUnknownAsInLiblz4() throws {
        let data = textBytes(100_000, seed: 21)
        var stream = liblz4OneShot(data, blockSize: LZ4F_max64KB, contentSize: true)
        // Magic, FLG, BD, then the 8-byte content size at 6..<14 and the header checksum at 14.
        for i in 6..<14 { stream[i] = 0 }
        stream[14] = UInt8(truncatingIfNeeded: Array(stream[4..<14]).withUnsafeBytes { XXH32.digest($0) } >> 8)
        #expect(try LZ4.decompress(stream) == data)
        #expect(try decode(stream) == data)
        // A wrong non-zero size is an error for both.
        stream[6] = 1
        stream[14] = UInt8(truncatingIfNeeded: Array(stream[4..<14]).withUnsafeBytes { XXH32.digest($0) } >> 8)
        #expect(throws: LZ4Error.self) { try LZ4.decompress(stream) }
        #expect(throws: LZ4Error.self) { try decode(stream) }
    }

    @Test func highlyCompressibleJobsLargerThanTheOutputBufferAreSplit() throws {
        var data = [UInt8](repeating: 0, count: 3 << 20)
        data.replaceSubrange(1_000_000..<1_000_100, with: textBytes(100, seed: 1))
        let stream = liblz4OneShot(data, blockSize: LZ4F_max64KB)
        let tiny = LZ4ParallelDecoder.Tuning(jobInput: 1 << 20, jobBlocks: 16, output: 200 << 10, readBuffer: 512)
        #expect(try decode(stream, tuning: tiny) == data)
    }

    @Test func contentChecksumIsVerified() throws {
        let data = textBytes(300_000, seed: 5)
        var stream = try LZ4.compress(data)
        stream[stream.count - 2] ^= 0x40  // inside the content checksum
        #expect(throws: LZ4Error.self) { try decode(stream) }
        do { _ = try decode(stream) } catch { #expect("\(error)".contains("content checksum mismatch"), "\(error)") }
    }

    @Test func aCorruptBlockInTheMiddleIsAnError() throws {
        let data = textBytes(2 << 20, seed: 6)
        let stream = liblz4OneShot(data, blockSize: LZ4F_max64KB, contentChecksum: false)
        var bad = stream
        // Garbage over the middle of the stream: some block there no longer decodes.
        for i in (bad.count / 2)..<(bad.count / 2 + 4000) { bad[i] = 0xFF }
        do {
            _ = try decode(bad)
            Issue.record("decoding a corrupt block succeeded")
        } catch {
            #expect(error is LZ4Error, "\(error)")
            #expect("\(error)".contains("corrupt lz4 frame"), "\(error)")
        }
    }

    @Test func blockChecksumIsVerified() throws {
        let data = textBytes(500_000, seed: 8)
        var stream = liblz4OneShot(data, blockSize: LZ4F_max64KB, blockChecksum: true, contentChecksum: false)
        stream[stream.count / 2] ^= 0x01
        #expect(throws: LZ4Error.self) { try decode(stream) }
    }

    @Test func dependentBlockFramesAndMixedStreamsDecodeSequentially() throws {
        let a = textBytes(700_000, seed: 10), b = textBytes(300_001, seed: 11), c = textBytes(90_000, seed: 12)
        let linked = liblz4OneShot(b, blockSize: LZ4F_max64KB, linked: true)
        #expect(try decode(linked) == b)
        // Independent frame, a skippable frame, a dependent one, then an independent one again.
        let skippable: [UInt8] = [0x5A, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3]
        let stream = liblz4OneShot(a, blockSize: LZ4F_max64KB) + skippable + linked + liblz4OneShot(c, blockSize: LZ4F_max256KB)
        #expect(try decode(stream) == a + b + c)
        // A corrupt content checksum of the dependent frame is still caught.
        var bad = linked
        bad[bad.count - 1] ^= 0x10
        #expect(throws: LZ4Error.self) { try decode(liblz4OneShot(a, blockSize: LZ4F_max64KB) + bad) }
    }

    @Test func truncatedAndEmptyStreamsFail() throws {
        let stream = try LZ4.compress(textBytes(400_000, seed: 13))
        for cut in [0, 3, 6, 100, stream.count / 2, stream.count - 1] {
            do {
                _ = try decode(Array(stream.prefix(cut)))
                Issue.record("a stream cut at \(cut) decoded")
            } catch {
                #expect("\(error)".contains("lz4 frame"), "\(error)")
            }
        }
        var header = stream
        header[5] ^= 0x01  // BD byte: the header checksum no longer matches
        #expect(throws: LZ4Error.self) { try decode(header) }
    }
}
