#if canImport(Glibc)
import Glibc
#endif

/// Reads the committed frames after a WAL position in one pass through one bounded buffer (the sync's copy).
///
/// Each `next()` returns the verified bytes of the transactions completed since the previous call, at most a
/// buffer's worth; frames of a transaction still open stay in the buffer until their commit frame is read, and are
/// never returned without it. A transaction longer than the whole buffer sets `overflow` and ends the reading:
/// the caller then copies from `result.committedEnd` on in two passes (find the last commit, then read again).
/// The bytes returned are valid until the next call.
struct CommittedFrameReader {
    private let scanner: WALScanner
    private let buffer: UnsafeMutableRawBufferPointer
    private let read: (UnsafeMutableRawBufferPointer, UInt64) throws -> Int
    private let fs: Int
    private let capacity: Int
    private var running: WALChecksum
    /// What was returned so far: the end of the last commit, the checksum there, its frame, the frame count.
    private(set) var result: WALScanResult
    /// Set when a full buffer held no commit frame (see the type's comment).
    private(set) var overflow = false
    private var base: UInt64  // file offset of buffer[0]
    private var filled = 0  // bytes read into the buffer
    private var pos = 0  // buffer index of the next frame to verify
    private var commitEnd = 0  // buffer index just past the last commit frame not returned yet (0: none)
    private var returned = 0  // buffer index up to which bytes were returned
    private var lastCommitAt: Int?
    private var framesSinceCommit = 0
    private var atEnd = false  // a short read: nothing more to read
    private var stopped = false  // a frame that does not chain: the valid WAL ends there
    private var readSize: Int
    private var nextRead: Int

    /// - Parameters:
    ///   - firstRead: bytes the first read asks for (the caller's guess of the new region); later reads ask for
    ///     16 frames, then twice as many each time, so stale frames past the new ones are barely read.
    ///   - read: fills the buffer with file bytes at an offset and returns the count (fewer at end of file).
    init(scanner: WALScanner, from offset: UInt64, checksum: WALChecksum, buffer: UnsafeMutableRawBufferPointer,
         firstRead: Int, read: @escaping (UnsafeMutableRawBufferPointer, UInt64) throws -> Int) {
        self.scanner = scanner
        self.buffer = buffer
        self.read = read
        fs = scanner.header.frameSize
        capacity = buffer.count / fs * fs
        precondition(capacity >= fs, "read buffer smaller than one frame")
        running = checksum
        result = WALScanResult(committedEnd: offset, checksum: checksum, lastCommitFrame: nil, committedFrames: 0)
        base = offset
        readSize = min(capacity, max(fs, (firstRead + fs - 1) / fs * fs))
        nextRead = 16 * fs
    }

    /// The verified bytes of the transactions committed since the last call, or nil when there are none (the
    /// valid WAL ended, or `overflow`).
    mutating func next() throws -> UnsafeRawBufferPointer? {
        if returned > 0 {
            // Keep what follows the returned bytes (an open transaction, a partial frame) at the front.
            let keep = filled - returned
            if keep > 0 { memmove(buffer.baseAddress!, buffer.baseAddress! + returned, keep) }
            base += UInt64(returned)
            (filled, pos, returned) = (keep, pos - returned, 0)
        }
        while !stopped && !overflow {
            if pos + fs <= filled {
                let frame = UnsafeRawBufferPointer(rebasing: buffer[pos..<(pos + fs)])
                let (ok, isCommit) = scanner.verifyFrames(frame, checksum: &running)
                if ok == 0 {
                    stopped = true
                    break
                }
                pos += fs
                framesSinceCommit += 1
                if isCommit {
                    commitEnd = pos
                    lastCommitAt = pos - fs
                    result.committedEnd = base + UInt64(pos)
                    result.checksum = running
                    result.committedFrames += framesSinceCommit
                    framesSinceCommit = 0
                }
                continue
            }
            if atEnd { break }
            if filled + fs > capacity {
                if commitEnd > 0 { break }  // return the committed bytes first, then there is room
                overflow = true
                break
            }
            let want = min(capacity - filled, readSize)
            let n = try read(UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + want)]), base + UInt64(filled))
            if n <= 0 {
                atEnd = true
                continue
            }
            filled += n
            atEnd = n < want
            readSize = min(capacity, nextRead)
            nextRead = min(capacity, nextRead * 2)
        }
        if let p = lastCommitAt {
            result.lastCommitFrame = Array(UnsafeRawBufferPointer(rebasing: buffer[p..<(p + fs)]))
            lastCommitAt = nil
        }
        guard commitEnd > 0 else { return nil }
        defer { (returned, commitEnd) = (commitEnd, 0) }
        return UnsafeRawBufferPointer(rebasing: buffer[0..<commitEnd])
    }
}
