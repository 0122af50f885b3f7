#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The claim of one process on one database's replication: an exclusive `flock` on `<db>-litestream/lock`.
///
/// Two replicators on one database (a restarted container whose old process still runs, a cron job started
/// twice) would write the same shadow WAL and wedge each other. The lock dies with its holder (the kernel drops a
/// `flock` when the last descriptor of its open file goes away), so a crash never leaves a stale claim; the
/// descriptor is close-on-exec, so the `-exec` child never inherits it. The file names the holder for the error
/// another process prints.
public final class DatabaseLock: Sendable {
    /// The lock file.
    public let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// Takes the lock of the database at `databasePath`, creating its metadata directory (mode `directoryMode`).
    /// - Throws: `.conflict` naming the holder when another process holds it; `.io` for file-system failures.
    public static func acquire(databasePath: String, directoryMode: mode_t = 0o700) throws -> DatabaseLock {
        let meta = MetaDirectory(databasePath: databasePath)
        try FileSystem.makeDirectories(meta.root, mode: directoryMode)
        let path = meta.root + "/lock"
        let fd = try Syscall.retrying("open", path: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        let locked = try Syscall.retrying("lock", path: path) { () -> Int32 in
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return 1 }
            return errno == EWOULDBLOCK ? 0 : -1
        }
        guard locked == 1 else {
            let holder = readHolder(fd)
            close(fd)
            throw ReplicationError(.conflict, "database \(databasePath) is already replicated by another process"
                + (holder.isEmpty ? "" : " (\(holder))") + ": \(path) is locked; stop that process first "
                + "(two replicators on one database would corrupt its shadow WAL)")
        }
        let lock = DatabaseLock(path: path, fd: fd)
        lock.writeHolder()
        return lock
    }

    /// Records who holds the lock (`pid=… host=… since=…`); best effort, the lock itself is the flock.
    private func writeHolder() {
        let line = "pid=\(getpid()) host=\(Syscall.hostName()) since=\(Syscall.utcTimestamp(Date()))\n"
        let bytes = Array(line.utf8)
        _ = ftruncate(fd, 0)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    private static func readHolder(_ fd: Int32) -> String {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return "" }
        return String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "\n", with: " ")
    }
}
