#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Metadata of a file system entry.
public struct FileInfo: Sendable {
    /// Size in bytes.
    public var size: UInt64
    /// Modification time.
    public var modified: Date
    /// Permission bits.
    public var mode: mode_t
    /// Whether the entry is a directory.
    public var isDirectory: Bool
    /// Owner user and group.
    public var uid: uid_t
    public var gid: gid_t
}

/// Thin wrappers over POSIX file operations, each failing with an error that names the path.
///
/// These calls block: callers run them on dedicated threads or dispatch queues, never on the Swift cooperative pool.
public enum FileSystem {
    /// Returns the entry's metadata, or nil when it does not exist.
    public static func info(_ path: String) throws -> FileInfo? {
        var st = stat()
        while true {
            if stat(path, &st) == 0 { break }
            let e = errno
            if e == EINTR { continue }
            if e == ENOENT || e == ENOTDIR { return nil }
            throw Syscall.error("stat", path: path, errno: e)
        }
        let mtime = Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)
        return FileInfo(size: UInt64(st.st_size), modified: mtime, mode: st.st_mode & 0o7777,
                        isDirectory: (st.st_mode & S_IFMT) == S_IFDIR, uid: st.st_uid, gid: st.st_gid)
    }

    /// The path with symbolic links and `..` resolved as far as it exists: the deepest existing ancestor is passed
    /// through `realpath(3)` and the missing rest appended, so two spellings of one file compare equal before the
    /// file is created.
    public static func resolvedPath(_ path: String) -> String {
        var missing: [String] = []
        var current = GoPath.clean(path)
        while true {
            if let r = realpath(current, nil) {
                defer { free(r) }
                let base = String(cString: r)
                return missing.isEmpty ? base : GoPath.clean(base + "/" + missing.reversed().joined(separator: "/"))
            }
            let parent = (current as NSString).deletingLastPathComponent
            if parent == current || parent.isEmpty { return GoPath.clean(path) }
            missing.append((current as NSString).lastPathComponent)
            current = parent
        }
    }

    /// Whether something exists at `path`.
    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Creates `path` and its missing parents with `mode`.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws {
        if let i = try info(path) {
            if i.isDirectory { return }
            throw ReplicationError(.io, "mkdir \(path): a file with that name exists, not a directory")
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try makeDirectories(parent, mode: mode) }
        while mkdir(path, mode) != 0 {
            let e = errno
            if e == EINTR { continue }
            if e == EEXIST { return }
            throw Syscall.error("mkdir", path: path, errno: e)
        }
    }

    /// Lists the names in a directory; a missing directory is empty.
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            let e = errno
            if e == ENOENT || e == ENOTDIR { return [] }
            throw Syscall.error("list", path: path, errno: e)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes a file; a missing file is not an error.
    public static func remove(_ path: String) throws {
        while unlink(path) != 0 {
            let e = errno
            if e == EINTR { continue }
            if e == ENOENT { return }
            throw Syscall.error("remove", path: path, errno: e)
        }
    }

    /// Removes a directory tree; a missing tree is not an error.
    public static func removeTree(_ path: String) throws {
        guard let i = try info(path) else { return }
        if i.isDirectory {
            for name in try list(path) { try removeTree(path + "/" + name) }
            while rmdir(path) != 0 {
                let e = errno
                if e == EINTR { continue }
                if e == ENOENT { return }
                throw Syscall.error("remove", path: path, errno: e)
            }
        } else {
            try remove(path)
        }
    }

    /// Removes an empty directory; a missing or non-empty one is left alone.
    public static func removeEmptyDirectory(_ path: String) {
        _ = rmdir(path)
    }

    /// Renames `from` to `to`, replacing `to`.
    public static func rename(_ from: String, to: String) throws {
        try Syscall.retrying("rename", path: "\(from) to \(to)") { Glibc.rename(from, to) }
    }

    /// Flushes a directory's entries (after a create or rename) to stable storage.
    public static func syncDirectory(_ path: String) throws {
        let fd = try FileDescriptor.openForReading(path.isEmpty ? "." : path)
        try fd.sync()
        try fd.close()
    }

    /// Reads a whole small file; nil when it does not exist.
    public static func readSmallFile(_ path: String) throws -> [UInt8]? {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.openForReading(path) } catch let e as ReplicationError where e.code == .notFound {
            return nil
        }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try buf.withUnsafeMutableBytes { try fd.read(into: $0) }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        try fd.close()
        return out
    }

    /// Writes a file durably: to `<path>.tmp`, fsync, rename over `path`, fsync the directory.
    ///
    /// `body` receives the open temp file and writes the content into it.
    public static func writeAtomically(_ path: String, mode: mode_t = 0o600,
                                       body: (FileDescriptor) throws -> Void) throws {
        let tmp = path + ".tmp"
        let fd = try FileDescriptor.create(tmp, mode: mode)
        do {
            try body(fd)
            try fd.sync()
            try fd.close()
            try rename(tmp, to: path)
        } catch {
            try? fd.close()
            try? remove(tmp)
            throw error
        }
        // The rename is only durable once the directory entry is on disk.
        try syncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// Sets a file's modification time (used by tests and to keep replica timestamps meaningful).
    public static func setModified(_ path: String, to date: Date) throws {
        var times = [timespec](repeating: timespec(), count: 2)
        let secs = date.timeIntervalSince1970
        times[0].tv_sec = Int(secs); times[0].tv_nsec = Int((secs - floor(secs)) * 1e9)
        times[1] = times[0]
        try Syscall.retrying("set time of", path: path) { utimensat(AT_FDCWD, path, times, 0) }
    }
}
