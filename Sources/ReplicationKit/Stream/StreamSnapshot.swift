#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The primary's database exactly as it was at one shadow position, in an unlinked temporary file, for `/stream`.
///
/// Upstream sent the live database file labelled with the start of the current WAL index, so a replica that
/// applied it could show pages from different moments until it had caught up. This copy is the database file
/// taken under a read transaction, with every frame of the current index up to the position applied on top
/// (the frames come from the immutable shadow segments): exactly the state at `position`, so the replica goes
/// straight from one committed state to a later one.
public final class StreamSnapshotFile: @unchecked Sendable {
    // @unchecked: immutable after init; `fd` is only used with pread, which is thread-safe.
    let fd: FileDescriptor
    /// The shadow position the content corresponds to (sent as the record's position).
    public let position: WALPosition
    /// Size in bytes (a whole number of pages).
    public let size: UInt64
    /// The database page size.
    public let pageSize: Int
    /// When it was built.
    public let createdAt: ContinuousClock.Instant

    init(fd: FileDescriptor, position: WALPosition, size: UInt64, pageSize: Int) {
        self.fd = fd
        self.position = position
        self.size = size
        self.pageSize = pageSize
        self.createdAt = .now
    }

    /// Reads up to `buffer.count` bytes at `offset`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try fd.pread(into: buffer, at: offset)
    }
}

/// Builds and shares stream snapshots of one database: concurrent requests wait for one build, and a snapshot
/// of the current WAL index is reused rather than copying the database again for every replica.
public final class StreamSnapshotCache: Sendable {
    private let latest = Locked<StreamSnapshotFile?>(nil)
    private let buildLock = NSLock()

    /// Creates an empty cache.
    public init() {}

    /// A snapshot of `db` that is not older than its current WAL index, building one when needed. Blocks.
    public func snapshot(of db: Database) throws -> StreamSnapshotFile {
        buildLock.lock()
        defer { buildLock.unlock() }
        if let s = latest.current, let p = db.position, s.position.generation == p.generation, s.position.index == p.index {
            return s
        }
        let s = try StreamSnapshotBuilder.build(db)
        latest.withLock { $0 = s }
        return s
    }

    /// Drops the cached copy (its space is freed once the last stream reading it ends).
    public func clear() { latest.withLock { $0 = nil } }
}

/// Copies a database file and overlays shadow frames (see `StreamSnapshotFile`).
enum StreamSnapshotBuilder {
    static func build(_ db: Database) throws -> StreamSnapshotFile {
        let lease = try db.beginSnapshot()
        defer { db.endSnapshot(lease) }
        let pageSize = db.currentPageSize
        guard pageSize > 0 else { throw ReplicationError(.notFound, "no database available: \(db.path)") }
        let p = lease.position

        // An unlinked file next to the shadow WAL (same file system as the database, so the space exists).
        var template = Array((db.meta.root + "/stream-snapshot-XXXXXX").utf8CString)
        let raw = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard raw >= 0 else {
            throw Syscall.error("create stream snapshot in", path: db.meta.root, errno: errno)
        }
        let tmpPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { unlink(tmpPath) }
        Glibc.close(raw)
        let out = try FileDescriptor.open(tmpPath, flags: O_RDWR)

        // 1. The database file as the lease's read transaction pins it.
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        var copied: UInt64 = 0
        while copied < lease.size {
            let want = Int(min(UInt64(chunk.count), lease.size - copied))
            let n = try lease.read(into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<want]), at: copied)
            if n == 0 { break }
            try out.pwriteAll(UnsafeRawBufferPointer(rebasing: chunk[0..<n]), at: copied)
            copied += UInt64(n)
        }

        // 2. Every frame of the current index up to the position, in order (later frames win).
        var dbPages: UInt64 = copied / UInt64(pageSize)
        let shadow = ShadowWAL(meta: db.meta)
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: walFrameHeaderSize + pageSize, alignment: 8)
        defer { frame.deallocate() }
        for seg in try shadow.segments(p.generation, index: p.index) where seg.offset < p.offset {
            let decoder = try shadow.openSegment(seg)
            var reader = WALFrameReader(pageSize: pageSize)
            do {
                if seg.offset == 0 { _ = try reader.readHeader(decoder.read) }
                while let fh = try reader.next(into: frame, decoder.read) {
                    try out.pwriteAll(UnsafeRawBufferPointer(rebasing: frame[walFrameHeaderSize...]),
                                      at: UInt64(fh.pageNumber - 1) * UInt64(pageSize))
                    if fh.isCommit { dbPages = UInt64(fh.commitSize) }
                }
            } catch let e as ReplicationError {
                throw e.wrapped("shadow segment \(seg.path)")
            }
        }
        let size = dbPages * UInt64(pageSize)
        try out.truncate(to: size)
        return StreamSnapshotFile(fd: out, position: p, size: size, pageSize: pageSize)
    }
}
