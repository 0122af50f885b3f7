/// The result of scanning a WAL file forward from a known position.
public struct WALScanResult: Sendable, Equatable {
    /// Offset just after the last valid commit frame (equals the start offset when none was found).
    public var committedEnd: UInt64
    /// Running checksum at `committedEnd`.
    public var checksum: WALChecksum
    /// The bytes of the last committed frame (header + page), if any commit frame was found.
    public var lastCommitFrame: [UInt8]?
    /// Number of frames up to `committedEnd`.
    public var committedFrames: Int
}

/// Walks WAL frames with LiteFS semantics: a short read, a salt mismatch or a checksum mismatch ends the valid WAL.
///
/// The scanner owns no file; it reads through the closure it is given.
public struct WALScanner {
    /// The header of the WAL lifetime being scanned (salts, byte order, page size).
    public let header: WALHeader
    /// How many frames to read per call of `read` (bounds memory).
    public var framesPerRead: Int

    /// Creates a scanner for the WAL lifetime described by `header`.
    public init(header: WALHeader, framesPerRead: Int = 64) {
        self.header = header
        self.framesPerRead = max(1, framesPerRead)
    }

    /// Verifies whole frames in `bytes` against the salts and the running checksum; returns how many frames
    /// chained correctly (stops at the first bad one) and whether the last good one is a commit frame.
    public func verifyFrames(_ bytes: UnsafeRawBufferPointer, checksum: inout WALChecksum) -> (frames: Int, lastIsCommit: Bool) {
        let fs = header.frameSize
        var chain = WALFrameChain(header: header, checksum: checksum)
        var good = 0
        var lastIsCommit = false
        var base = 0
        while base + fs <= bytes.count {
            let frame = UnsafeRawBufferPointer(rebasing: bytes[base..<(base + fs)])
            guard chain.accept(frame) else { break }
            good += 1
            lastIsCommit = WALFrameHeader(frame).isCommit
            base += fs
        }
        checksum = chain.checksum
        return (good, lastIsCommit)
    }

    /// Finds the end of the last valid commit after `offset`, reading through `buffer` (reused, never reallocated).
    ///
    /// - Parameter read: fills the buffer with file bytes at an offset and returns the count (fewer at end of file).
    public func findCommittedEnd(from offset: UInt64, checksum: WALChecksum, buffer: UnsafeMutableRawBufferPointer,
                                 read: (UnsafeMutableRawBufferPointer, UInt64) throws -> Int) throws -> WALScanResult {
        try findCommittedEnd(from: offset, checksum: checksum, buffer: buffer, firstRead: buffer.count, read: read).result
    }

    /// The same, filling `buffer` front to back: the first read asks for about `firstRead` bytes, the next one for
    /// 16 frames and each after it for twice as many, and only a full buffer starts over at its beginning. (Past
    /// the new frames usually lie stale ones of an earlier WAL lifetime: reading on in small steps touches only the
    /// pages of the buffer the batch needs, which keeps a large buffer's resident memory near the batch size.) `inBuffer` tells that it never
    /// did, so the verified bytes up to `committedEnd` are `buffer[0..<(committedEnd - offset)]`: a caller that
    /// guesses the size of the new region well reads it once, with no read past it.
    public func findCommittedEnd(from offset: UInt64, checksum: WALChecksum, buffer: UnsafeMutableRawBufferPointer,
                                 firstRead: Int, read: (UnsafeMutableRawBufferPointer, UInt64) throws -> Int)
        throws -> (result: WALScanResult, inBuffer: Bool) {
        let fs = header.frameSize
        let capacity = buffer.count / fs * fs
        precondition(capacity >= fs, "scan buffer smaller than one frame")
        var result = WALScanResult(committedEnd: offset, checksum: checksum, lastCommitFrame: nil, committedFrames: 0)
        var running = checksum
        var base = offset  // file offset of buffer[0]
        var filled = 0  // bytes read into the buffer
        var pos = 0  // buffer index of the next frame to verify
        var readSize = min(capacity, max(fs, (firstRead + fs - 1) / fs * fs))
        var nextRead = 16 * fs
        var atEnd = false
        var startedOver = false
        var framesSinceCommit = 0
        // Where the last commit frame lies in the buffer until it is copied out: once, at the end or before the
        // buffer starts over, not at every commit of a long batch.
        var lastCommitAt: Int?
        func keepLastCommit() {
            if let p = lastCommitAt { result.lastCommitFrame = Array(UnsafeRawBufferPointer(rebasing: buffer[p..<(p + fs)])) }
            lastCommitAt = nil
        }
        while true {
            if pos + fs > filled {
                if atEnd { break }
                if filled + fs > capacity {
                    // Full: keep the partial frame, if any, and start over at the beginning.
                    keepLastCommit()
                    let partial = filled - pos
                    if partial > 0 {
                        buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + pos, byteCount: partial)
                    }
                    base += UInt64(pos)
                    (filled, pos, startedOver) = (partial, 0, true)
                }
                let want = min(capacity - filled, readSize)
                let n = try read(UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + want)]), base + UInt64(filled))
                if n <= 0 { break }
                filled += n
                atEnd = n < want
                readSize = min(capacity, nextRead)
                nextRead = min(capacity, nextRead * 2)
                continue
            }
            let frame = UnsafeRawBufferPointer(rebasing: buffer[pos..<(pos + fs)])
            let (ok, isCommit) = verifyFrames(frame, checksum: &running)
            if ok == 0 { break }
            pos += fs
            framesSinceCommit += 1
            if isCommit {
                result.committedEnd = base + UInt64(pos)
                result.checksum = running
                result.committedFrames += framesSinceCommit
                framesSinceCommit = 0
                lastCommitAt = pos - fs
            }
        }
        keepLastCommit()
        return (result, !startedOver)
    }

    /// Scans frames starting at `offset` with running checksum `checksum` until the valid WAL ends.
    ///
    /// - Parameters:
    ///   - read: reads up to `count` bytes at an offset (fewer at end of file).
    ///   - onCommittedBytes: receives the validated bytes of each completed transaction, in order, if given.
    public func scan(from offset: UInt64, checksum: WALChecksum,
                     read: (_ count: Int, _ offset: UInt64) throws -> [UInt8],
                     onCommittedBytes: ((ArraySlice<UInt8>) throws -> Void)? = nil) throws -> WALScanResult {
        let fs = header.frameSize
        var result = WALScanResult(committedEnd: offset, checksum: checksum, lastCommitFrame: nil, committedFrames: 0)
        var chain = WALFrameChain(header: header, checksum: checksum)
        var cursor = offset
        // Bytes of the transaction in progress (frames after the last commit), kept only when a consumer wants them.
        var pending: [UInt8] = []
        var pendingFrames = 0
        scanning: while true {
            let chunk = try read(fs * framesPerRead, cursor)
            let whole = chunk.count / fs
            if whole == 0 { break }
            var i = 0
            while i < whole {
                let base = i * fs
                let (valid, isCommit) = chunk.withUnsafeBytes { raw -> (Bool, Bool) in
                    let frame = UnsafeRawBufferPointer(rebasing: raw[base..<(base + fs)])
                    return (chain.accept(frame), WALFrameHeader(frame).isCommit)
                }
                if !valid { break scanning }
                pendingFrames += 1
                if onCommittedBytes != nil { pending.append(contentsOf: chunk[base..<(base + fs)]) }
                cursor += UInt64(fs)
                if isCommit {
                    if let consume = onCommittedBytes {
                        try consume(pending[...])
                        pending.removeAll(keepingCapacity: true)
                    }
                    result.committedEnd = cursor
                    result.checksum = chain.checksum
                    result.committedFrames += pendingFrames
                    pendingFrames = 0
                    result.lastCommitFrame = Array(chunk[base..<(base + fs)])
                }
                i += 1
            }
            if whole < framesPerRead { break }
        }
        return result
    }
}
