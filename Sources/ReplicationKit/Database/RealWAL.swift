#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The application's `-wal` file as the sync reads it: a descriptor kept across syncs, and the scratch buffer the
/// copy reads frames through.
///
/// Used on the database's queue only.
final class RealWAL {
    /// Path of the `-wal` file.
    let path: String
    private var file: (fd: FileDescriptor, id: (UInt64, UInt64))?
    /// The anonymous mapping scan buffers are views of (see `scanBuffer`).
    private var mapping: UnsafeMutableRawBufferPointer?
    /// A heap block used instead when mmap fails (for one sync).
    private var heapFallback: UnsafeMutableRawBufferPointer?
    /// Whether the buffer outlives small batches until `releaseBuffer` (see `endSync`).
    let keepBufferUntilIdle: Bool
    /// WAL bytes the last copy took (sizes the next read and the buffer).
    var lastCopyBytes: UInt64 = 0

    /// Size of the scratch buffer (at least 64 frames for pages over 4 KiB). The sync's copy streams its batch
    /// through it (`CommittedFrameReader`); a buffer the size of a 1 s batch at 1,000 tx/s (4 MiB) was a sixth of
    /// the replicating process's peak RSS (bench/RESULTS.md, session 9).
    static let bufferSize = 256 * 1024
    /// Batches smaller than this do not keep their buffer between syncs.
    static let keepBufferFrom: UInt64 = 64 * 1024
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    init(path: String, keepBufferUntilIdle: Bool = false) {
        self.path = path
        self.keepBufferUntilIdle = keepBufferUntilIdle
    }

    deinit {
        releaseBuffer()
        heapFallback?.deallocate()
    }

    /// Runs `body` with a read-only descriptor of the `-wal` file and its size; nil when it does not exist.
    ///
    /// The descriptor is kept between calls (several per sync) and reopened when the path names another file
    /// (SQLite deletes and recreates the WAL when the last connection closes): one `stat` per call instead of
    /// open, fstat and close. SQLite takes no POSIX locks on the `-wal` file, so holding or closing it is harmless.
    func read<T>(_ body: (FileDescriptor, UInt64) throws -> T) throws -> T? {
        var st = stat()
        guard try Syscall.statOrNil(path, &st) else {
            file = nil
            return nil
        }
        let id = (UInt64(st.st_dev), UInt64(st.st_ino))
        if file == nil || file!.id != id {
            file = nil
            let fd: FileDescriptor
            do { fd = try FileDescriptor.openForReading(path) } catch let e as ReplicationError where e.code == .notFound {
                return nil
            }
            file = (fd, id)
        }
        return try body(file!.fd, UInt64(st.st_size))
    }

    /// The scratch buffer for one sync's reads: `bufferSize`, or 64 frames when that is more.
    ///
    /// The buffer is a view of an anonymous mapping of its own, not a malloc block: the database's syncs run on
    /// whichever thread of the database pool is free, and a malloc block lives in the arena of the thread that
    /// allocated it, so every pool thread's arena ended up holding the pages of a buffer it had once allocated (1-3
    /// MB each, replicating one database at 1,000 tx/s). Only the pages a scan reads into become resident, and they
    /// stay for the next sync until the buffer is released (see `endSync`).
    func scanBuffer(frameSize: Int) -> UnsafeMutableRawBufferPointer {
        let want = max(Self.bufferSize, 64 * frameSize)
        if let m = mapping, m.count < want { releaseBuffer() }
        if mapping == nil {
            let size = (want + Self.pageSize - 1) / Self.pageSize * Self.pageSize
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let p, p != MAP_FAILED else {
                // No address space for a mapping: a heap block, for this sync only.
                let b = UnsafeMutableRawBufferPointer.allocate(byteCount: want, alignment: 16)
                heapFallback?.deallocate()
                heapFallback = b
                return b
            }
            mapping = UnsafeMutableRawBufferPointer(start: p, count: size)
        }
        return UnsafeMutableRawBufferPointer(rebasing: mapping![0..<want])
    }

    /// Ends a sync. Without `keepBufferUntilIdle`, a sync whose batch was small gives the buffer back at once (an
    /// idle database holds none: with a thousand databases, 256 KiB each was most of the process's memory); with
    /// it, the buffer stays until `releaseBuffer` (the database's idle release), so a busy database whose batches
    /// vary does not map and fault in its buffer again and again.
    func endSync() {
        if lastCopyBytes < Self.keepBufferFrom && !keepBufferUntilIdle { releaseBuffer() }
        heapFallback?.deallocate()
        heapFallback = nil
    }

    /// Gives the buffer back (its pages with it).
    func releaseBuffer() {
        if let m = mapping { munmap(m.baseAddress, m.count) }
        mapping = nil
    }

    /// The mapping's address and size, nil when none is held (for tests).
    var mappedRegion: UnsafeMutableRawBufferPointer? { mapping }

    /// Whether a scratch buffer is held (for tests).
    var holdsBuffer: Bool { mapping != nil || heapFallback != nil }

    /// Closes the descriptor (the buffer goes with `releaseBuffer`, the next `endSync` or the object).
    func close() { file = nil }
}
