#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// File plumbing of a restore: streaming decompression, leftovers, and a rename that never replaces.
enum RestoreFiles {
    /// Size of the decompression buffer (bounded memory however large the object is).
    static let bufferSize = 256 * 1024

    /// The error raised when a restore is stopped from outside.
    static let cancelled = ReplicationError(.cancelled, "restore cancelled")

    /// Streams the LZ4 frame read from `source` into `fd`, returning the number of decompressed bytes written.
    ///
    /// `isCancelled` is polled before every read of the source.
    static func decompress(_ source: any ByteSource, to fd: FileDescriptor,
                           isCancelled: @escaping () -> Bool = { false }) throws -> UInt64 {
        let decoder = try LZ4FrameDecoder { buffer in
            if isCancelled() { throw RestoreFiles.cancelled }
            return try source.read(into: buffer)
        }
        return try decoder.forEachChunk(bufferSize: bufferSize) { try fd.writeAll($0) }
    }

    /// Turns any error into a ReplicationError whose message is prefixed by `context` (LZ4 errors count as corrupt data).
    static func wrap(_ error: any Error, _ context: String) -> ReplicationError {
        if let e = error as? ReplicationError { return e.wrapped(context) }
        if error is LZ4Error { return ReplicationError(.corrupt, "\(context): \(error.oneLine)", cause: ReplicationError.cause(of: error)) }
        return ReplicationError(.other, "\(context): \(error.oneLine)", cause: ReplicationError.cause(of: error))
    }

    /// `<prefix>-<index %016x>-wal`: where one downloaded WAL index is assembled.
    static func walPath(prefix: String, index: UInt32) -> String {
        "\(prefix)-\(Hex.format(index, width: 16))-wal"
    }

    /// Removes what an earlier, failed restore to `output` may have left: `<out>.tmp` and its `-wal`/`-shm`/`-journal`,
    /// downloaded `<out>.tmp-<index>-wal` files, and orphaned `<out>-wal`/`-shm`/`-journal` that SQLite would otherwise replay.
    static func removeLeftovers(output: String) throws {
        let tmp = output + ".tmp"
        for p in [tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal",
                  output + "-wal", output + "-shm", output + "-journal"] {
            try FileSystem.remove(p)
        }
        let dir = parentDirectory(of: output)
        let base = (tmp as NSString).lastPathComponent + "-"
        for name in try FileSystem.list(dir) where name.hasPrefix(base) && name.hasSuffix("-wal") {
            let middle = name.dropFirst(base.count).dropLast(4)
            if Hex.parseStrict(middle, width: 16) != nil { try FileSystem.remove(dir + "/" + name) }
        }
    }

    /// The directory holding `path` (`.` for a bare file name).
    static func parentDirectory(of path: String) -> String {
        let d = (path as NSString).deletingLastPathComponent
        return d.isEmpty ? "." : d
    }

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>?, Int32, UnsafePointer<CChar>?, UInt32) -> Int32

    /// Renames `from` to `to` only if `to` does not exist, atomically where the platform allows it:
    /// renameat2(RENAME_NOREPLACE), else link(2) + unlink, else an existence check right before rename(2).
    static func renameNoReplace(_ from: String, to: String) throws {
        let exists = ReplicationError(.conflict, "output file already exists: \(to)")
        // glibc ≥ 2.28 exports renameat2, but Swift's Glibc module does not declare it; look it up at run time.
        if let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") {
            let renameat2 = unsafeBitCast(sym, to: RenameAt2.self)
            let noReplace: UInt32 = 1  // RENAME_NOREPLACE
            while true {
                if renameat2(AT_FDCWD, from, AT_FDCWD, to, noReplace) == 0 { return }
                let e = errno
                if e == EINTR { continue }
                if e == EEXIST { throw exists }
                if e == EINVAL || e == ENOSYS || e == EOPNOTSUPP { break }  // file system without NOREPLACE support
                throw Syscall.error("rename", path: "\(from) to \(to)", errno: e)
            }
        }
        if link(from, to) == 0 {
            if unlink(from) != 0 {
                let e = errno
                _ = unlink(to)
                throw Syscall.error("remove", path: from, errno: e)
            }
            return
        }
        let e = errno
        if e == EEXIST { throw exists }
        guard e == EPERM || e == EOPNOTSUPP || e == ENOSYS || e == EMLINK else {
            throw Syscall.error("link", path: "\(from) to \(to)", errno: e)
        }
        // No hard links here (e.g. some network or FUSE file systems): best effort.
        if FileSystem.exists(to) { throw exists }
        try FileSystem.rename(from, to: to)
    }
}
