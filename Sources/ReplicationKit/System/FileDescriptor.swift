#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// An owned, close-on-exec file descriptor; closed exactly once, by `close()` or on deinit.
///
/// Not Sendable: one owner uses it at a time.
public final class FileDescriptor {
    /// The raw descriptor.
    public let raw: Int32
    /// The path it was opened from, for error messages.
    public let path: String
    private var isClosed = false

    init(raw: Int32, path: String) {
        self.raw = raw
        self.path = path
    }

    deinit { if !isClosed { _ = Glibc.close(raw) } }

    /// Opens `path` read-only.
    public static func openForReading(_ path: String) throws -> FileDescriptor {
        let fd = try Syscall.retrying("open", path: path) { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        return FileDescriptor(raw: fd, path: path)
    }

    /// Creates or truncates `path` for writing with `mode`.
    public static func create(_ path: String, mode: mode_t = 0o600) throws -> FileDescriptor {
        let fd = try Syscall.retrying("create", path: path) {
            Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        }
        return FileDescriptor(raw: fd, path: path)
    }

    /// Opens `path` with raw flags (O_CLOEXEC is always added).
    public static func open(_ path: String, flags: Int32, mode: mode_t = 0o600) throws -> FileDescriptor {
        let fd = try Syscall.retrying("open", path: path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(raw: fd, path: path)
    }

    /// Reads up to `buffer.count` bytes at the current offset; 0 means end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        return try Syscall.retrying("read", path: path) { Glibc.read(raw, base, buffer.count) }
    }

    /// Reads up to `buffer.count` bytes at `offset`, looping over short reads; returns fewer only at end of file.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let n = try Syscall.retrying("read", path: path) {
                Glibc.pread(raw, base + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads exactly `count` bytes at `offset`, or fewer at end of file.
    public func pread(count: Int, at offset: UInt64) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try pread(into: $0, at: offset) }
        if n < count { out.removeLast(count - n) }
        return out
    }

    /// Writes all of `bytes` at the current offset.
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = try Syscall.retrying("write", path: path) { Glibc.write(raw, base + done, bytes.count - done) }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset` (the file offset does not move).
    public func pwriteAll(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try Self.pwriteAll(raw, path: path, bytes, at: offset)
    }

    /// `pwriteAll` on a raw descriptor (`path` names it in errors), for threads that share one file.
    static func pwriteAll(_ fd: Int32, path: String, _ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            done += try Syscall.retrying("write", path: path) {
                Glibc.pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
            }
        }
    }

    /// Writes all of `bytes` at the current offset.
    public func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeAll($0) }
    }

    /// Flushes the file's data and metadata to stable storage.
    public func sync() throws {
        try Syscall.retrying("fsync", path: path) { Glibc.fsync(raw) }
    }

    /// The file's current size in bytes.
    public func size() throws -> UInt64 {
        var st = stat()
        try Syscall.retrying("stat", path: path) { fstat(raw, &st) }
        return UInt64(st.st_size)
    }

    /// Truncates the file to `length` bytes.
    public func truncate(to length: UInt64) throws {
        try Syscall.retrying("truncate", path: path) { ftruncate(raw, off_t(length)) }
    }

    /// Moves the file offset to `offset` from the start.
    public func seek(to offset: UInt64) throws {
        try Syscall.retrying("seek", path: path) { lseek(raw, off_t(offset), SEEK_SET) }
    }

    /// Closes the descriptor; errors from close are reported (they can mean lost writes on NFS).
    public func close() throws {
        guard !isClosed else { return }
        isClosed = true
        if Glibc.close(raw) != 0 && errno != EINTR {
            throw Syscall.error("close", path: path, errno: errno)
        }
    }
}
