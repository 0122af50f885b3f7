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
    private var buffer: UnsafeMutableRawBufferPointer?
    /// WAL bytes the last copy took (sizes the next read and the buffer).
    var lastCopyBytes: UInt64 = 0

    /// Largest scratch buffer. A batch that does not fit is read twice (found, then verified and copied in
    /// pieces); a buffer the size of a 1 s batch at 1,000 tx/s (4 MiB) saved no measurable CPU and was a sixth of
    /// the replicating process's peak RSS (bench/RESULTS.md, session 9). Pages over 4 KiB get 64 frames anyway.
    static let maxBuffer = 256 * 1024
    /// Batches smaller than this do not keep their buffer between syncs.
    static let keepBufferFrom: UInt64 = 64 * 1024

    init(path: String) { self.path = path }

    deinit { buffer?.deallocate() }

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

    /// A scratch buffer for one sync's reads: at least 64 frames and 256 KiB, grown to hold the `expected` bytes of
    /// a batch (up to `maxBuffer`), and shrunk again once batches are small.
    func scanBuffer(frameSize: Int, expected: UInt64) -> UnsafeMutableRawBufferPointer {
        let floor = max(256 * 1024, 64 * frameSize)
        let fit = expected > UInt64(Self.maxBuffer) ? Self.maxBuffer : Int(expected)
        let want = max(floor, (fit + frameSize - 1) / frameSize * frameSize)
        if let b = buffer, b.count >= want, b.count == floor || b.count <= 4 * want { return b }
        buffer?.deallocate()
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: want, alignment: 16)
        buffer = b
        return b
    }

    /// Ends a sync: the buffer is kept only while batches are large (a busy database), so an idle one holds none
    /// (with a thousand databases, 256 KiB each was most of the process's memory).
    func endSync() {
        if lastCopyBytes < Self.keepBufferFrom, let b = buffer {
            b.deallocate()
            buffer = nil
        }
    }

    /// Whether a scratch buffer is held (for tests).
    var holdsBuffer: Bool { buffer != nil }

    /// Closes the descriptor (the buffer goes with the next `endSync` or the object).
    func close() { file = nil }
}
