import Foundation
import Logging
import ReplicationKit

/// What happens before the databases are opened in the `-exec` workflow: check the directories, then restore
/// every missing database from the newest backup across its replicas, or start it empty on first boot.
enum StartupPreparation {
    /// Fails when a database's directory does not exist (the app could not create its database there).
    static func checkDirectories(_ config: Configuration) throws {
        for db in config.dbs {
            let dir = (db.path as NSString).deletingLastPathComponent
            guard let info = try? FileSystem.info(dir), info.isDirectory else {
                throw ReplicationError(.config, "database directory does not exist: \(dir) (database \(db.path))")
            }
        }
    }

    /// For every database missing locally: restore it (what `restore -if-db-not-exists -if-replica-exists` does),
    /// or, with no backup anywhere or with `restore` off, create an empty WAL-mode database and say so.
    ///
    /// Blocks (restore downloads in parallel on its own threads); call it from the main thread.
    static func prepareDatabases(_ config: Configuration, restore: Bool, logger: Logger) throws {
        for db in config.dbs {
            if let up = db.upstreamURL {
                logger.info("database follows upstream \(up), no restore: \(db.path)")
                continue
            }
            if FileSystem.exists(db.path) {
                logger.info("database exists, no restore needed: \(db.path)")
                continue
            }
            if restore && !db.replicas.isEmpty {
                if try restoreFromReplicas(db, logger: logger) { continue }
                logger.info("first boot: no backup of \(db.path) on any replica; starting with an empty database")
            } else if restore {
                logger.info("first boot: \(db.path) has no replicas to restore from; starting with an empty database")
            } else {
                logger.info("restore disabled by -no-restore: starting \(db.path) with an empty database")
            }
            try createEmptyDatabase(db.path, logger: logger)
        }
    }

    /// Restores `db` from whichever replica holds the newest data; false when no replica has a backup.
    private static func restoreFromReplicas(_ db: DatabaseConfig, logger: Logger) throws -> Bool {
        let replicas: [(name: String, client: any ReplicaClient)] = try db.replicas.map {
            ($0.name, try ReplicaClientFactory.make($0))
        }
        logger.info("database missing, restoring from replicas: \(db.path)")
        do {
            let choice = try Restorer.restore(replicas: replicas, options: RestoreOptions(outputPath: db.path),
                                              logger: logger)
            logger.info("restored \(db.path) from replica \"\(choice.name)\" generation \(choice.plan.generation.name) index \(choice.plan.targetIndex)")
            return true
        } catch where RestorePlanner.isNoMatchingBackups(error) {
            return false
        } catch {
            throw ReplicationError(.io, "cannot restore \(db.path): \(error.oneLine)")
        }
    }

    /// Creates an empty database in WAL mode, after removing journal files left without their database (a stale
    /// WAL would otherwise be replayed into the new file).
    private static func createEmptyDatabase(_ path: String, logger: Logger) throws {
        for suffix in ["-wal", "-shm", "-journal"] where FileSystem.exists(path + suffix) {
            logger.warning("removing \(path + suffix): its database does not exist")
            try FileSystem.remove(path + suffix)
        }
        let connection = try SQLiteConnection(path: path, create: true)
        defer { connection.close() }
        _ = try connection.queryText("PRAGMA journal_mode = wal;")
    }
}

extension StartupPreparation {
    /// `prepareDatabases` on a thread of its own while the main thread keeps taking signals: a stop request
    /// (TERM, INT) before the app exists stops the launcher at once, restore or not, and the app is never started.
    ///
    /// Returns nil when the databases are ready, else the exit code (128 + signal). A restore cut short leaves
    /// only `<db>.tmp*` files, which the next restore removes first; nothing is ever renamed into place half-done.
    static func prepareDatabasesInterruptibly(_ config: Configuration, restore: Bool, logger: Logger) throws -> Int32? {
        // Nothing to download (every database present, following an upstream, or without a replica to restore from):
        // no thread, and a stop request waits the few local operations for the main loop.
        let downloads = restore && config.dbs.contains { $0.upstreamURL == nil && !$0.replicas.isEmpty && !FileSystem.exists($0.path) }
        if !downloads {
            try prepareDatabases(config, restore: restore, logger: logger)
            while let sig = SupervisorSignals.wait(timeout: .zero) {
                if let code = stopCode(sig, while: "preparing the databases", logger: logger) { return code }
            }
            return nil
        }
        return try interruptibly("preparing the databases", logger: logger) { _ in
            try prepareDatabases(config, restore: restore, logger: logger)
        }
    }

    /// Takes every configured lease (waiting for their holders) on a thread of its own, the main thread taking
    /// signals meanwhile; returns nil once all are held, else the exit code (128 + signal).
    static func acquireLeasesInterruptibly(_ replicator: Replicator, logger: Logger) throws -> Int32? {
        try interruptibly("waiting for the lease", logger: logger) { stop in
            try replicator.acquireLeases(shouldStop: { stop.current })
        }
    }

    /// Runs `body` on a new thread while the main thread waits for it and takes signals. `body` gets a flag that
    /// turns true when a stop request arrived (it may stop early; its result is then ignored).
    private static func interruptibly(_ what: String, logger: Logger,
                                      _ body: @escaping @Sendable (Locked<Bool>) throws -> Void) throws -> Int32? {
        let result = Locked<Result<Void, any Error>?>(nil)
        let stop = Locked(false)
        Thread.detachNewThread {
            let r = Result { try body(stop) }
            result.withLock { $0 = r }
            // Wakes the main thread at once (every thread blocks SIGCHLD; the main thread takes it below and
            // ignores it, as there is no child yet): without it the app started up to one wait later.
            kill(getpid(), SIGCHLD)
        }
        while true {
            // Signals already pending are taken before the result: a stop request that arrived during the work
            // is honoured even when the work has just finished.
            let done = result.current
            guard let sig = SupervisorSignals.wait(timeout: done == nil ? .seconds(1) : .zero) else {
                if let done { try done.get(); return nil }
                continue
            }
            if let code = stopCode(sig, while: what, logger: logger) {
                stop.withLock { $0 = true }
                return code
            }
        }
    }

    /// The exit code (128 + signal) when `sig`, taken before the app exists, is a stop request; other signals are
    /// logged as ignored (SIGCHLD silently: there is no child yet).
    private static func stopCode(_ sig: Int32, while what: String, logger: Logger) -> Int32? {
        if SupervisorSignals.isStopRequest(sig) {
            logger.info("signal received: \(SignalName.name(sig)) while \(what); not starting the exec process")
            return 128 + sig
        }
        if sig != SIGCHLD { logger.info("signal received: \(SignalName.name(sig)), ignored (no exec process yet)") }
        return nil
    }

    /// Waits until every follower holds data from its primary; a stop signal meanwhile ends the launcher.
    ///
    /// Returns nil when all are ready, else the exit code (the launcher stops without starting the app).
    static func waitForFollowers(_ replicator: Replicator, logger: Logger) -> Int32? {
        var lastLog = ContinuousClock.now
        while true {
            let waiting = replicator.followers.filter { !$0.isReady.current }
            if waiting.isEmpty { return nil }
            if ContinuousClock.now - lastLog >= .seconds(10) {
                lastLog = .now
                for f in waiting {
                    logger.info("waiting for the first snapshot of \(f.path) from \(f.upstreamBase)\(f.lastError.current.map { " (last error: \($0))" } ?? "")")
                }
            }
            // Signals stay blocked for the supervisor; take a stop request here, before there is a child.
            if let sig = SupervisorSignals.wait(timeout: .milliseconds(50)), SupervisorSignals.isStopRequest(sig) {
                logger.info("signal received: \(SignalName.name(sig)) before the first snapshot arrived; not starting the exec process")
                return 128 + sig
            }
        }
    }
}
