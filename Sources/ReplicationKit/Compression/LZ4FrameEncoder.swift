import CLZ4

/// Streaming LZ4 frame writer. Output is collected and handed to `sink` in pieces of up to about 64 KiB
/// (one piece per compressed block would mean a `write` call for every 1-2 KiB of compressed WAL), and
/// whatever is left at `finish`.
///
/// Frames are written with the Litestream/`pierrec/lz4` defaults: independent blocks, no block
/// checksum, no content size, content checksum on, 4 MiB maximum block size, fast level, so every
/// output begins with `04 22 4D 18 64 70 B9`. Not thread-safe: an encoder has a single owner.
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

    /// Uncompressed bytes consumed so far.
    public private(set) var bytesIn: UInt64 = 0

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
    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        let stateSize = Int(LZ4_sizeofState())
        guard stateSize > 0 else { throw LZ4Error("lz4 compression state: size unknown") }
        self.sink = sink
        self.state = .allocate(byteCount: stateSize, alignment: 16)
        self.bound = 4 + Int(LZ4_compressBound(Int32(Self.chunkSize)))
        self.out = .allocate(byteCount: 2 * bound, alignment: 16)
        Self.header.withUnsafeBytes { out.copyMemory(from: $0) }
        filled = Self.header.count
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
        checksum.update(bytes)
        var offset = 0
        while offset < bytes.count {
            let len = min(Self.chunkSize, bytes.count - offset)
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

    /// Flushes buffered data and writes the end mark and content checksum; calling it again does nothing.
    public func finish() throws {
        if finished { return }
        guard !failed else { throw LZ4Error("lz4 encoder failed earlier") }
        if out.count - filled < 8 { try flush() }
        Self.storeLE(0, at: out.baseAddress! + filled)
        Self.storeLE(checksum.finish(), at: out.baseAddress! + filled + 4)
        filled += 8
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
