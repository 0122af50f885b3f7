import CLZ4

/// Streaming LZ4 frame writer. Output is collected and handed to `sink` in pieces of up to about 64 KiB
/// (one piece per compressed block would mean a `write` call for every 1-2 KiB of compressed WAL), and
/// whatever is left at `finish`.
///
/// Frames are written with the Litestream/`pierrec/lz4` defaults: independent blocks, no block
/// checksum, no content size, content checksum on, 4 MiB maximum block size, fast level, so every
/// output begins with `04 22 4D 18 64 70 B9`. Without content checksum (`contentChecksum: false`) the header is
/// `04 22 4D 18 60 70 73` and the frame may also take blocks of other frames as they are (`appendBlock`): that is
/// how a replica object is put together from shadow segments without decoding them. Not thread-safe: an encoder
/// has a single owner.
///
/// The frame is assembled here over liblz4's block API (`LZ4_compress_fast_extState`, what its frame API
/// calls for such frames) with our own XXH32 for the content checksum: Debian's liblz4 computes XXH32 at
/// about 2.4 GB/s on this machine against 6.7 GB/s for `XXH32`, and the checksum was a quarter of the
/// replicator's CPU (bench/RESULTS.md, "XXH32 was a quarter of the CPU").
public final class LZ4FrameEncoder {
    /// Largest input slice compressed as one block.
    ///
    /// Compressing straight from the caller's bytes, neither liblz4 nor we hold a 4 MiB block buffer: an
    /// encoder costs about 150 KiB, which matters because one is made for every shadow segment.
    /// LZ4's match window is 64 KiB, so smaller blocks cost almost nothing in ratio.
    static let chunkSize = 64 * 1024

    /// The frame header: magic, FLG (version 01, independent blocks, content checksum), BD (4 MiB blocks), HC.
    static let header: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x64, 0x70, 0xB9]
    /// The same without the content checksum flag (FLG 0x60): HC is the second byte of XXH32(FLG, BD).
    static let headerWithoutChecksum: [UInt8] = frameHeader(flg: 0x60, bd: 0x70)

    /// Magic, FLG, BD and the header checksum byte, `(XXH32(FLG, BD) >> 8) & 0xFF`.
    static func frameHeader(flg: UInt8, bd: UInt8) -> [UInt8] {
        let hc = [flg, bd].withUnsafeBytes { UInt8(truncatingIfNeeded: XXH32.digest($0) >> 8) }
        return [0x04, 0x22, 0x4D, 0x18, flg, bd, hc]
    }

    /// Largest block an appended block may decode to (BD 0x70: 4 MiB).
    public static let maxBlockSize = 4 << 20

    /// Uncompressed bytes consumed so far by `write` (blocks appended as they are are not counted).
    public private(set) var bytesIn: UInt64 = 0
    /// Whether the frame ends with a content checksum (XXH32 of everything written).
    public let contentChecksum: Bool

    private let sink: (UnsafeRawBufferPointer) throws -> Void
    /// liblz4's compression state (`LZ4_sizeofState()` bytes), reused for every block.
    private let state: UnsafeMutableRawPointer
    private let out: UnsafeMutableRawBufferPointer
    /// Output bytes collected in `out` and not handed to the sink yet.
    private var filled = 0
    /// Room one block of a full chunk (size field and data) or the end mark needs.
    private let bound: Int
    private var checksum = XXH32()
    private var finished = false
    private var failed = false

    /// Creates an encoder; the 7-byte frame header is the start of the first piece handed to `sink`.
    ///
    /// `contentChecksum: false` leaves out the content checksum (and its pass over every byte); such a frame can
    /// take already-compressed blocks (`appendBlock`).
    public init(contentChecksum: Bool = true, sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        let stateSize = Int(LZ4_sizeofState())
        guard stateSize > 0 else { throw LZ4Error("lz4 compression state: size unknown") }
        self.sink = sink
        self.contentChecksum = contentChecksum
        self.state = .allocate(byteCount: stateSize, alignment: 16)
        self.bound = 4 + Int(LZ4_compressBound(Int32(Self.chunkSize)))
        self.out = .allocate(byteCount: 2 * bound, alignment: 16)
        let header = contentChecksum ? Self.header : Self.headerWithoutChecksum
        header.withUnsafeBytes { out.copyMemory(from: $0) }
        filled = header.count
    }

    deinit {
        state.deallocate()
        out.deallocate()
    }

    /// Compresses `bytes` (any size; in blocks of at most `chunkSize`) and hands any output to the sink.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "LZ4FrameEncoder.write called after finish()")
        guard !failed else { throw LZ4Error("lz4 encoder failed earlier") }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let len = min(Self.chunkSize, bytes.count - offset)
            // Checksummed chunk by chunk, just before it is compressed: the chunk is then still in the cache (a
            // pass over a whole batch of WAL first, up to megabytes, left the compressor reading it from memory).
            if contentChecksum { checksum.update(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + len)])) }
            if out.count - filled < bound { try flush() }
            let dst = out.baseAddress! + filled
            let n = Int(LZ4_compress_fast_extState(state, (base + offset).assumingMemoryBound(to: CChar.self),
                                                   (dst + 4).assumingMemoryBound(to: CChar.self), Int32(len),
                                                   Int32(bound - 4), 1))
            if n > 0 && n < len {
                Self.storeLE(UInt32(n), at: dst)
                filled += 4 + n
            } else {
                // Incompressible: stored as it is, flagged by the size field's high bit (as liblz4 does).
                Self.storeLE(UInt32(len) | 0x8000_0000, at: dst)
                (dst + 4).copyMemory(from: base + offset, byteCount: len)
                filled += 4 + len
            }
            offset += len
            bytesIn += UInt64(len)
        }
    }

    /// Compresses the bytes of `bytes` and hands any output to the sink.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Appends one block of another frame as it is: `sizeWord` is its 4-byte block size field (compressed size, or
    /// the uncompressed size with the high bit set for a stored block) and `data` its bytes. The block must come
    /// from a frame with independent blocks and no block checksum, and decode to at most `maxBlockSize` bytes
    /// (any frame with BD 4-7 qualifies). Only for a frame without content checksum, which cannot cover bytes it
    /// never sees.
    public func appendBlock(sizeWord: UInt32, data: UnsafeRawBufferPointer) throws {
        precondition(!finished, "LZ4FrameEncoder.appendBlock called after finish()")
        precondition(!contentChecksum, "LZ4FrameEncoder.appendBlock on a frame with content checksum")
        guard !failed else { throw LZ4Error("lz4 encoder failed earlier") }
        let size = Int(sizeWord & 0x7FFF_FFFF)
        guard size == data.count, size > 0, size <= Self.maxBlockSize else {
            throw LZ4Error("lz4 block of \(data.count) bytes with size field \(size) cannot be appended")
        }
        if out.count - filled < 4 + size { try flush() }
        if out.count < 4 + size {
            // Larger than the output buffer: size field from the buffer, then the block straight from the caller.
            Self.storeLE(sizeWord, at: out.baseAddress!)
            filled = 4
            try flush()
            do { try sink(data) } catch { failed = true; throw error }
            return
        }
        Self.storeLE(sizeWord, at: out.baseAddress! + filled)
        (out.baseAddress! + filled + 4).copyMemory(from: data.baseAddress!, byteCount: size)
        filled += 4 + size
    }

    /// Flushes buffered data and writes the end mark and content checksum; calling it again does nothing.
    public func finish() throws {
        if finished { return }
        guard !failed else { throw LZ4Error("lz4 encoder failed earlier") }
        if out.count - filled < 8 { try flush() }
        Self.storeLE(0, at: out.baseAddress! + filled)
        filled += 4
        if contentChecksum {
            Self.storeLE(checksum.finish(), at: out.baseAddress! + filled)
            filled += 4
        }
        finished = true
        try flush()
    }

    @inline(__always) private static func storeLE(_ v: UInt32, at p: UnsafeMutableRawPointer) {
        p.storeBytes(of: v.littleEndian, as: UInt32.self)
    }

    /// Hands the collected output to the sink.
    private func flush() throws {
        guard filled > 0 else { return }
        defer { filled = 0 }
        do {
            try sink(UnsafeRawBufferPointer(rebasing: out[0..<filled]))
        } catch {
            failed = true
            throw error
        }
    }
}

/// One-shot helpers over `LZ4FrameEncoder` and `LZ4FrameDecoder`.
public enum LZ4 {
    /// Compresses `data` into a single LZ4 frame.
    public static func compress(_ data: [UInt8]) throws -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(data.count / 2 + 64)
        let encoder = try LZ4FrameEncoder { result.append(contentsOf: $0) }
        try encoder.write(data)
        try encoder.finish()
        return result
    }

    /// Decompresses one or more concatenated LZ4 frames; throws on empty, truncated or corrupt input.
    public static func decompress(_ data: [UInt8]) throws -> [UInt8] {
        var position = 0
        let decoder = try LZ4FrameDecoder { buffer in
            let n = min(buffer.count, data.count - position)
            if n > 0 {
                data.withUnsafeBytes { src in
                    buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[position..<position + n]))
                }
                position += n
            }
            return n
        }
        var result: [UInt8] = []
        result.reserveCapacity(data.count * 2)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { chunk.deallocate() }
        while true {
            let n = try decoder.read(into: chunk)
            if n == 0 { break }
            result.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        }
        return result
    }
}
