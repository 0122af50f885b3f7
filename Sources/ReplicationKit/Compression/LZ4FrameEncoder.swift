import CLZ4

/// Streaming LZ4 frame writer. Output is collected and handed to `sink` in pieces of up to about 64 KiB
/// (one piece per compressed block would mean a `write` call for every 1-2 KiB of compressed WAL), and
/// whatever is left at `finish`.
///
/// Frames are written with the Litestream/`pierrec/lz4` defaults: independent blocks, no block
/// checksum, no content size, content checksum on, 4 MiB maximum block size, fast level, so every
/// output begins with `04 22 4D 18 64 70 B9`. Not thread-safe: an encoder has a single owner.
public final class LZ4FrameEncoder {
    /// Largest input slice passed to one `LZ4F_compressUpdate` call (and so the largest block written).
    ///
    /// With `autoFlush` liblz4 compresses straight from the input, so neither it nor we hold a 4 MiB block
    /// buffer: an encoder costs about 80 KiB, which matters because one is made for every shadow segment.
    /// LZ4's match window is 64 KiB, so smaller blocks cost almost nothing in ratio.
    static let chunkSize = 64 * 1024

    /// Uncompressed bytes consumed so far.
    public private(set) var bytesIn: UInt64 = 0

    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private let cctx: OpaquePointer
    private var prefs: LZ4F_preferences_t
    private let out: UnsafeMutableRawBufferPointer
    /// Output bytes collected in `out` and not handed to the sink yet.
    private var filled = 0
    /// Room one `LZ4F_compressUpdate` of a full chunk (or the end mark) may need.
    private let bound: Int
    private var finished = false
    private var failed = false

    /// Creates an encoder; the 7-byte frame header is the start of the first piece handed to `sink`.
    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        var ctx: OpaquePointer?
        try LZ4Error.check(LZ4F_createCompressionContext(&ctx, UInt32(LZ4F_VERSION)),
                           "lz4 compression context")
        guard let ctx else { throw LZ4Error("lz4 compression context: allocation failed") }

        var p = LZ4F_preferences_t()
        p.frameInfo.blockSizeID = LZ4F_max4MB
        p.frameInfo.blockMode = LZ4F_blockIndependent
        p.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        p.frameInfo.frameType = LZ4F_frame
        p.frameInfo.contentSize = 0
        p.frameInfo.dictID = 0
        p.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum
        p.compressionLevel = 0
        p.autoFlush = 1
        p.favorDecSpeed = 0

        let bound = max(LZ4F_compressBound(Self.chunkSize, &p), Int(LZ4F_HEADER_SIZE_MAX))
        self.sink = sink
        self.cctx = ctx
        self.prefs = p
        self.bound = bound
        self.out = .allocate(byteCount: 2 * bound, alignment: 16)

        filled = try LZ4Error.check(
            LZ4F_compressBegin(cctx, out.baseAddress, out.count, &prefs), "lz4 compress begin")
    }

    deinit {
        LZ4F_freeCompressionContext(cctx)
        out.deallocate()
    }

    /// Compresses `bytes` (any size; fed to liblz4 in bounded chunks) and hands any output to the sink.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "LZ4FrameEncoder.write called after finish()")
        guard !failed else { throw LZ4Error("lz4 encoder failed earlier") }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let len = min(Self.chunkSize, bytes.count - offset)
            if out.count - filled < bound { try flush() }
            do {
                filled += try LZ4Error.check(
                    LZ4F_compressUpdate(cctx, out.baseAddress! + filled, out.count - filled, base + offset, len, nil),
                    "lz4 compress")
            } catch {
                failed = true
                throw error
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
        if out.count - filled < bound { try flush() }
        do {
            filled += try LZ4Error.check(LZ4F_compressEnd(cctx, out.baseAddress! + filled, out.count - filled, nil),
                                         "lz4 compress end")
        } catch {
            failed = true
            throw error
        }
        finished = true
        try flush()
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
