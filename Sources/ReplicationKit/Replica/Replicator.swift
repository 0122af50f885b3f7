import Foundation
import Logging

/// Runs replication for every configured database: file watching, shadow WAL, replicas, and the final sync.
public final class Replicator: @unchecked Sendable {
    // @unchecked: `entries` and `watcher` are set in init/start on the caller's thread before any sharing,
    // and only read afterwards.

    /// One database and its replicas.
    public struct Entry: Sendable {
        public let database: Database
        public let replicas: [Replica]
        /// The database's single-writer lease, when one is configured; every replica write passes its fence.
        public let lease: ReplicaLease?
    }

    /// Databases in configuration order (those that follow an upstream are in `followers`).
    public private(set) var entries: [Entry] = []
    /// Databases that follow a primary's live stream (`upstream:`), in configuration order.
    public private(set) var followers: [StreamFollower] = []
    private var watcher: FileWatcher?
    private let logger: Logger
    /// The `flock` claims on the databases this process replicates or follows, by path (see `lockDatabases`).
    private var locks: [String: DatabaseLock] = [:]

    /// Builds databases and replicas from `config`; configuration errors name the database and replica.
    public init(config: Configuration, logger: Logger) throws {
        try Self.checkEnvironment()
        self.logger = logger
        try Self.checkDistinct(config)
        for dbc in config.dbs {
            guard dbc.minCheckpointPageCount > 0 else {
                throw ReplicationError(.config, "open database: \(dbc.path): minimum checkpoint page count required")
            }
            if let up = dbc.upstreamURL {
                // Upstream silently never started such replicas and then failed at shutdown; say so up front.
                guard dbc.replicas.isEmpty else {
                    throw ReplicationError(.config, "database \(dbc.path): follows upstream \(up) and also lists replicas; a live read replica is not replicated itself (back up the primary instead): remove its replicas or its upstream")
                }
                followers.append(try StreamFollower(path: dbc.path, upstreamURL: up, upstreamPath: dbc.upstreamPath,
                                                    logger: logger))
                continue
            }
            let db = Database(path: dbc.path, options: dbc.options, logger: logger)
            var names = Set<String>()
            var clients: [(config: ReplicaConfig, client: any ReplicaClient)] = []
            for rc in dbc.replicas {
                guard names.insert(rc.name).inserted else {
                    throw ReplicationError(.config, "open database: \(dbc.path): duplicate replica name: \"\(rc.name)\"")
                }
                if let age = rc.age, age.recipients.isEmpty {
                    throw ReplicationError(.config, "open database: \(dbc.path): replica \(goQuote(rc.name)): age has identities but no "
                        + "recipients: replicating would write unencrypted objects; add age.recipients (the age1… public keys)")
                }
                do { clients.append((rc, try ReplicaClientFactory.make(rc))) } catch {
                    throw (error as? ReplicationError)?.wrapped("open database: \(dbc.path)") ?? error
                }
            }
            let lease = try Self.makeLease(dbc, clients: clients, logger: logger)
            let replicas = clients.map { rc, client in
                Replica(name: rc.name, client: lease.map { FencedReplicaClient(client, lease: $0) } ?? client, db: db,
                        options: ReplicaClientFactory.options(rc), logger: logger)
            }
            entries.append(Entry(database: db, replicas: replicas, lease: lease))
        }
    }

    /// The lease of `dbc` on its lease replica's store, or nil when none is configured.
    /// - Throws: `.config` when the lease cannot be kept there (see `DatabaseConfig.checkLease`).
    static func makeLease(_ dbc: DatabaseConfig, clients: [(config: ReplicaConfig, client: any ReplicaClient)],
                          logger: Logger) throws -> ReplicaLease? {
        guard let config = dbc.lease else { return nil }
        do { try dbc.checkLease() } catch let e as ReplicationError { throw e.wrapped("database \(dbc.path): lease") }
        guard let holder = clients.first(where: { $0.config.name == dbc.leaseReplica?.name }) else { return nil }
        // The lease object is not encrypted: it names the holder, no data.
        guard let capable = ((holder.client as? AgeReplicaClient)?.base ?? holder.client) as? any LeaseCapableClient else {
            throw ReplicationError(.config, "database \(dbc.path): lease: replica \(goQuote(holder.config.name)) (\(holder.client.type)) "
                + "has no compare-and-swap write to hold a lease; put the lease on an s3, gs, abs or file replica (lease.replica)")
        }
        return ReplicaLease(databasePath: dbc.path, store: try capable.leaseStore(timeout: config.ttl / 3), config: config,
                            logger: logger)
    }

    /// Every configured lease, in database order.
    public var leases: [ReplicaLease] { entries.compactMap(\.lease) }

    /// Takes every lease in database order (the same order in every launcher, so two of them never hold one lease
    /// each while waiting for the other's) and starts renewing each as soon as it is taken.
    /// - Throws: what `ReplicaLease.acquire` throws; leases already taken are released first.
    public func acquireLeases(shouldStop: @escaping @Sendable () -> Bool = { false }) throws {
        for (i, lease) in leases.enumerated() {
            do {
                try lease.acquire(shouldStop: shouldStop)
            } catch {
                for taken in leases[..<i] { taken.release() }
                throw error
            }
            lease.startRenewing()
        }
    }

    /// Releases every lease still held (nothing may write to the replicas any more); lost leases are left alone.
    public func releaseLeases() {
        for lease in leases { lease.release() }
    }

    /// The first lease that is lost, with the reason, or nil.
    public var lostLease: (lease: ReplicaLease, reason: String)? {
        for lease in leases { if let r = lease.lossReason { return (lease, r) } }
        return nil
    }

    /// Rejects a configuration that lists one database file twice (under two spellings, through a symbolic link or
    /// `..`), or puts a file replica inside a database's own metadata directory: both would wedge replication.
    static func checkDistinct(_ config: Configuration) throws {
        var seen: [String: (index: Int, path: String)] = [:]
        for (i, db) in config.dbs.enumerated() {
            let resolved = FileSystem.resolvedPath(db.path)
            if let first = seen[resolved] {
                throw ReplicationError(.config, "dbs[\(i)] (\(db.path)) and dbs[\(first.index)] (\(first.path)) are the same "
                    + "database file \(resolved): list each database once, with all its replicas")
            }
            seen[resolved] = (i, db.path)
        }
        for db in config.dbs {
            let meta = FileSystem.resolvedPath(MetaDirectory(databasePath: db.path).root)
            for r in db.replicas {
                guard case .file(let f) = r.destination else { continue }
                let target = FileSystem.resolvedPath(f.path)
                if target == meta || target.hasPrefix(meta + "/") {
                    throw ReplicationError(.config, "database \(db.path): replica \"\(r.name)\" (\(f.path)) is inside the "
                        + "database's own metadata directory \(meta), which replication rewrites; put the replica elsewhere")
                }
            }
        }
    }

    /// Claims every database whose directory exists with an exclusive lock that dies with this process, so a
    /// second launcher on the same database refuses to start instead of wedging both. Idempotent; `start()` calls
    /// it again for databases whose directory appeared since.
    /// - Throws: `.conflict` naming the holder when another process replicates one of the databases.
    public func lockDatabases() throws {
        let paths = entries.map(\.database.path) + followers.map(\.path)
        for path in paths where locks[path] == nil {
            let dir = (path as NSString).deletingLastPathComponent
            guard let info = try FileSystem.info(dir), info.isDirectory else { continue }
            locks[path] = try DatabaseLock.acquire(databasePath: path, directoryMode: info.mode & 0o7777)
        }
    }

    /// What must be in place before an application starts on the databases: every database locked (as
    /// `lockDatabases`), watched, and held (`Database.hold`: its read guard taken, so no checkpoint of the
    /// application's can discard a WAL frame the shadow WAL does not have yet). No shadow file, no fsync;
    /// `start(firstSyncsInBackground: true)` does the rest once the application is on its way.
    /// - Throws: `.conflict` as `lockDatabases`; a database file that exists but cannot be tracked (not SQLite,
    ///   unreadable).
    public func hold() throws {
        try lockDatabases()
        try startWatching()
        for e in entries {
            do {
                try e.database.hold()
            } catch let err as ReplicationError where err.code == .busy {
                // Another process holds a lock longer than our busy timeout: the first sync takes the guard.
                logger.warning("\(e.database.path): database busy at startup, retrying: \(err.message)")
            }
        }
    }

    /// Opens every database that exists, starts watching, and starts the replicas.
    ///
    /// A database file that exists but cannot be tracked (not SQLite, unreadable) fails startup. With
    /// `firstSyncsInBackground`, each database's open and first sync run on its own queue instead (after `hold()`,
    /// which did the checks), its replicas start once that is done, and this returns at once; a failure is then
    /// logged and retried like any sync's.
    public func start(firstSyncsInBackground: Bool = false) throws {
        try lockDatabases()
        try startWatching()
        if entries.isEmpty && followers.isEmpty { logger.info("no databases specified in configuration") }
        for f in followers { f.start() }
        for e in entries {
            let db = e.database
            e.lease?.setGenerationSource { db.position?.generation.name }
            if firstSyncsInBackground {
                let logger = logger
                db.startInBackground { Self.startReplicas(e.replicas, logger: logger) }
                continue
            }
            do {
                try db.start()
            } catch let e as ReplicationError where e.code == .busy {
                // The application holds a lock longer than our busy timeout: not a configuration error, retry.
                logger.warning("\(db.path): database busy at startup, retrying: \(e.message)")
                db.notifyChanged()
            }
            Self.startReplicas(e.replicas, logger: logger)
        }
    }

    /// Creates the file watcher (once) and watches every database.
    private func startWatching() throws {
        guard watcher == nil else { return }
        let w = try FileWatcher(logger: logger)
        watcher = w
        for e in entries {
            let db = e.database
            try w.watch(databasePath: db.path) { db.notifyChanged() }
        }
    }

    private static func startReplicas(_ replicas: [Replica], logger: Logger) {
        for r in replicas {
            logger.info("replicating to: name=\"\(r.name)\" type=\"\(r.client.type)\" path=\"\(r.client.location)\"")
            r.start()
        }
    }

    /// Checks the settings read from the environment: a value that cannot be used is an error naming it, never a
    /// silent default.
    public static func checkEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws {
        for name in ["LAUNCHER_SYNC_CONCURRENCY", IOPool.sizeVariable] {
            guard let text = env[name] else { continue }
            guard let n = Int(text), (1...1024).contains(n) else {
                throw ReplicationError(.config, "\(name)=\(goQuote(text)): want a whole number from 1 to 1024 (unset it for the default, 16)")
            }
        }
    }

    /// Databases whose final sync runs at the same time (`LAUNCHER_SYNC_CONCURRENCY`, default 16): each blocks a
    /// thread on its uploads, so this bounds the threads while letting slow stores overlap.
    public static var finalSyncConcurrency: Int {
        let env = ProcessInfo.processInfo.environment["LAUNCHER_SYNC_CONCURRENCY"].flatMap { Int($0) }
        return max(1, env ?? 16)
    }

    /// Stops watching, then runs a final sync of every database and every replica, `concurrency` databases at a
    /// time (each on a thread of its own; within a database, its replicas at the same time, a thread each).
    ///
    /// Returns one line per failure naming the database and replica (empty when everything made it), in
    /// database order. `TransferAbort.trigger` makes the uploads in flight fail quickly, so this returns.
    public func shutdown(concurrency: Int = Replicator.finalSyncConcurrency) -> [String] {
        watcher?.stop()
        // A follower has nothing to sync: it stops after the record it is applying.
        for f in followers { f.stop() }
        let entries = self.entries
        let failures = Locked([[String]](repeating: [], count: entries.count))
        let next = Locked(0)
        let workers = min(max(concurrency, 1), entries.count)
        // One database (the common container): no worker thread to start and join, the caller's thread does it.
        if workers <= 1 { return entries.flatMap { finalSync($0) } }
        let done = DispatchGroup()
        for _ in 0..<workers {
            done.enter()
            // The threads inherit the caller's signal mask (the supervisor's: everything blocked).
            Thread.detachNewThread { [self] in
                while true {
                    let i = next.withLock { n -> Int in
                        defer { n += 1 }
                        return n
                    }
                    guard i < entries.count else { break }
                    let f = finalSync(entries[i])
                    failures.withLock { $0[i] = f }
                }
                done.leave()
            }
        }
        done.wait()
        return failures.current.flatMap { $0 }
    }

    /// The final sync of one database: its shadow WAL, then each replica (while the database file is checkpointed,
    /// `Database.checkpointBeforeClose`), then close it and release its lease.
    private func finalSync(_ e: Entry) -> [String] {
        var failures: [String] = []
        let db = e.database
        for r in e.replicas { r.ignoreWakeUps() }
        do { try db.lastSync() } catch {
            failures.append("final sync of \(db.path) failed at \(db.position.map { "\($0)" } ?? "no position"): \(error.oneLine)")
        }
        // The database file's last checkpoint runs on the database's lane while the replicas upload.
        db.checkpointBeforeClose()
        // The replicas of one database upload at the same time (one thread each, the first on this one): a slow
        // store does not hold up the database's other replicas. Failures are reported in replica order.
        let replicaFailures = Locked([String?](repeating: nil, count: e.replicas.count))
        let stopOne: @Sendable (Int) -> Void = { i in
            let r = e.replicas[i]
            do { try r.stop(finalSync: true) } catch {
                let synced = r.syncedPosition.current.map { "\($0)" } ?? "nothing"
                let line = "final sync of \(db.path) to replica \"\(r.name)\" (\(r.client.location)) failed; replica holds \(synced), local position \(db.position.map { "\($0)" } ?? "none"): \(error.oneLine)"
                replicaFailures.withLock { $0[i] = line }
            }
        }
        let others = DispatchGroup()
        for i in e.replicas.indices.dropFirst() {
            others.enter()
            Thread.detachNewThread { stopOne(i); others.leave() }
        }
        if !e.replicas.isEmpty { stopOne(0) }
        others.wait()
        failures += replicaFailures.current.compactMap { $0 }
        // Close syncs only when the last sync failed: the app has exited, and the checkpoint's own copy came after it.
        do { try db.close() } catch { failures.append("close \(db.path): \(error.oneLine)") }
        // Only now is no write of this database in flight: the next holder may start.
        if let lease = e.lease {
            if let lost = lease.lossReason {
                failures.append("final sync of \(db.path) stopped: \(lost)")
            } else {
                lease.release()
            }
        }
        return failures
    }
}
