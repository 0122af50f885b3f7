#if canImport(Glibc)
import Glibc
#endif

/// The metadata directory's `position` file (`G/I:O`, 16 hex digits each, and a newline), kept open and
/// rewritten in place with one `pwrite`: a sync writes it after every shadow segment, and creating it anew each
/// time cost an open, a truncate and a close. Not fsynced, as upstream; only this process writes it.
final class PositionFile {
    let path: String
    private let mode: mode_t
    private var fd: FileDescriptor?
    private var length = 0

    init(path: String, mode: mode_t) {
        self.path = path
        self.mode = mode
    }

    /// Writes `pos`, opening (or creating) the file on first use.
    func write(_ pos: WALPosition) throws {
        let line = Array((pos.description + "\n").utf8)
        let f: FileDescriptor
        if let open = fd {
            f = open
        } else {
            f = try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_CLOEXEC, mode: mode)
            fd = f
            length = -1
        }
        try line.withUnsafeBytes { try f.pwriteAll($0, at: 0) }
        if line.count != length {
            try f.truncate(to: UInt64(line.count))
            length = line.count
        }
    }

    /// Closes the file; the next write opens it again (it may have been removed meanwhile).
    func close() {
        try? fd?.close()
        fd = nil
    }
}
