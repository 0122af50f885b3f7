#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A consistent view of the database file held open while a replica uploads a snapshot.
///
/// While the lease's read transaction is open, no checkpoint can write page versions newer than the shadow WAL
/// position into the database file, so the snapshot never runs ahead of its label (REPLICATION §11 item 14).
public final class SnapshotLease: @unchecked Sendable {
    // @unchecked: `connection` is only used by `Database.endSnapshot` on the database queue.
    let connection: SQLiteConnection
    /// The shadow position when the snapshot view was taken; the snapshot is labelled with its index.
    public let position: WALPosition
    /// Size of the database file when the view was taken.
    public let size: UInt64
    let fd: Int32
    let path: String

    init(connection: SQLiteConnection, position: WALPosition, size: UInt64, fd: Int32, path: String) {
        self.connection = connection
        self.position = position
        self.size = size
        self.fd = fd
        self.path = path
    }

    /// Reads database bytes at `offset` (pread on the database's long-lived descriptor; thread-safe).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        return try Syscall.retrying("read", path: path) { Glibc.pread(fd, base, buffer.count, off_t(offset)) }
    }
}

/// Where a replica's snapshots come from: a consistent view of the database file at a shadow position.
public protocol SnapshotSource: AnyObject, Sendable {
    /// Takes the view; `endSnapshot` must follow.
    func beginSnapshot() throws -> SnapshotLease
    /// Ends a view taken by `beginSnapshot`.
    func endSnapshot(_ lease: SnapshotLease)
}

extension Database: SnapshotSource {
    /// Takes a read transaction, syncs the shadow WAL past it, and returns the view for a snapshot.
    public func beginSnapshot() throws -> SnapshotLease {
        try onQueue {
            try openIfNeeded()
            guard readGuard != nil, let fd = databaseFD else {
                throw ReplicationError(.notFound, "no database available: \(path)")
            }
            let s = try Self.openOwnConnection(path: path, busyTimeout: options.busyTimeoutMilliseconds)
            try s.exec("BEGIN;")
            _ = try s.queryInt("SELECT COUNT(1) FROM _litestream_seq;")
            activeSnapshots += 1
            do {
                try syncOnQueue()
                // A database created in WAL mode may still be a 0-byte file, and SQLite ignores (and deletes) a
                // WAL next to an empty database, so such a snapshot could not be restored: checkpoint first.
                // Only then (upstream always does it): a complete checkpoint lets the WAL restart as soon as our
                // guard is gone, which costs a new generation at our next start. The checkpoint cannot write
                // anything newer than the shadow WAL holds: our read guard began before the copy just made.
                if try fd.size() < UInt64(pageSize), let w = try? writer(), let r = try? w.checkpoint(.passive) {
                    logger.debug("pre-snapshot checkpoint(PASSIVE): [\(r.busy ? 1 : 0),\(r.logFrames),\(r.checkpointedFrames)]")
                }
                // Everything committed before the snapshot's read mark is now copied, so the shadow covers it.
                try syncOnQueue()
                guard let pos = cursor?.position else { throw ReplicationError(.notFound, "no generation available") }
                return SnapshotLease(connection: s, position: pos, size: try fd.size(), fd: fd.raw, path: path)
            } catch {
                activeSnapshots -= 1
                try? s.exec("ROLLBACK;")
                s.close()
                throw error
            }
        }
    }

    /// Ends a snapshot view.
    public func endSnapshot(_ lease: SnapshotLease) {
        onQueue {
            try? lease.connection.exec("ROLLBACK;")
            lease.connection.close()
            activeSnapshots -= 1
            noteActivity()
        }
    }
}
