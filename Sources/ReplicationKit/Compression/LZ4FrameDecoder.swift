import CLZ4

/// Streaming LZ4 frame reader. Pulls compressed bytes from `source` (which fills the buffer and returns the count, 0 at EOF).
///
/// Accepts any block size, optional block/content checksums (verified when present), zero-length
/// blocks, skippable frames and several concatenated frames. Not thread-safe: a decoder has a single owner.
public final class LZ4FrameDecoder {
    /// Size of the buffer the compressed input is read into.
    static let inputChunkSize = 64 * 1024
    /// How an age-encrypted object starts.
    static let ageMagic = Array("age-encryption.org/v1\n".utf8)
    /// What an age-encrypted object read by a replica without an age block is (both decoders say it).
    static var ageEncrypted: LZ4Error {
        LZ4Error("not an lz4 frame: the object is age-encrypted; restore with the replica's "
            + "age identities in a config file (restore -config)")
    }

    private let source: (UnsafeMutableRawBufferPointer) throws -> Int
    private let dctx: OpaquePointer
    private let input: UnsafeMutableRawBufferPointer
    private var inputStart = 0
    private var inputEnd = 0
    private var sourceAtEOF = false
    /// True once some bytes of the current (not yet complete) frame have been consumed.
    private var frameInProgress = false
    /// True once at least one frame has been decoded completely.
    private var completedFrame = false
    /// True once the end of the data has been reached (or an error thrown).
    private var done = false
    private var failure: LZ4Error?
    private var options = LZ4F_decompressOptions_t()

    /// Creates a decoder reading compressed bytes from `source`.
    ///
    /// `verifyChecksums: false` skips the block and content checksums (XXH32, a pass over every byte): only for
    /// bytes that never left this process's memory since they were encoded.
    public init(verifyChecksums: Bool = true, source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws {
        var ctx: OpaquePointer?
        try LZ4Error.check(LZ4F_createDecompressionContext(&ctx, UInt32(LZ4F_VERSION)),
                           "lz4 decompression context")
        guard let ctx else { throw LZ4Error("lz4 decompression context: allocation failed") }
        self.source = source
        self.dctx = ctx
        self.input = .allocate(byteCount: Self.inputChunkSize, alignment: 16)
        options.skipChecksums = verifyChecksums ? 0 : 1
    }

    deinit {
        LZ4F_freeDecompressionContext(dctx)
        input.deallocate()
    }

    /// Decodes everything, handing each decompressed chunk to `body` in order; returns the total byte count.
    ///
    /// One bounded buffer (`bufferSize`) is reused, so memory does not grow with the object.
    @discardableResult
    public func forEachChunk(bufferSize: Int = 64 * 1024, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> UInt64 {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        var total: UInt64 = 0
        while true {
            let n = try read(into: buffer)
            if n == 0 { return total }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += UInt64(n)
        }
    }

    /// Fills `buffer` with decompressed bytes; returns the count, 0 at the end of the data. Throws LZ4Error on corrupt/truncated input.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if let failure { throw failure }
        guard let dst = buffer.baseAddress, buffer.count > 0, !done else { return 0 }
        var produced = 0
        while produced < buffer.count {
            if inputStart == inputEnd && !sourceAtEOF {
                // Do not block on the source when we already have something to return.
                if produced > 0 { break }
                let n = try source(input)
                precondition(n >= 0 && n <= input.count, "LZ4FrameDecoder source returned \(n)")
                inputStart = 0
                inputEnd = n
                if n == 0 { sourceAtEOF = true }
            }
            let available = inputEnd - inputStart
            if available == 0 && sourceAtEOF && !frameInProgress {
                if !completedFrame { return try fail(.truncated) }
                done = true
                break
            }

            var dstSize = buffer.count - produced
            var srcSize = available
            let hint = LZ4F_decompress(dctx, dst + produced, &dstSize,
                                       input.baseAddress! + inputStart, &srcSize, &options)
            if LZ4F_isError(hint) != 0 {
                // An age-encrypted object read by a replica without an age block: say what it is.
                if !completedFrame && UnsafeRawBufferPointer(rebasing: input[inputStart..<inputEnd]).starts(with: Self.ageMagic) {
                    return try fail(Self.ageEncrypted)
                }
                return try fail(LZ4Error("corrupt lz4 frame: \(String(cString: LZ4F_getErrorName(hint)))"))
            }
            inputStart += srcSize
            produced += dstSize
            if srcSize > 0 { frameInProgress = true }
            if hint == 0 {
                // End of a frame (or of a skippable frame); liblz4 has reset the context.
                frameInProgress = false
                completedFrame = true
            } else if srcSize == 0 && dstSize == 0 {
                // No progress: either the source is exhausted mid-frame with nothing left to
                // flush, or liblz4 refuses the input (which should not happen; avoid spinning).
                return try fail(available == 0 ? .truncated : LZ4Error("corrupt lz4 frame: decoder stalled"))
            }
        }
        return produced
    }

    /// Records `error` so later reads throw it too, then throws it.
    private func fail(_ error: LZ4Error) throws -> Int {
        failure = error
        throw error
    }
}
