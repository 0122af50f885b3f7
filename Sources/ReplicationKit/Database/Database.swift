#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Receives word that the shadow WAL of a database grew or changed generation.
public protocol ShadowObserver: AnyObject, Sendable {
    /// Called on the database's queue after segments were written; must return quickly.
    func shadowDidChange()
}

/// One tracked database: holds the read guard, copies committed frames into the shadow WAL, checkpoints.
///
/// All mutable state is confined to `queue`, a serial lane on the bounded `database` pool (`IOPool`; never the
/// Swift cooperative pool, because every operation here blocks on SQLite or the file system). A private serial
/// dispatch queue per database let libdispatch start a thread for each database with work at the same time: up to
/// 276 threads with 1,000 databases.
// @unchecked: mutable state is only touched on `queue` (see `onQueue`).
public final class Database: @unchecked Sendable {
    /// Absolute path of the database file.
    public let path: String
    /// Tuning.
    public let options: DatabaseOptions
    /// Paths of the metadata directory.
    public let meta: MetaDirectory
    let logger: Logger
    let queue: SerialLane

    // Confined to `queue`.
    var shadow: ShadowWAL
    var readGuard: ReadGuard?               // the long-lived read transaction (see `ReadGuard`)
    var openFinished = false                // `openIfNeeded` done; the guard alone may be held before (`hold()`)
    var writeConnection: SQLiteConnection?  // our own small writes and checkpoints; opened by `writer()`, closed when idle
    var lastActivity = ContinuousClock.now   // end of the last sync, checkpoint or snapshot
    var idleCheckScheduled = false
    var databaseFD: FileDescriptor?          // long-lived: closing any descriptor of the file drops SQLite's locks
    var pageSize = 0
    var cursor: ShadowCursor?
    var lastClean: CleanKey?
    lazy var positionFile = PositionFile(path: meta.positionFile, mode: shadow.fileMode)
    let realWAL: RealWAL  // the application's -wal: the descriptor and scratch buffer every sync reads through
    var activeSnapshots = 0
    var closed = false
    var lastSyncDone = false                 // `lastSync()` ran: background syncs are no-ops until close

    /// When the scheduled sync is due, while one is scheduled and has not started yet.
    let syncPending = Locked<ContinuousClock.Instant?>(nil)
    /// The batching delay in force (see `DatabaseOptions.maxMonitorDelayInterval`).
    let currentDelay: Locked<Duration>
    /// The seam to the consumers of the shadow WAL: this database publishes to it, they read from it.
    public let shadowLog: ShadowLog
    /// Syncs failed in a row (0 after a good one), since when, and the last error: for `/readyz` and the logs.
    public let syncFailures = Locked<SyncFailures>(SyncFailures())
    /// Failed syncs in a row after which the database is closed and reopened from scratch.
    static let revalidateAfterFailures = 3

    /// Creates a tracker for the database at `path` (nothing is opened yet).
    public init(path: String, options: DatabaseOptions = DatabaseOptions(), logger: Logger) {
        self.path = path
        self.options = options
        self.meta = MetaDirectory(databasePath: path)
        self.shadow = ShadowWAL(meta: meta)
        self.shadowLog = ShadowLog(meta: meta)
        self.realWAL = RealWAL(path: meta.walPath, keepBufferUntilIdle: options.idleConnectionDelay > .zero)
        var l = logger
        l[metadataKey: "db"] = "\(path)"
        self.logger = l
        self.queue = SerialLane(label: "launcher.db.\(path)", pool: IOPool.shared(kind: "database"))
        self.currentDelay = Locked(options.monitorDelayInterval)
        // Upstream's database series exist (at 0) as soon as the database object does.
        DatabaseMetrics.register(path: path)
    }

    /// Runs `body` on the database queue and returns its result.
    func onQueue<T>(_ body: () throws -> T) rethrows -> T {
        precondition(!queue.isCurrent, "Database.onQueue called from its own queue")
        return try queue.syncInOrder(body)
    }

    /// The current shadow position (end of copied data), or nil before the first sync.
    public var position: WALPosition? { shadowLog.position }

    /// Whether the database is open and tracked.
    public var isOpen: Bool { onQueue { readGuard != nil } }

    /// The database page size, once open.
    public var currentPageSize: Int { onQueue { pageSize } }

    /// Opens and syncs now; throws when the file exists but cannot be tracked (so startup can fail clearly).
    public func start() throws {
        try onQueue {
            try openIfNeeded()
            if readGuard != nil { try syncOnQueue() }
        }
    }

    /// Asks for a sync after `monitorDelayInterval`; bursts of requests collapse into one sync.
    ///
    /// Called for every file event; while a sync is already pending it costs one uncontended lock, no thread wake-up.
    /// Returns when the pending sync is due, so the file watcher can stop reading events until then (they could
    /// only ask for the same sync again).
    @discardableResult
    public func notifyChanged() -> ContinuousClock.Instant {
        let delay = currentDelay.current
        let (alreadyPending, due) = syncPending.withLock { pending -> (Bool, ContinuousClock.Instant) in
            if let due = pending { return (true, due) }
            let due = ContinuousClock.now + delay
            pending = due
            return (false, due)
        }
        if alreadyPending { return due }
        let run: @Sendable () -> Void = { [self] in
            // Cleared before the sync reads anything, so a change made during the sync schedules another one.
            syncPending.withLock { $0 = nil }
            guard !closed, !lastSyncDone else { return }
            do {
                let before = cursor?.position
                try syncOnQueue()
                adaptDelay(copied: cursor?.position != before)
                let recovered = syncFailures.withLock { f in defer { f = SyncFailures() }; return f.count }
                if recovered > 0 { logger.info("sync recovered after \(recovered) failed attempts") }
            } catch {
                let (n, isNew) = syncFailures.withLock { f -> (Int, Bool) in
                    f.count += 1
                    if f.since == nil { f.since = Date() }
                    let isNew = f.lastError != error.oneLine
                    f.lastError = error.oneLine
                    return (f.count, isNew)
                }
                // One line per change of state (a new error), not one per retry: a full disk would otherwise log
                // every second until space returns. Every failure is still counted in the metrics and /readyz.
                if isNew {
                    logger.error("sync error: \(error.oneLine)")
                } else {
                    logger.debug("sync error (again, \(n) in a row): \(error.oneLine)")
                }
                if n == Self.revalidateAfterFailures {
                    // Whatever wedged the cursor, the connections or the read guard: start over from the files, as
                    // at startup (a continuity check that cannot be proven starts a new generation).
                    logger.warning("sync failed \(n) times in a row; re-validating \(path) from scratch")
                    closeHandles()
                } else if n > Self.revalidateAfterFailures && n % Self.revalidateAfterFailures == 0 {
                    closeHandles()
                }
                // Retry even if the application stays idle, so a transient failure never strands frames.
                queue.asyncAfter(.seconds(1)) { [self] in if !closed { notifyChanged() } }
            }
        }
        if delay > .zero {
            queue.asyncAfter(delay, run)
        } else {
            queue.async(run)
        }
        return due
    }

    /// Doubles the batching delay while syncs keep finding new frames, back to the minimum after an idle one.
    private func adaptDelay(copied: Bool) {
        let minimum = options.monitorDelayInterval
        // Batching trades latency for CPU; a live stream client wants every commit as soon as possible.
        let maximum = shadowLog.streamCount > 0 ? minimum : max(options.maxMonitorDelayInterval, minimum)
        currentDelay.withLock { d in
            d = copied ? min(max(d * 2, .milliseconds(1)), maximum) : minimum
        }
    }

    /// Runs one sync now, on the caller's thread (waits for the queue).
    public func sync() throws {
        try onQueue { try syncOnQueue() }
    }

    /// The final sync's copy, the last before `close()`: syncs now, then turns the background syncs still
    /// scheduled (file events, retries) into no-ops. The app has exited, so they could only find what this one
    /// did, and each costs the close that waits for the lane a full sync (0.3 ms) on top of the lane's hand-off.
    public func lastSync() throws {
        try onQueue {
            try syncOnQueue()
            lastSyncDone = true
        }
    }

    /// Final sync (none after a successful `lastSync()`: the app has exited, and nothing can have been committed
    /// since), then releases the read guard and closes connections and descriptors.
    public func close() throws {
        try onQueue {
            guard !closed else { return }
            var firstError: (any Error)?
            if !lastSyncDone, readGuard != nil {
                do { try syncOnQueue() } catch { firstError = error }
            }
            closed = true
            closeHandles(shutdown: true)
            if let e = firstError { throw e }
        }
    }

    /// Releases everything SQLite and the file system hold for this database (connections before the raw fd).
    /// Only at `shutdown` may the last connection checkpoint as it closes (see `ReadGuard.close`).
    func closeHandles(shutdown: Bool = false) {
        openFinished = false
        writeConnection?.close()
        writeConnection = nil
        readGuard?.close(shutdown: shutdown)
        readGuard = nil
        // The raw descriptor is closed last: closing it while SQLite holds POSIX locks would drop them.
        try? databaseFD?.close()
        databaseFD = nil
        realWAL.close()
        positionFile.close()
        cursor = nil
        shadowLog.publish(nil, notify: false)
    }
}

/// A database's run of failed syncs.
public struct SyncFailures: Sendable, Equatable {
    /// Failed syncs in a row.
    public var count = 0
    /// When the first of them failed.
    public var since: Date?
    /// The last one's error.
    public var lastError: String?

    /// No failure.
    public init() {}
}

/// What the shadow cleaner's decisions depend on; it reruns only when this changes.
struct CleanKey: Equatable {
    var generation: Generation?
    var index: UInt32?
    var replicaIndexes: [UInt32?]
}

extension Duration {
    /// Seconds as a TimeInterval.
    public var timeInterval: TimeInterval {
        let c = components
        return TimeInterval(c.seconds) + TimeInterval(c.attoseconds) / 1e18
    }
}
