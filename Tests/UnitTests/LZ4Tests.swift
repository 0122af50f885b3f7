import CLZ4
import Foundation
import Testing
@testable import ReplicationKit

/// Deterministic pseudo-random generator (SplitMix64) so failures are reproducible.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(state: seed)
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { buf in
        var i = 0
        while i < count {
            var word = rng.next()
            let n = min(8, count - i)
            withUnsafeBytes(of: &word) { w in
                buf.baseAddress!.advanced(by: i).copyMemory(from: w.baseAddress!, byteCount: n)
            }
            i += n
        }
    }
    return bytes
}

/// Mildly compressible data: random words drawn from a small vocabulary.
private func textLikeBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    let words = ["page", "frame", "wal", "sqlite", "commit", "salt", "checksum", " ", "\n", "0123"]
        .map { Array($0.utf8) }
    var rng = SplitMix64(state: seed)
    var out: [UInt8] = []
    out.reserveCapacity(count + 16)
    while out.count < count { out += words[Int(rng.next() % UInt64(words.count))] }
    return Array(out.prefix(count))
}

/// Compresses `data` through the streaming encoder using writes of varying odd sizes.
private func streamCompress(_ data: [UInt8], writeSizes: [Int]) throws -> [UInt8] {
    var out: [UInt8] = []
    let encoder = try LZ4FrameEncoder { out.append(contentsOf: $0) }
    var offset = 0
    var i = 0
    try data.withUnsafeBytes { all in
        while offset < data.count {
            let n = min(writeSizes[i % writeSizes.count], data.count - offset)
            try encoder.write(UnsafeRawBufferPointer(rebasing: all[offset..<offset + n]))
            offset += n
            i += 1
        }
    }
    #expect(encoder.bytesIn == UInt64(data.count))
    try encoder.finish()
    return out
}

/// Decompresses `data` through the streaming decoder with odd source chunk and read buffer sizes.
private func streamDecompress(_ data: [UInt8], sourceChunk: Int, readSize: Int) throws -> [UInt8] {
    var position = 0
    let decoder = try LZ4FrameDecoder { buffer in
        let n = min(buffer.count, sourceChunk, data.count - position)
        data.withUnsafeBytes { src in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[position..<position + n]))
        }
        position += n
        return n
    }
    var out: [UInt8] = []
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: readSize, alignment: 1)
    defer { buf.deallocate() }
    while true {
        let n = try decoder.read(into: buf)
        if n == 0 { break }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[0..<n]))
    }
    #expect(try decoder.read(into: buf) == 0)
    return out
}

/// Runs /usr/bin/lz4 with `arguments` (stdout into `stdoutFile` if given), returning its exit status.
private func runLZ4CLI(_ arguments: [String], stdoutFile: URL? = nil) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/lz4")
    process.arguments = arguments
    var output: FileHandle?
    if let stdoutFile {
        _ = FileManager.default.createFile(atPath: stdoutFile.path, contents: nil)
        output = try FileHandle(forWritingTo: stdoutFile)
    }
    defer { try? output?.close() }
    process.standardOutput = output ?? FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}

private func tempURL(_ suffix: String) -> URL {
    FileManager.default.temporaryDirectory
        .appendingPathComponent("lz4test-\(UUID().uuidString)\(suffix)")
}

private let header: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x64, 0x70, 0xB9]
/// FLG 0x60 (no content checksum): the header checksum byte is (XXH32(60 70) >> 8) & 0xFF.
private let headerWithoutChecksum: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73]

/// Expects `body` to throw an `LZ4Error` whose message contains `fragment`.
private func expectLZ4Error(containing fragment: String, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected an LZ4Error containing \"\(fragment)\"")
    } catch let error as LZ4Error {
        #expect(error.message.contains(fragment), "message: \(error.message)")
    } catch {
        Issue.record("unexpected error type: \(error)")
    }
}

/// What liblz4's own frame API writes for `data` given in writes of `writes` bytes (at most 64 KiB each), with the
/// settings of our encoder: independent 4 MiB blocks, content checksum as asked.
private func liblz4Frame(_ data: [UInt8], writes: [Int], contentChecksum: Bool = true) throws -> [UInt8] {
    var ctx: OpaquePointer?
    #expect(LZ4F_isError(LZ4F_createCompressionContext(&ctx, UInt32(LZ4F_VERSION))) == 0)
    defer { LZ4F_freeCompressionContext(ctx) }
    var p = LZ4F_preferences_t()
    p.frameInfo.blockSizeID = LZ4F_max4MB
    p.frameInfo.blockMode = LZ4F_blockIndependent
    p.frameInfo.contentChecksumFlag = contentChecksum ? LZ4F_contentChecksumEnabled : LZ4F_noContentChecksum
    p.autoFlush = 1
    var out = [UInt8](repeating: 0, count: LZ4F_compressFrameBound(data.count + 1, &p) + 1024)
    var n = out.withUnsafeMutableBytes { LZ4F_compressBegin(ctx, $0.baseAddress, $0.count, &p) }
    var at = 0, i = 0
    while at < data.count {
        let len = min(writes[i % writes.count], data.count - at, 64 * 1024)
        i += 1
        n += out.withUnsafeMutableBytes { o in
            data.withUnsafeBytes { d in
                LZ4F_compressUpdate(ctx, o.baseAddress! + n, o.count - n, d.baseAddress! + at, len, nil)
            }
        }
        at += len
    }
    n += out.withUnsafeMutableBytes { LZ4F_compressEnd(ctx, $0.baseAddress! + n, $0.count - n, nil) }
    return Array(out[0..<n])
}

@Suite("LZ4 frame codec")
struct LZ4Tests {
    @Test func headerBytes() throws {
        #expect(Array(try LZ4.compress([]).prefix(7)) == header)
        #expect(Array(try LZ4.compress([1, 2, 3]).prefix(7)) == header)
        #expect(Array(try LZ4.compress(randomBytes(100_000, seed: 1)).prefix(7)) == header)
    }

    /// The encoder assembles frames over the block API with our XXH32; liblz4's own frame API, given the same
    /// settings and the same writes, must produce the very same bytes (header, blocks, raw blocks, checksum), with
    /// and without the content checksum.
    @Test(arguments: [true, false])
    func framesEqualLiblz4FrameAPIByteForByte(contentChecksum: Bool) throws {
        let cases: [([UInt8], [Int])] = [
            ([], [1]), ([7], [1]), (randomBytes(65_537, seed: 5), [65_536]),
            (textLikeBytes(300_001, seed: 6), [4_120, 1, 65_536, 17]),
            (randomBytes(200_000, seed: 8) + textLikeBytes(150_000, seed: 9), [65_536, 4_096]),
        ]
        for (data, writes) in cases {
            var ours: [UInt8] = []
            let encoder = try LZ4FrameEncoder(contentChecksum: contentChecksum) { ours.append(contentsOf: $0) }
            var at = 0, i = 0
            while at < data.count {
                let len = min(writes[i % writes.count], data.count - at, 64 * 1024)
                i += 1
                try data.withUnsafeBytes { try encoder.write(UnsafeRawBufferPointer(rebasing: $0[at..<(at + len)])) }
                at += len
            }
            try encoder.finish()
            #expect(ours == (try liblz4Frame(data, writes: writes, contentChecksum: contentChecksum)),
                    "\(data.count) bytes in writes of \(writes)")
            #expect(Array(ours.prefix(7)) == (contentChecksum ? header : headerWithoutChecksum))
        }
    }

    @Test func emptyRoundTrip() throws {
        let frame = try LZ4.compress([])
        // header + end mark + xxHash32("") = 0x02CC5D05
        #expect(frame == header + [0, 0, 0, 0, 0x05, 0x5D, 0xCC, 0x02])
        #expect(try LZ4.decompress(frame) == [])
    }

    @Test func oneByteRoundTrip() throws {
        let frame = try LZ4.compress([0x42])
        #expect(try LZ4.decompress(frame) == [0x42])
    }

    @Test func randomTenMegabytesStreamed() throws {
        let data = randomBytes(10 * 1024 * 1024, seed: 42)
        let frame = try streamCompress(data, writeSizes: [1, 7, 4093, 65_537, 300_001, 13, 1_048_583])
        #expect(Array(frame.prefix(7)) == header)
        #expect(try LZ4.decompress(frame) == data)
        #expect(try streamDecompress(frame, sourceChunk: 65_521, readSize: 99_991) == data)
    }

    @Test func compressibleStreamed() throws {
        let data = textLikeBytes(5 * 1024 * 1024 + 17, seed: 7)
        let frame = try streamCompress(data, writeSizes: [333, 1_000_003])
        #expect(frame.count < data.count / 2)
        #expect(try streamDecompress(frame, sourceChunk: 1, readSize: 4097) == data)
        #expect(try streamDecompress(frame, sourceChunk: 8191, readSize: 1) == data)
    }

    @Test func exactlyFourMiB() throws {
        let data = randomBytes(4 * 1024 * 1024, seed: 3)
        let frame = try LZ4.compress(data)
        #expect(try LZ4.decompress(frame) == data)
        let text = textLikeBytes(4 * 1024 * 1024, seed: 4)
        #expect(try LZ4.decompress(try LZ4.compress(text)) == text)
    }

    @Test func decodesWithStockCLI() throws {
        let data = textLikeBytes(3 * 1024 * 1024 + 5, seed: 11) + randomBytes(2 * 1024 * 1024, seed: 12)
        let compressed = tempURL(".lz4")
        let decompressed = tempURL(".out")
        defer {
            try? FileManager.default.removeItem(at: compressed)
            try? FileManager.default.removeItem(at: decompressed)
        }
        try Data(try LZ4.compress(data)).write(to: compressed)
        #expect(try runLZ4CLI(["-d", "-q", "-f", compressed.path, decompressed.path]) == 0)
        #expect(Array(try Data(contentsOf: decompressed)) == data)
    }

    @Test(arguments: [[String](), ["-B4"], ["-BX"], ["-BD"], ["-B5", "--no-frame-crc"], ["-9"]])
    func decodesStockCLIOutput(extraArgs: [String]) throws {
        let data = textLikeBytes(700_000, seed: 21) + randomBytes(300_000, seed: 22)
        let input = tempURL(".bin")
        let compressed = tempURL(".lz4")
        defer {
            try? FileManager.default.removeItem(at: input)
            try? FileManager.default.removeItem(at: compressed)
        }
        try Data(data).write(to: input)
        #expect(try runLZ4CLI(["-c", "-q"] + extraArgs + [input.path], stdoutFile: compressed) == 0)
        let frame = Array(try Data(contentsOf: compressed))
        if extraArgs == ["-B4"] {
            // 64 KiB blocks, as in the upstream test fixtures.
            #expect(Array(frame.prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x64, 0x40, 0xA7])
        }
        #expect(try LZ4.decompress(frame) == data)
        #expect(try streamDecompress(frame, sourceChunk: 977, readSize: 10_007) == data)
    }

    @Test func concatenatedFrames() throws {
        let a = randomBytes(70_000, seed: 31)
        let b: [UInt8] = []
        let c = textLikeBytes(5_000_000, seed: 32)
        let joined = try LZ4.compress(a) + LZ4.compress(b) + LZ4.compress(c)
        #expect(try LZ4.decompress(joined) == a + b + c)
        #expect(try streamDecompress(joined, sourceChunk: 4099, readSize: 65_536) == a + b + c)
    }

    @Test func skippableFrames() throws {
        let data = textLikeBytes(10_000, seed: 41)
        let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5]
        #expect(try LZ4.decompress(skippable + LZ4.compress(data)) == data)
        #expect(try LZ4.decompress(LZ4.compress(data) + skippable + LZ4.compress(data)) == data + data)
    }

    @Test func zeroLengthUncompressedBlock() throws {
        // Insert `00 00 00 80` before the end mark (the Go writer does this on exact 4 MiB multiples).
        let zeroBlock: [UInt8] = [0x00, 0x00, 0x00, 0x80]
        for data in [[UInt8](), [9], textLikeBytes(100_000, seed: 51)] {
            let frame = try LZ4.compress(data)
            let spliced = Array(frame.dropLast(8)) + zeroBlock + Array(frame.suffix(8))
            #expect(try LZ4.decompress(spliced) == data)
            #expect(try streamDecompress(spliced, sourceChunk: 3, readSize: 5) == data)
            // Also right after the header.
            let early = Array(frame.prefix(7)) + zeroBlock + Array(frame.dropFirst(7))
            #expect(try LZ4.decompress(early) == data)
        }
    }

    @Test func truncatedFrameThrows() throws {
        let frame = try LZ4.compress(textLikeBytes(200_000, seed: 61))
        expectLZ4Error(containing: "truncated") { _ = try LZ4.decompress(Array(frame.dropLast(5))) }
        expectLZ4Error(containing: "truncated") {
            _ = try streamDecompress(Array(frame.dropLast(5)), sourceChunk: 100, readSize: 7)
        }
        expectLZ4Error(containing: "truncated") { _ = try LZ4.decompress(Array(frame.prefix(3))) }
        expectLZ4Error(containing: "truncated") { _ = try LZ4.decompress(Array(frame.prefix(7))) }
        expectLZ4Error(containing: "truncated") { _ = try LZ4.decompress(Array(frame.prefix(frame.count / 2))) }
        // A complete frame followed by the start of another one.
        expectLZ4Error(containing: "truncated") { _ = try LZ4.decompress(frame + frame.prefix(10)) }
    }

    @Test func emptyInputThrows() throws {
        expectLZ4Error(containing: "truncated") { _ = try LZ4.decompress([]) }
    }

    @Test func corruptContentChecksumThrows() throws {
        var frame = try LZ4.compress(textLikeBytes(50_000, seed: 71))
        frame[frame.count - 2] ^= 0x01
        expectLZ4Error(containing: "ERROR_contentChecksum_invalid") { _ = try LZ4.decompress(frame) }
    }

    @Test func garbageThrows() throws {
        expectLZ4Error(containing: "lz4") { _ = try LZ4.decompress(Array("hello, this is not lz4 at all".utf8)) }
        expectLZ4Error(containing: "lz4") { _ = try LZ4.decompress(randomBytes(1000, seed: 81)) }
        var frame = try LZ4.compress(textLikeBytes(50_000, seed: 82))
        frame[5] ^= 0x10 // header checksum mismatch
        expectLZ4Error(containing: "corrupt") { _ = try LZ4.decompress(frame) }
        // Trailing garbage after a valid frame.
        let good = try LZ4.compress([1, 2, 3])
        expectLZ4Error(containing: "corrupt") { _ = try LZ4.decompress(good + Array("garbage!".utf8)) }
    }

    @Test func errorDescription() {
        #expect(LZ4Error("truncated lz4 frame").description == "truncated lz4 frame")
    }
}

/// Copies the blocks of `frames`, in order, into one frame without content checksum (each frame read from a source
/// handing out `chunk` bytes at a time); returns the frame and what `copyFrame` returned for each.
private func copyBlocks(_ frames: [[UInt8]], verify: Bool, chunk: Int = 4099) throws -> (object: [UInt8], lengths: [UInt64?]) {
    var object: [UInt8] = []
    let encoder = try LZ4FrameEncoder(contentChecksum: false) { object.append(contentsOf: $0) }
    var lengths: [UInt64?] = []
    for f in frames {
        var at = 0
        lengths.append(try LZ4BlockCopier.copyFrame(from: { buf in
            let n = min(buf.count, chunk, f.count - at)
            f.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
            at += n
            return n
        }, to: encoder, verify: verify))
    }
    try encoder.finish()
    return (object, lengths)
}

/// Decodes `frame` with the stock `lz4` CLI (liblz4's frame decoder) and returns the bytes, nil when it fails.
private func decodeWithCLI(_ frame: [UInt8]) throws -> [UInt8]? {
    let compressed = tempURL(".lz4"), decompressed = tempURL(".out")
    defer {
        try? FileManager.default.removeItem(at: compressed)
        try? FileManager.default.removeItem(at: decompressed)
    }
    try Data(frame).write(to: compressed)
    guard try runLZ4CLI(["-d", "-q", "-f", compressed.path, decompressed.path]) == 0 else { return nil }
    return Array(try Data(contentsOf: decompressed))
}

/// A replica object is put together from shadow segments by copying their blocks (`LZ4BlockCopier`) into one frame
/// without content checksum, instead of decoding and encoding them again.
@Suite("LZ4 block copy")
struct LZ4BlockCopierTests {
    /// The blocks of several frames (stored and compressed blocks, an empty frame, a one-byte one) make one frame
    /// that decodes, with liblz4's decoder (the `lz4` CLI and `LZ4F_decompress`), to the frames' concatenation;
    /// the object is exactly the new header, every frame's blocks as they were, and an end mark.
    @Test(arguments: [false, true])
    func blocksOfSeveralFramesMakeOneFrameOfTheirConcatenation(verify: Bool) throws {
        let parts = [randomBytes(150_000, seed: 91), textLikeBytes(300_001, seed: 92), [], [7],
                     textLikeBytes(70_000, seed: 93) + randomBytes(1_000, seed: 94)]
        let frames = try parts.map { try streamCompress($0, writeSizes: [65_536, 4_100, 1]) }
        let (object, lengths) = try copyBlocks(frames, verify: verify)
        #expect(object == headerWithoutChecksum + frames.flatMap { $0[7..<($0.count - 8)] } + [0, 0, 0, 0])
        #expect(lengths == (verify ? parts.map { UInt64($0.count) } : parts.map { _ in nil }))
        let whole = parts.flatMap { $0 }
        #expect(try decodeWithCLI(object) == whole)
        #expect(try LZ4.decompress(object) == whole)
        #expect(try streamDecompress(object, sourceChunk: 333, readSize: 70_001) == whole)
    }

    /// Frames of liblz4's frame API copy too: 4 MiB blocks (larger than the encoder's output buffer, so handed on
    /// directly), a content size field, no content checksum, 64 KiB blocks.
    @Test func copiesLiblz4FramesWithLargeBlocksAndOptionalFields() throws {
        let big = randomBytes(4 << 20, seed: 95) + textLikeBytes(5 << 20, seed: 96)
        let small = textLikeBytes(200_000, seed: 97)
        let frames = [liblz4OneShot(big, blockSize: LZ4F_max4MB, contentSize: true),
                      liblz4OneShot(small, blockSize: LZ4F_max64KB, contentChecksum: false),
                      liblz4OneShot(small, blockSize: LZ4F_max1MB)]
        for verify in [false, true] {
            let (object, lengths) = try copyBlocks(frames, verify: verify, chunk: 1 << 20)
            #expect(Array(object.prefix(7)) == headerWithoutChecksum)
            #expect(lengths == (verify ? [UInt64(big.count), UInt64(small.count), UInt64(small.count)] : [nil, nil, nil]))
            #expect(try decodeWithCLI(object) == big + small + small)
        }
    }

    /// Linked blocks, block checksums, something that is no LZ4 frame: refused before anything is appended, so the
    /// caller can decode instead.
    @Test func framesThatCannotBeCopiedAreRefusedBeforeAnythingIsAppended() throws {
        let data = textLikeBytes(300_000, seed: 98)
        let refused: [[UInt8]] = [
            liblz4OneShot(data, blockSize: LZ4F_max64KB, linked: true),
            liblz4OneShot(data, blockSize: LZ4F_max64KB, blockChecksum: true),
            [0x50, 0x2A, 0x4D, 0x18, 1, 0, 0, 0, 9],  // a skippable frame
            Array("not lz4 at all".utf8), [], [0x04, 0x22],
        ]
        for frame in refused {
            var object: [UInt8] = []
            let encoder = try LZ4FrameEncoder(contentChecksum: false) { object.append(contentsOf: $0) }
            var at = 0
            #expect(throws: LZ4BlockCopier.NotCopyable.self, "\(frame.prefix(8))") {
                try LZ4BlockCopier.copyFrame(from: { buf in
                    let n = min(buf.count, frame.count - at)
                    frame.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
                    at += n
                    return n
                }, to: encoder, verify: true)
            }
            try encoder.finish()
            #expect(object == headerWithoutChecksum + [0, 0, 0, 0])
        }
    }

    /// A damaged frame is an error: truncated, a wrong header checksum, a block larger than the frame allows, data
    /// after the end; with `verify`, also a wrong content checksum and a block that does not decode.
    @Test func damagedFramesThrow() throws {
        let good = try LZ4.compress(textLikeBytes(200_000, seed: 99))
        func copy(_ frame: [UInt8], verify: Bool) throws { _ = try copyBlocks([frame], verify: verify) }
        for verify in [false, true] {
            expectLZ4Error(containing: "truncated") { try copy(Array(good.dropLast(3)), verify: verify) }
            expectLZ4Error(containing: "truncated") { try copy(Array(good.prefix(good.count / 2)), verify: verify) }
            expectLZ4Error(containing: "truncated") { try copy(Array(good.prefix(7)), verify: verify) }
            var badHeader = good
            badHeader[6] ^= 0x01
            expectLZ4Error(containing: "headerChecksum") { try copy(badHeader, verify: verify) }
            expectLZ4Error(containing: "after the end") { try copy(good + [1], verify: verify) }
            // A 64 KiB-block frame whose first block claims 65 KiB.
            var oversized = liblz4OneShot(textLikeBytes(100_000, seed: 100), blockSize: LZ4F_max64KB)
            oversized.replaceSubrange(7..<11, with: [0x00, 0x04, 0x01, 0x00])
            expectLZ4Error(containing: "block of 66560 bytes") { try copy(oversized, verify: verify) }
        }
        var badChecksum = good
        badChecksum[badChecksum.count - 1] ^= 0x01
        _ = try copyBlocks([badChecksum], verify: false)  // not verified: the caller vouches for the bytes
        expectLZ4Error(containing: "ERROR_contentChecksum_invalid") { try copy(badChecksum, verify: true) }
        var badBlock = good
        for i in 11..<200 { badBlock[i] = 0xFF }  // the first block's first sequences
        expectLZ4Error(containing: "corrupt lz4 frame") { try copy(badBlock, verify: true) }
    }
}
