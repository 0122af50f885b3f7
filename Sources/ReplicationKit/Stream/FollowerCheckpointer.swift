import Foundation
import Logging

/// Copies a live replica's WAL into its database file (a PASSIVE checkpoint, with SQLite's fsyncs of the WAL and
/// of the file) on a bounded pool, away from the thread that applies records.
///
/// Inline, the checkpoint's fsyncs held the follower's next records back: with 64 followers in one process each
/// checkpoint waited behind the others' writeback, and lag p99 was about 200 ms where it is about 20 ms without
/// the fsyncs. Here the applier only asks for a checkpoint; once the WAL is fully copied (`ReplicaWALIndex
/// .isFullyBackfilled`), the applier's own TRUNCATE checkpoint has nothing left to copy or sync and only empties
/// the file. The database file stays as durable as before: it is fsynced by every checkpoint.
///
/// One connection of its own, opened on the pool's thread at the first checkpoint, never used elsewhere. If the
/// checkpoints fall behind, the applier's own inline checkpoint at four times its threshold bounds the WAL.
final class FollowerCheckpointer: @unchecked Sendable {
    // @unchecked: `connection` is confined to `lane`; the rest is immutable or locked.
    private let path: String
    private let logger: Logger
    private let lane: SerialLane
    private var connection: SQLiteConnection?
    private let inFlight = Locked(false)
    private let closed = Locked(false)
    /// Checkpoints completed (for tests).
    let completed = Locked(0)

    /// Two checkpoints at a time for all the followers of the process: each is mostly fsync, and many at once
    /// only make every one of them (and the disk's other users) wait longer.
    static let pool = IOPool(kind: "follower-checkpoint", size: 2)

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        lane = SerialLane(label: "launcher.follower.checkpoint", pool: Self.pool)
    }

    /// Starts a PASSIVE checkpoint unless one is already running; returns the number completed before it, or nil
    /// when none was started (a run counts itself before it lets the next one start).
    @discardableResult
    func request() -> Int? {
        let before = inFlight.withLock { running -> Int? in
            if running { return nil }
            running = true
            return completed.current
        }
        guard let before else { return nil }
        lane.async { [self] in
            defer { inFlight.withLock { $0 = false } }
            guard !closed.current else { return }
            do {
                let c = try connectionOnLane()
                let r = try c.checkpoint(.passive)
                completed.withLock { $0 += 1 }
                logger.trace("replica checkpoint", metadata: [
                    "db": "\(path)", "mode": "PASSIVE", "log": "\(r.logFrames)", "checkpointed": "\(r.checkpointedFrames)",
                ])
            } catch {
                logger.warning("replica checkpoint failed", metadata: ["db": "\(path)", "error": "\(error.oneLine)"])
                connection?.close()
                connection = nil
            }
        }
        return before
    }

    /// Waits for a running checkpoint and closes the connection (before the applier closes its own); no
    /// checkpoint runs after.
    func close() {
        closed.withLock { $0 = true }
        lane.sync {
            connection?.close()
            connection = nil
        }
    }

    private func connectionOnLane() throws -> SQLiteConnection {
        if let c = connection { return c }
        // Persistent WAL and no checkpoint on close: closing it never deletes or rewrites the WAL and -shm the
        // applier and the readers use; it has read once, so its checkpoint knows the WAL.
        let c = try Database.openOwnConnection(path: path, busyTimeout: 0)
        connection = c
        return c
    }
}
