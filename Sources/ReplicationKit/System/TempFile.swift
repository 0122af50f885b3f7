#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Unlinked temporary files for staged uploads and downloads of every backend (nothing is left behind on a crash).
enum TempFile {
    /// Creates a file in `$TMPDIR` (or `/tmp`), opens it read-write and unlinks it.
    /// - Throws: `.io` naming the directory and the errno text when no file can be made there.
    static func make() throws -> FileDescriptor {
        let dir = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var err: Int32 = EEXIST
        for _ in 0..<16 {
            let path = dir + "/rk-" + String(UInt64.random(in: 0...UInt64.max), radix: 36) + ".tmp"
            let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 {
                unlink(path)
                return FileDescriptor(raw: fd, path: path)
            }
            err = errno
            // A name taken (EEXIST) or a signal (EINTR): another name; anything else will not get better.
            guard err == EEXIST || err == EINTR else { break }
        }
        throw ReplicationError(.io, "cannot create a temporary file in \(dir): \(String(cString: strerror(err))) (set TMPDIR to a writable directory)")
    }
}
