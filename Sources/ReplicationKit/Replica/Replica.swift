import Foundation
import Logging

/// Streams one database's shadow WAL to one destination: WAL segments, snapshots, retention (REPLICATION §7).
///
/// All mutable state is confined to `queue`; every operation blocks on the client, so it never runs on the
/// Swift cooperative pool.
// @unchecked: mutable state is only touched on `queue`.
public final class Replica: ShadowObserver, @unchecked Sendable {
    /// The replica's name (unique per database).
    public let name: String
    /// The replica type (`file`, `s3`, …), from its client.
    public var type: String { client.type }
    /// Where the objects go.
    public let client: any ReplicaClient
    /// Timing.
    public let options: ReplicaOptions
    /// What the replica consumes: the database's shadow log (segments in, the position it holds back out).
    let log: ShadowLog
    /// Where snapshots come from (the database file, through a read transaction).
    let snapshots: any SnapshotSource
    /// The database's path (metric labels, queue name).
    let databasePath: String
    let logger: Logger
    /// Runs every operation of this replica, one at a time, on the bounded I/O pool of its backend type.
    let queue: SerialLane

    // Confined to `queue`.
    var position: WALPosition?          // end of the data known to be on the replica
    var syncScheduled = false
    var stopped = false
    var failures = 0
    var timers: [any DispatchSourceTimer] = []

    /// Whether a wake-up from the database is already on its way to `queue`.
    let wakePending = Locked(false)
    /// The last error, or nil after a successful sync (for health reporting and tests).
    public let lastError = Locked<String?>(nil)
    /// Position known to be on the replica, readable from any thread; nil until a sync established it and after a failed background sync.
    public let syncedPosition = Locked<WALPosition?>(nil)
    /// When a sync last finished with the replica holding everything the database had when that sync began.
    public let lastSyncedAt = Locked<Date?>(nil)

    /// Creates a replica of `db` stored through `client`.
    public init(name: String, client: any ReplicaClient, db: Database, options: ReplicaOptions, logger: Logger) {
        self.name = name
        self.client = client
        self.log = db.shadowLog
        self.snapshots = db
        self.databasePath = db.path
        self.options = options
        var l = logger
        l[metadataKey: "replica"] = "\(name)"
        self.logger = l
        self.queue = SerialLane(label: "launcher.replica.\(db.path).\(name)", pool: IOPool.shared(kind: client.type))
        _ = ReplicaMetrics.for(db: db.path, name: name)  // upstream's series exist from the replica's creation
    }

    /// This replica's metric handles (looked up per use: cheap, and survives a later `bootstrap()`).
    var metrics: ReplicaMetrics { ReplicaMetrics.for(db: databasePath, name: name) }

    /// Registers with the database and starts the background work (first sync now, timers for snapshots/retention).
    public func start() {
        log.subscribe(self, retainsShadow: true)
        queue.async { [self] in
            runSync()
            if options.snapshotInterval > .zero {
                addTimer(every: options.snapshotInterval) { [self] in
                    do { _ = try snapshot() } catch { logger.error("snapshotter error: \(error.oneLine)") }
                }
            }
            if options.retention > .zero {
                addTimer(every: min(options.retentionCheckInterval, options.retention)) { [self] in
                    do { try enforceRetention() } catch { logger.error("retainer error: \(error.oneLine)") }
                }
            } else if options.retentionCheckInterval > .zero {
                // Without retention the check still runs, so a wiped replica is noticed.
                addTimer(every: options.retentionCheckInterval) { [self] in
                    do { try ensureGenerationOnReplica() } catch { logger.error("replica check error: \(error.oneLine)") }
                }
            }
        }
    }

    private func addTimer(every interval: Duration, _ body: @escaping @Sendable () -> Void) {
        timers.append(queue.makeTimer(every: interval) { [self] in if !stopped { body() } })
    }

    /// Called by the database when the shadow WAL grew: sync after `syncInterval` (collapsing bursts).
    ///
    /// While a sync is already scheduled this costs one uncontended lock and no thread wake-up.
    public func shadowDidChange() {
        if wakePending.withLock({ pending in defer { pending = true }; return pending }) { return }
        queue.async { [self] in scheduleSync(after: options.syncInterval) }
    }

    /// Stops taking wake-ups from the database, before the final sync's last copy of the shadow WAL: each would
    /// queue an item on this replica's lane, which `stop(finalSync:)` then has to wait for (a pool thread's
    /// wake-up: 0.7 ms seen in the final sync under load), while that final sync uploads everything anyway.
    public func ignoreWakeUps() {
        wakePending.withLock { $0 = true }
    }

    private func scheduleSync(after delay: Duration) {
        guard !stopped, !syncScheduled else { return }
        syncScheduled = true
        queue.asyncAfter(delay) { [self] in
            syncScheduled = false
            // Cleared before the sync reads the shadow, so a segment written during the sync wakes us again.
            wakePending.withLock { $0 = false }
            runSync()
        }
    }

    /// One sync with error handling: on failure the position is forgotten and a retry is scheduled with backoff.
    private func runSync() {
        guard !stopped else { return }
        do {
            try syncOnQueue()
            if failures > 0 { logger.info("replica \(name) caught up after \(failures) failed attempts") }
            failures = 0
            lastError.withLock { $0 = nil }
        } catch {
            failures += 1
            metrics.syncErrors.increment()
            position = nil
            syncedPosition.withLock { $0 = nil }
            log.report(self, holds: nil)
            let previous = lastError.withLock { e in defer { e = error.oneLine }; return e }
            // One line per new error, not per retry (a long outage would log every backoff step).
            if previous != error.oneLine {
                logger.error("monitor error: \(name) (\(client.location)): \(error.oneLine)")
            } else {
                logger.debug("monitor error (again, attempt \(failures)): \(name) (\(client.location)): \(error.oneLine)")
            }
            // Retry even when the database stays idle, so a fixed destination catches up on its own.
            let backoff = min(15.0, options.syncInterval.timeInterval * pow(2.0, Double(min(failures, 6))))
            scheduleSync(after: .milliseconds(Int64(max(backoff, 0.1) * 1000)))
        }
    }

    /// Asks for a sync as soon as the replica's queue is free (`POST /sync`), with the error handling and retries of
    /// the background syncs; returns at once.
    public func requestSync() {
        queue.async { [self] in runSync() }
    }

    /// Syncs now on the caller's thread; throws the sync's error.
    public func sync() throws {
        try queue.sync { try syncOnQueue() }
    }

    /// Stops timers and background syncs, then runs one final sync if asked; returns its error.
    public func stop(finalSync: Bool) throws {
        try queue.sync {
            stopped = true
            for t in timers { t.cancel() }
            timers.removeAll()
            if finalSync {
                // One listing, so a replica wiped since the last check still ends restorable.
                try ensureGenerationOnReplica()
                try syncOnQueue()
            }
        }
    }

    /// Uploads everything the shadow WAL has beyond the replica position (REPLICATION §7.2).
    func syncOnQueue() throws {
        guard let dbPos = log.position else { return }
        let g = dbPos.generation
        if position?.generation != g { position = nil }
        if position == nil {
            let snapshots = try client.snapshots(generation: g)
            metrics.setSnapshotCount(snapshots.count, generation: g)
            if snapshots.isEmpty {
                _ = try snapshot()
                lastSyncedAt.withLock { $0 = Date() }
                return
            }
            guard client.canReadObjects else {
                // The last WAL object cannot be read back to find where it ends: restart the index with a snapshot.
                logger.info("replica \(name) (\(client.location)) is written with age recipients only; writing a snapshot instead of reading back its last WAL object")
                _ = try snapshot()
                lastSyncedAt.withLock { $0 = Date() }
                return
            }
            position = try computePosition(generation: g)
            publishPosition()
        }
        do {
            try uploadWAL(generation: g)
        } catch let e as ReplicationError where e.code == .notFound {
            // The local shadow WAL no longer reaches back to the replica's position: a new snapshot restarts it.
            logger.warning("\(e.message); taking a new snapshot")
            position = nil
            _ = try snapshot()
        }
        lastSyncedAt.withLock { $0 = Date() }
    }

    /// Publishes the position to other threads and reports it to the shadow log (the replica's only report back).
    func publishPosition() {
        syncedPosition.withLock { $0 = position }
        log.report(self, holds: position)
        if let p = position { metrics.setPosition(p) }
    }
}
