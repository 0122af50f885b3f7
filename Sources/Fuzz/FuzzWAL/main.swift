// Fuzzes the WAL reader: `WALHeader(bytes:)`, `WALChecksum`, `WALScanner.verifyFrames`, `scan` and
// `findCommittedEnd`.
//
// Input layout: byte 0 selects the mode, the rest is a WAL file (32-byte header, then frames).
// - mode bit 0 clear: the header is parsed as it is (mostly rejected: magic and checksum);
// - mode bit 0 set: the harness repairs the magic (bit 1: big-endian checksums) and the header checksum, so the
//   scanner runs on whatever page size and frames follow;
// - mode bit 2 set: frames are repaired too (salts and checksum chain; the commit fields are kept), so the
//   scanner walks far into the input.
// The other bits pick the scanner's buffer size and read sizes.
import FuzzSupport
import ReplicationKit

/// SQLite's WAL checksum over `bytes` (count a multiple of 8), written independently of `WALChecksum`.
func referenceChecksum(_ bytes: ArraySlice<UInt8>, bigEndian: Bool, s0: UInt32, s1: UInt32) -> (UInt32, UInt32) {
    var a = s0, b = s1
    var i = bytes.startIndex
    func word(_ at: Int) -> UInt32 {
        let w = (0..<4).map { UInt32(bytes[at + $0]) }
        return bigEndian ? w[0] << 24 | w[1] << 16 | w[2] << 8 | w[3] : w[3] << 24 | w[2] << 16 | w[1] << 8 | w[0]
    }
    while i + 8 <= bytes.endIndex {
        a = a &+ word(i) &+ b
        b = b &+ word(i + 4) &+ a
        i += 8
    }
    return (a, b)
}

func put(_ v: UInt32, _ bytes: inout [UInt8], at: Int) {
    for k in 0..<4 { bytes[at + k] = UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32(k))) }
}

func get(_ bytes: [UInt8], at: Int) -> UInt32 {
    (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[at + $1]) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzBytes(data, size)
    guard let mode = input.first else { return 0 }
    var file = Array(input.dropFirst())

    if mode & 1 != 0 && file.count >= walHeaderSize {
        put(mode & 2 != 0 ? 0x377F_0683 : 0x377F_0682, &file, at: 0)
        let (c1, c2) = referenceChecksum(file[0..<24], bigEndian: mode & 2 != 0, s0: 0, s1: 0)
        put(c1, &file, at: 24)
        put(c2, &file, at: 28)
    }

    let header: WALHeader
    do {
        header = try WALHeader(bytes: file)
    } catch {
        fuzzCheck(error is ReplicationError, "WALHeader threw \(type(of: error))")
        if mode & 1 != 0 && file.count >= walHeaderSize {
            // A repaired header is refused only for its page size (SQLite's rule: a power of two, 512...65536).
            let p = get(file, at: 8)
            fuzzCheck(!(p >= 512 && p <= 65536 && p & (p - 1) == 0), "a repaired header was rejected: \(error)")
        }
        return 0
    }
    // A parsed header describes exactly its first 32 bytes, and its checksum is SQLite's.
    fuzzCheck(file.count >= walHeaderSize, "header parsed from \(file.count) bytes")
    fuzzCheck(header.bytes == Array(file[0..<walHeaderSize]), "header bytes differ from the input")
    fuzzCheck(header.magic == get(file, at: 0) && header.pageSize == get(file, at: 8)
              && header.salt1 == get(file, at: 16) && header.salt2 == get(file, at: 20), "header fields misread")
    let (r1, r2) = referenceChecksum(file[0..<24], bigEndian: header.bigEndianChecksums, s0: 0, s1: 0)
    fuzzCheck((r1, r2) == (header.checksum1, header.checksum2), "header accepted with a wrong checksum")
    fuzzCheck(header.frameSize == walFrameHeaderSize + Int(header.pageSize), "frameSize")
    fuzzCheck(header.pageSize >= 512 && header.pageSize <= 65536 && header.pageSize.nonzeroBitCount == 1,
              "page size \(header.pageSize) accepted")

    var body = Array(file[walHeaderSize...])
    let fs = header.frameSize
    let wholeFrames = body.count / fs

    if mode & 4 != 0 {
        // Repair every whole frame: the header's salts and a correct checksum chain.
        var (s0, s1) = (header.checksum1, header.checksum2)
        for f in 0..<wholeFrames {
            let base = f * fs
            put(header.salt1, &body, at: base + 8)
            put(header.salt2, &body, at: base + 12)
            guard fs % 8 == 0 else { break }
            (s0, s1) = referenceChecksum(body[base..<(base + 8)], bigEndian: header.bigEndianChecksums, s0: s0, s1: s1)
            (s0, s1) = referenceChecksum(body[(base + walFrameHeaderSize)..<(base + fs)],
                                         bigEndian: header.bigEndianChecksums, s0: s0, s1: s1)
            put(s0, &body, at: base + 16)
            put(s1, &body, at: base + 20)
        }
    }

    // Reference walk: frames chain while salts match and checksums continue.
    var expectedEnd = 0, expectedFrames = 0, validFrames = 0
    var (e0, e1) = (header.checksum1, header.checksum2)
    var expectedState = (e0, e1)
    var lastCommit: [UInt8]?
    if fs % 8 == 0 {
        for f in 0..<wholeFrames {
            let base = f * fs
            guard get(body, at: base + 8) == header.salt1, get(body, at: base + 12) == header.salt2 else { break }
            (e0, e1) = referenceChecksum(body[base..<(base + 8)], bigEndian: header.bigEndianChecksums, s0: e0, s1: e1)
            (e0, e1) = referenceChecksum(body[(base + walFrameHeaderSize)..<(base + fs)],
                                         bigEndian: header.bigEndianChecksums, s0: e0, s1: e1)
            guard (e0, e1) == (get(body, at: base + 16), get(body, at: base + 20)) else { break }
            validFrames += 1
            if get(body, at: base + 4) != 0 {
                expectedEnd = base + fs
                expectedFrames = f + 1
                expectedState = (e0, e1)
                lastCommit = Array(body[base..<(base + fs)])
            }
        }
    }

    let scanner = WALScanner(header: header, framesPerRead: Int(mode >> 3 & 3) + 1)

    // verifyFrames over the whole body.
    var running = header.checksumState
    let verified = body.withUnsafeBytes { scanner.verifyFrames($0, checksum: &running) }
    fuzzCheck(verified.frames == validFrames, "verifyFrames found \(verified.frames) frames, expected \(validFrames)")

    // scan(): reads through a closure that never returns bytes past the end of the file.
    var committed: [UInt8] = []
    let scanned: WALScanResult
    do {
        scanned = try scanner.scan(from: 0, checksum: header.checksumState, read: { count, offset in
            fuzzCheck(count > 0, "scan asked for \(count) bytes")
            let start = Int(min(offset, UInt64(body.count)))
            return Array(body[start..<min(body.count, start + count)])
        }, onCommittedBytes: { committed.append(contentsOf: $0) })
    } catch {
        fuzzCheck(false, "scan threw \(error) with a non-throwing reader")
        return 0
    }
    fuzzCheck(scanned.committedEnd == UInt64(expectedEnd), "scan ended at \(scanned.committedEnd), expected \(expectedEnd)")
    fuzzCheck(scanned.committedFrames == expectedFrames, "scan counted \(scanned.committedFrames) frames")
    fuzzCheck(scanned.lastCommitFrame == lastCommit, "scan's last commit frame differs")
    fuzzCheck(expectedFrames == 0 || (scanned.checksum.s0, scanned.checksum.s1) == expectedState, "scan checksum")
    fuzzCheck(committed == Array(body[0..<expectedEnd]), "committed bytes differ from the input's")

    // findCommittedEnd() with a buffer of a few frames and varied first reads: same answer.
    guard fs <= 1 << 17 else { return 0 }
    let frames = Int(mode >> 5) + 1
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: frames * fs, alignment: 8)
    defer { buffer.deallocate() }
    do {
        let (found, inBuffer) = try scanner.findCommittedEnd(
            from: 0, checksum: header.checksumState, buffer: buffer, firstRead: Int(mode) * 7 + 1
        ) { target, offset in
            let start = Int(min(offset, UInt64(body.count)))
            let n = min(target.count, body.count - start)
            body.withUnsafeBytes { target.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: n) }
            return n
        }
        fuzzCheck(found == scanned, "findCommittedEnd \(found) differs from scan \(scanned)")
        if inBuffer {
            fuzzCheck(Array(UnsafeRawBufferPointer(rebasing: buffer[0..<expectedEnd])) == Array(body[0..<expectedEnd]),
                      "inBuffer but the buffer does not hold the committed bytes")
        }
    } catch {
        fuzzCheck(false, "findCommittedEnd threw \(error) with a non-throwing reader")
    }
    return 0
}

runFuzzer("FuzzWAL", fuzzOne)
