// Fuzzes the LZ4 frame codec: `LZ4.decompress`, `LZ4FrameDecoder` (streamed in odd-sized pieces, with and without
// checksum verification), `LZ4ParallelDecoder` (the restore's snapshot decoder, 1-3 workers, into a scratch file),
// `LZ4BlockCopier` (a frame's blocks copied into a frame without content checksum, as replica objects are made)
// and, for what decodes, `LZ4.compress` and the encoder without content checksum.
//
// Input: byte 0 seeds the piece sizes; the rest is decoded as LZ4 frames. When byte 0 is odd the rest is also
// compressed and must decompress to itself.
import FuzzSupport
import Glibc
import ReplicationKit

/// The parallel decoder's output file: created once, unlinked at once, truncated for every input.
let scratch: Int32 = {
    let path = "/tmp/fuzz-lz4-parallel-\(getpid())"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    precondition(fd >= 0, "cannot create \(path)")
    unlink(path)
    return fd
}()

/// Decodes `bytes` with `LZ4ParallelDecoder` (source pieces of odd sizes) and returns what it wrote.
func parallelDecode(_ bytes: [UInt8], seed: UInt8) throws -> [UInt8] {
    fuzzCheck(ftruncate(scratch, 0) == 0, "cannot truncate the scratch file")
    var chunker = FuzzChunker(seed: UInt64(seed) &+ 7)
    var position = 0
    let n = try LZ4ParallelDecoder.decode(source: { buffer in
        let n = min(buffer.count, bytes.count - position, chunker.next(max: 4099))
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: n) }
        position += n
        return n
    }, to: scratch, path: "scratch", workers: 1 + Int(seed % 3))
    fuzzCheck(n <= 64 << 20, "more than 64 MiB from a fuzz input")
    var out = [UInt8](repeating: 0, count: Int(n))
    let got = out.withUnsafeMutableBytes { pread(scratch, $0.baseAddress, $0.count, 0) }
    fuzzCheck(got == Int(n), "the scratch file holds \(got) of \(n) bytes written")
    return out
}

/// Decodes `bytes` through `LZ4FrameDecoder`, feeding at most a few bytes per source call and reading into a small
/// buffer, so every resumption point of the streaming decoder is exercised.
func streamDecode(_ bytes: [UInt8], seed: UInt8, verify: Bool) throws -> [UInt8] {
    var chunker = FuzzChunker(seed: UInt64(seed))
    var position = 0
    let decoder = try LZ4FrameDecoder(verifyChecksums: verify) { buffer in
        fuzzCheck(buffer.count > 0, "decoder offered an empty source buffer")
        let n = min(buffer.count, bytes.count - position, chunker.next(max: 97))
        bytes.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + position, byteCount: n)
        }
        position += n
        return n
    }
    var out: [UInt8] = []
    let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    defer { chunk.deallocate() }
    while true {
        let want = chunker.next(max: chunk.count)
        let n = try decoder.read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<want]))
        fuzzCheck(n >= 0 && n <= want, "read returned \(n) for a \(want)-byte buffer")
        if n == 0 { break }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        fuzzCheck(out.count <= 64 << 20, "more than 64 MiB from a fuzz input")
    }
    // The end is sticky.
    fuzzCheck(try decoder.read(into: chunk) == 0, "read after the end returned bytes")
    return out
}

/// Copies the blocks of `bytes` (one frame) into a frame without content checksum, twice (two segments of one
/// replica object), reading the source in odd-sized pieces. Returns the object and the length `copyFrame` measured.
func copyTwice(_ bytes: [UInt8], seed: UInt8, verify: Bool) throws -> (object: [UInt8], length: UInt64?) {
    var object: [UInt8] = []
    let encoder = try LZ4FrameEncoder(contentChecksum: false) { object.append(contentsOf: $0) }
    var chunker = FuzzChunker(seed: UInt64(seed) &+ 3)
    var length: UInt64?
    for _ in 0..<2 {
        var position = 0
        length = try LZ4BlockCopier.copyFrame(from: { buffer in
            let n = min(buffer.count, bytes.count - position, chunker.next(max: 5003))
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: n) }
            position += n
            return n
        }, to: encoder, verify: verify)
    }
    try encoder.finish()
    return (object, length)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzBytes(data, size)
    guard let seed = input.first else { return 0 }
    let frame = Array(input.dropFirst())

    let oneShot: [UInt8]?
    do {
        oneShot = try LZ4.decompress(frame)
    } catch {
        fuzzCheck(error is LZ4Error, "decompress threw \(type(of: error)): \(error)")
        oneShot = nil
    }

    // Streaming in small pieces must agree with the one-shot decoder, error or not.
    do {
        let streamed = try streamDecode(frame, seed: seed, verify: true)
        fuzzCheck(oneShot == streamed, "streamed decode differs from one-shot (\(streamed.count) vs \(oneShot?.count ?? -1))")
    } catch {
        fuzzCheck(error is LZ4Error, "streamed decode threw \(type(of: error))")
        fuzzCheck(oneShot == nil, "streamed decode failed where one-shot succeeded: \(error)")
    }

    // The parallel snapshot decoder agrees with the sequential one, error or not.
    do {
        let parallel = try parallelDecode(frame, seed: seed)
        fuzzCheck(oneShot == parallel, "parallel decode differs from one-shot (\(parallel.count) vs \(oneShot?.count ?? -1))")
    } catch {
        fuzzCheck(error is LZ4Error, "parallel decode threw \(type(of: error)): \(error)")
        fuzzCheck(oneShot == nil, "parallel decode failed where one-shot succeeded: \(error)")
    }

    // Copying the blocks: what a verified copy accepts decodes (one frame), and the object made of two copies decodes
    // to it twice; an unverified copy may accept more (it trusts the bytes) but never crashes.
    do {
        let (object, length) = try copyTwice(frame, seed: seed, verify: true)
        fuzzCheck(oneShot != nil, "a verified block copy accepted what the decoder refuses")
        fuzzCheck(length == UInt64(oneShot?.count ?? -1), "block copy measured \(length ?? 0) bytes, decoder \(oneShot?.count ?? -1)")
        fuzzCheck(Array(object.prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73], "copied frame header")
        fuzzCheck(try LZ4.decompress(object) == oneShot! + oneShot!, "copied blocks decode differently")
    } catch {
        fuzzCheck(error is LZ4Error || error is LZ4BlockCopier.NotCopyable, "block copy threw \(type(of: error)): \(error)")
    }
    if let (object, _) = try? copyTwice(frame, seed: seed, verify: false) {
        fuzzCheck(Array(object.prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73], "copied frame header")
    }

    // Skipping checksums never rejects what verifying accepts, and yields the same bytes.
    if let oneShot {
        do {
            let unverified = try streamDecode(frame, seed: seed &+ 1, verify: false)
            fuzzCheck(unverified == oneShot, "decode without checksums differs")
        } catch {
            fuzzCheck(false, "decode without checksums failed: \(error)")
        }
        // Round trip: what decodes re-encodes to a frame that decodes to the same bytes.
        do {
            let again = try LZ4.decompress(try LZ4.compress(oneShot))
            fuzzCheck(again == oneShot, "re-encoded frame decodes differently")
            var plain: [UInt8] = []
            let encoder = try LZ4FrameEncoder(contentChecksum: false) { plain.append(contentsOf: $0) }
            try encoder.write(oneShot)
            try encoder.finish()
            fuzzCheck(try LZ4.decompress(plain) == oneShot, "frame without content checksum decodes differently")
        } catch {
            fuzzCheck(false, "re-encoding failed: \(error)")
        }
    }

    if seed & 1 != 0 {
        do {
            let encoded = try LZ4.compress(frame)
            fuzzCheck(Array(encoded.prefix(4)) == [0x04, 0x22, 0x4D, 0x18], "frame magic")
            fuzzCheck(try LZ4.decompress(encoded) == frame, "compress/decompress is not the identity")
            fuzzCheck(try streamDecode(encoded, seed: seed, verify: true) == frame, "streamed round trip")
        } catch {
            fuzzCheck(false, "round trip of fuzz bytes failed: \(error)")
        }
    }
    return 0
}

runFuzzer("FuzzLZ4", fuzzOne)
