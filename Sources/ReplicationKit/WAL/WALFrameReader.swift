/// The chain that makes a WAL frame valid: the lifetime's salts, and the running checksum over every frame before it.
///
/// One definition for every place that judges frames: the sync's scan of the real WAL (`WALScanner`), the shadow
/// cursor's recovery, and the restore's check of a downloaded WAL (`WALFileVerifier`).
public struct WALFrameChain: Sendable, Equatable {
    public let salt1: UInt32
    public let salt2: UInt32
    /// The checksum after the last accepted frame.
    public private(set) var checksum: WALChecksum

    /// Starts the chain of the lifetime `header` at `checksum` (the header's own, or a position's).
    public init(header: WALHeader, checksum: WALChecksum) {
        (salt1, salt2, self.checksum) = (header.salt1, header.salt2, checksum)
    }

    /// Checks one whole frame (header and page) and, when it continues the chain, advances the checksum.
    @inline(__always)
    public mutating func accept(_ frame: UnsafeRawBufferPointer) -> Bool {
        let fh = WALFrameHeader(frame)
        guard fh.salt1 == salt1, fh.salt2 == salt2 else { return false }
        var next = checksum
        next.update(UnsafeRawBufferPointer(rebasing: frame[0..<8]))
        next.update(UnsafeRawBufferPointer(rebasing: frame[walFrameHeaderSize...]))
        guard next.s0 == fh.checksum1 && next.s1 == fh.checksum2 else { return false }
        checksum = next
        return true
    }

    /// Why `frame` does not continue the chain (for error messages), or nil when it does.
    public func rejection(of frame: UnsafeRawBufferPointer) -> String? {
        var copy = self
        if copy.accept(frame) { return nil }
        let fh = WALFrameHeader(frame)
        return fh.salt1 != salt1 || fh.salt2 != salt2 ? "salt mismatch" : "checksum mismatch"
    }
}

/// Reads whole WAL frames one at a time from a stream of bytes: a WAL file, or the decoded bytes of a shadow
/// segment or of a `/stream` record. The one frame reader of the restore's verifier, the live snapshot builder
/// and the stream applier; it checks what every WAL frame must satisfy (whole frames, a page number), and, given
/// a `WALFrameChain`, the salts and checksums too.
public struct WALFrameReader {
    /// Size of a frame: 24-byte header plus one page.
    public let frameSize: Int
    /// Frames read so far.
    public private(set) var frames = 0
    /// Frames up to and including the last commit frame read.
    public private(set) var committedFrames = 0
    /// Bytes read so far (the optional WAL header included).
    public private(set) var bytesRead: UInt64 = 0
    /// When set, every frame must continue this chain.
    public private(set) var chain: WALFrameChain?

    /// A reader of frames of `pageSize`-byte pages; with `chain`, salts and checksums are verified too.
    public init(pageSize: Int, chain: WALFrameChain? = nil) {
        self.frameSize = walFrameHeaderSize + pageSize
        self.chain = chain
    }

    /// Whether the last frame read commits a transaction (true before any frame: nothing is pending).
    public var endsWithCommit: Bool { committedFrames == frames }

    /// Reads the 32-byte WAL header that starts a WAL file or a segment at offset 0.
    ///
    /// - Throws: `.corrupt` when fewer bytes follow, or the header's page size is not the reader's.
    public mutating func readHeader(_ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> WALHeader {
        var bytes = [UInt8](repeating: 0, count: walHeaderSize)
        let n = try bytes.withUnsafeMutableBytes { try Self.fill($0, read) }
        bytesRead += UInt64(n)
        guard n == walHeaderSize else { throw ReplicationError(.corrupt, "WAL header is \(n) bytes") }
        let header = try WALHeader(bytes: bytes)
        guard Int(header.pageSize) == frameSize - walFrameHeaderSize else {
            throw ReplicationError(.corrupt, "page size mismatch: \(frameSize - walFrameHeaderSize) <> \(header.pageSize)")
        }
        return header
    }

    /// Reads the next frame into `frame` (`frameSize` bytes) and returns its header; nil at a clean end.
    ///
    /// - Parameter read: fills a buffer with the next bytes and returns the count, 0 at the end (short counts
    ///   are fine: the reader asks again until the frame is whole).
    /// - Throws: `.corrupt` naming the frame (1-based) for a partial frame, page number 0, or a broken chain.
    public mutating func next(into frame: UnsafeMutableRawBufferPointer,
                              _ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> WALFrameHeader? {
        precondition(frame.count == frameSize, "frame buffer must be one frame")
        let n = try Self.fill(frame, read)
        bytesRead += UInt64(n)
        if n == 0 { return nil }
        let number = frames + 1
        guard n == frameSize else { throw ReplicationError(.corrupt, "ends with a partial frame of \(n) bytes") }
        let raw = UnsafeRawBufferPointer(frame)
        let fh = WALFrameHeader(raw)
        guard fh.pageNumber != 0 else { throw ReplicationError(.corrupt, "frame \(number) has page number 0") }
        if chain != nil, !chain!.accept(raw) {
            throw ReplicationError(.corrupt, "frame \(number) \(chain!.rejection(of: raw) ?? "does not continue the chain")")
        }
        frames = number
        if fh.isCommit { committedFrames = number }
        return fh
    }

    /// Fills `target` from `read` until it is full or the source ends; returns the count.
    static func fill(_ target: UnsafeMutableRawBufferPointer,
                     _ read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Int {
        var got = 0
        while got < target.count {
            let n = try read(UnsafeMutableRawBufferPointer(rebasing: target[got...]))
            if n <= 0 { break }
            got += n
        }
        return got
    }
}
