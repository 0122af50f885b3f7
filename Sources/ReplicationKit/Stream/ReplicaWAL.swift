#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A streaming replica's local `-wal` file, changed only by appending whole frames after the last committed one.
///
/// Readers never look past the `mxFrame` recorded in the wal-index, so frames appended here stay invisible until
/// `ReplicaWALIndex` publishes them (or makes the next reader rebuild the wal-index from this file). Frames a reader may
/// use are never rewritten: the only shrinking operations cut bytes after the last committed frame, or are the
/// TRUNCATE checkpoint SQLite itself runs once no reader uses the WAL. Not Sendable: one owner.
final class ReplicaWAL {
    /// Path of the `-wal` file.
    let path: String
    /// Page size of the database (and of every frame).
    let pageSize: Int
    /// Header plus page of one frame.
    var frameSize: Int { walFrameHeaderSize + pageSize }

    private let fd: FileDescriptor
    /// End of the last committed frame; 0 when the file holds no usable header (the next append writes one).
    private(set) var committedEnd: UInt64 = 0
    /// Checksum chain value at `committedEnd` (the header checksum when no frame follows the header).
    private var committedChecksum = WALChecksum(bigEndian: false)
    private var salt1: UInt32 = 0
    private var salt2: UInt32 = 0
    private var checkpointSequence: UInt32 = 0

    /// End of the frames written by the append in progress; nil when none is in progress.
    private(set) var pendingEnd: UInt64?
    private var pendingChecksum = WALChecksum(bigEndian: false)
    /// Page number of each frame of the append in progress, in order, and the last frame's commit field.
    private var pendingPages: [UInt32] = []
    private var pendingDatabaseSize: UInt32 = 0
    /// What the last `commit()` appended, in the terms of the wal-index (nil after a commit that appended nothing).
    private(set) var lastCommit: WALIndexAppend?
    /// One frame (24-byte header + page) being filled by the caller.
    private let frame: UnsafeMutableRawBufferPointer
    /// Finished frames not written yet, written together (one pwrite per 64 frames instead of one per frame).
    private let outbox: UnsafeMutableRawBufferPointer
    private var outboxUsed = 0
    private var outboxStart: UInt64 = 0
    private static let outboxFrames = 64

    /// Opens (creating if needed) the `-wal` file of a database whose page size is `pageSize`.
    init(path: String, pageSize: Int) throws {
        self.path = path
        self.pageSize = pageSize
        fd = try FileDescriptor.open(path, flags: O_RDWR | O_CREAT, mode: 0o644)
        frame = .allocate(byteCount: walFrameHeaderSize + pageSize, alignment: 16)
        frame.initializeMemory(as: UInt8.self, repeating: 0)
        outbox = .allocate(byteCount: (walFrameHeaderSize + pageSize) * Self.outboxFrames, alignment: 16)
    }

    deinit {
        frame.deallocate()
        outbox.deallocate()
    }

    /// Committed frames currently in the file.
    var frameCount: Int {
        committedEnd <= UInt64(walHeaderSize) ? 0 : Int((committedEnd - UInt64(walHeaderSize)) / UInt64(frameSize))
    }

    /// The buffer a caller fills with one frame: bytes 0..<24 the incoming frame header (only the page number and
    /// commit field are used), bytes 24... the page.
    var frameBuffer: UnsafeMutableRawBufferPointer { frame }

    /// The page part of `frameBuffer`.
    var pageBuffer: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: frame[walFrameHeaderSize...])
    }

    /// Current size of the file.
    func fileSize() throws -> UInt64 { try fd.size() }

    /// Finds the end of the last valid commit frame, walking the frames the way SQLite's recovery does.
    func recover() throws {
        committedEnd = 0
        let size = try fd.size()
        guard size >= UInt64(walHeaderSize) else { return }
        let header: WALHeader
        do { header = try WALHeader(bytes: try fd.pread(count: walHeaderSize, at: 0)) } catch { return }
        guard Int(header.pageSize) == pageSize, header.version == 3_007_000 else { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * frameSize, alignment: 16)
        defer { buffer.deallocate() }
        let scan = try WALScanner(header: header).findCommittedEnd(
            from: UInt64(walHeaderSize), checksum: header.checksumState, buffer: buffer
        ) { buf, offset in try fd.pread(into: buf, at: offset) }
        committedEnd = scan.committedEnd
        committedChecksum = scan.checksum
        salt1 = header.salt1
        salt2 = header.salt2
        checkpointSequence = header.checkpointSequence
    }

    /// Forgets the file's content after SQLite truncated it to 0 bytes (TRUNCATE checkpoint).
    func didTruncate() {
        committedEnd = 0
    }

    /// Starts an append; the caller holds SQLite's WAL write lock, so no checkpoint can restart or truncate the
    /// file and no other writer exists until `commit()` or `discard()`.
    func begin() throws {
        precondition(pendingEnd == nil, "ReplicaWAL append already in progress")
        let size = try fd.size()
        if committedEnd > 0 {
            // Someone else (a TRUNCATE checkpoint run by another process) may have emptied or replaced the WAL
            // since our last append; re-derive the state from the file rather than appending to a stale chain.
            let current = size >= UInt64(walHeaderSize) ? try fd.pread(count: walHeaderSize, at: 0) : []
            let same = current.count == walHeaderSize && BigEndian.u32(current, 16) == salt1
                && BigEndian.u32(current, 20) == salt2
            if size < committedEnd || !same { try recover() }
        }
        // Drop whatever follows the last commit (an aborted append, a torn tail): readers never use those bytes.
        if size > committedEnd { try fd.truncate(to: committedEnd) }
        pendingEnd = committedEnd
        pendingChecksum = committedChecksum
        pendingPages.removeAll(keepingCapacity: true)
        lastCommit = nil
    }

    /// Appends the frame in `frameBuffer`, keeping its page number and commit field and writing this WAL's salts
    /// and cumulative checksum.
    func appendFrame() throws {
        guard var end = pendingEnd else { preconditionFailure("ReplicaWAL.appendFrame outside begin/commit") }
        if end == 0 {
            try writeFreshHeader()
            end = UInt64(walHeaderSize)
        }
        let raw = UnsafeRawBufferPointer(frame)
        frame.storeBytes(of: salt1.bigEndian, toByteOffset: 8, as: UInt32.self)
        frame.storeBytes(of: salt2.bigEndian, toByteOffset: 12, as: UInt32.self)
        var sum = pendingChecksum
        sum.update(UnsafeRawBufferPointer(rebasing: raw[0..<8]))
        sum.update(UnsafeRawBufferPointer(rebasing: raw[walFrameHeaderSize...]))
        frame.storeBytes(of: sum.s0.bigEndian, toByteOffset: 16, as: UInt32.self)
        frame.storeBytes(of: sum.s1.bigEndian, toByteOffset: 20, as: UInt32.self)
        if outboxUsed == 0 { outboxStart = end }
        (outbox.baseAddress! + outboxUsed).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        outboxUsed += raw.count
        if outboxUsed + raw.count > outbox.count { try flushOutbox() }
        pendingChecksum = sum
        pendingEnd = end + UInt64(frameSize)
        pendingPages.append(UInt32(bigEndian: frame.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        pendingDatabaseSize = UInt32(bigEndian: frame.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    }

    /// Makes the appended frames durable and the new committed end; returns whether any frame was appended.
    ///
    /// The last appended frame must be a commit frame (the caller checks).
    ///
    /// Not fsynced: the follower writes its position after the frames, so within one boot the page cache keeps
    /// them in order, and after a machine crash the applier distrusts its position anyway (see
    /// `StreamApplier.prepare`), exactly as SQLite's own `synchronous=NORMAL` WAL may lose its tail.
    @discardableResult
    func commit() throws -> Bool {
        guard let end = pendingEnd else { return false }
        try flushOutbox()
        guard end != committedEnd else { pendingEnd = nil; return false }
        lastCommit = WALIndexAppend(firstFrame: frameCount + 1, pages: pendingPages, databaseSize: pendingDatabaseSize,
                                    checksum: pendingChecksum, salt1: salt1, salt2: salt2, pageSize: pageSize)
        committedEnd = end
        committedChecksum = pendingChecksum
        pendingEnd = nil
        return true
    }

    /// Cuts everything appended since `begin()`; readers never saw those bytes.
    func discard() throws {
        outboxUsed = 0
        pendingPages.removeAll(keepingCapacity: true)
        guard pendingEnd != nil else { return }
        pendingEnd = nil
        try fd.truncate(to: committedEnd)
    }

    /// Writes the buffered frames at their place in the file.
    private func flushOutbox() throws {
        guard outboxUsed > 0 else { return }
        let n = outboxUsed
        outboxUsed = 0
        try fd.pwriteAll(UnsafeRawBufferPointer(rebasing: outbox[0..<n]), at: outboxStart)
    }

    /// Closes the file.
    func close() throws { try fd.close() }

    /// Starts a new WAL lifetime in the empty file: random salts, next checkpoint sequence, little-endian sums.
    private func writeFreshHeader() throws {
        var rng = SystemRandomNumberGenerator()
        let previousSalt1 = salt1
        salt1 = rng.next()
        if salt1 == previousSalt1 { salt1 &+= 1 }
        salt2 = rng.next()
        checkpointSequence &+= 1
        var h = [UInt8]()
        h.reserveCapacity(walHeaderSize)
        for v in [UInt32(0x377F_0682), 3_007_000, UInt32(pageSize), checkpointSequence, salt1, salt2] {
            BigEndian.append(v, to: &h)
        }
        var sum = WALChecksum(bigEndian: false)
        h.withUnsafeBytes { sum.update($0) }
        BigEndian.append(sum.s0, to: &h)
        BigEndian.append(sum.s1, to: &h)
        try h.withUnsafeBytes { try fd.pwriteAll($0, at: 0) }
        pendingChecksum = sum
    }
}

