#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The lease object of a file replica: `<root>/lease.json`, changed only under an exclusive `flock` on
/// `<root>/lease.json.lock` (held for one read-compare-write), written to a temporary file and renamed into place,
/// so readers see the old or the new object, never a mix. The version is a digest of the content.
///
/// Two launchers sharing the directory (one host, or a network file system with working `flock`) therefore get a
/// true compare-and-swap: the lock makes the comparison and the rename one step.
public final class FileLeaseStore: LeaseStore {
    /// The replica directory.
    public let root: String
    private let timeout: Duration

    /// A store in the replica directory `root`; waiting for the lock gives up after `timeout`.
    public init(root: String, timeout: Duration) {
        self.root = root
        self.timeout = timeout
    }

    public var location: String { root + "/" + LeasePaths.object }
    private var lockPath: String { location + ".lock" }

    static func version(_ data: [UInt8]) -> String { Digest.hex(Array(Digest.sha256(data).prefix(16))) }

    public func readLease() throws -> LeaseObject? {
        try FileSystem.readSmallFile(location).map { LeaseObject(data: $0, version: Self.version($0)) }
    }

    public func createLease(_ data: [UInt8]) throws -> String {
        try withLock {
            if FileSystem.exists(location) {
                throw ReplicationError(.conflict, "lease object \(location) already exists")
            }
            try write(data)
        }
        return Self.version(data)
    }

    public func replaceLease(_ data: [UInt8], ifMatch version: String) throws -> String {
        try withLock {
            guard let current = try FileSystem.readSmallFile(location), Self.version(current) == version else {
                throw ReplicationError(.conflict, "lease object \(location) changed")
            }
            try write(data)
        }
        return Self.version(data)
    }

    public func deleteLease(ifMatch version: String) throws {
        try withLock {
            guard let current = try FileSystem.readSmallFile(location) else { return }
            guard Self.version(current) == version else {
                throw ReplicationError(.conflict, "lease object \(location) changed")
            }
            try FileSystem.remove(location)
            try FileSystem.syncDirectory(root)
        }
    }

    private func write(_ data: [UInt8]) throws {
        try FileSystem.writeAtomically(location, mode: 0o644) { fd in
            try fd.writeAll(data)
        }
    }

    /// Runs `body` holding the exclusive lock, creating the replica directory if needed.
    private func withLock<T>(_ body: () throws -> T) throws -> T {
        try FileSystem.makeDirectories(root)
        let path = lockPath
        let fd = try Syscall.retrying("open", path: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644) }
        defer { close(fd) }
        let deadline = ContinuousClock.now + timeout
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let err = errno
            guard err == EWOULDBLOCK || err == EINTR else {
                throw ReplicationError(.io, "lock \(path): \(String(cString: strerror(err)))")
            }
            guard ContinuousClock.now < deadline else {
                throw ReplicationError(.io, "lock \(path): still held by another process after \(GoDuration.format(timeout))")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return try body()
    }
}

extension FileReplicaClient: LeaseCapableClient {
    public func leaseStore(timeout: Duration) throws -> any LeaseStore { FileLeaseStore(root: root, timeout: timeout) }
}
