#if canImport(Glibc)
import Glibc
#endif
import Foundation

extension Database {
    static let createSeqTable = "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);"
    static let createLockTable = "CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);"
    static let upsertSeq = "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1;"

    /// Opens the connections, takes the read guard and recovers the shadow cursor (REPLICATION §6.1).
    ///
    /// All or nothing: on failure everything opened so far is closed again.
    func openIfNeeded() throws {
        guard readGuard == nil else { return }
        // Earliest point this file sees the database: its `db` series exist (at 0) even while the file is missing.
        DatabaseMetrics.register(path: path)
        guard let dbInfo = try FileSystem.info(path) else { return }  // not created yet: the watcher tells us
        guard !dbInfo.isDirectory else { throw ReplicationError(.invalidInput, "open database \(path): is a directory") }
        let dirInfo = try FileSystem.info((path as NSString).deletingLastPathComponent)
        shadow.fileMode = dbInfo.mode & 0o666
        shadow.directoryMode = dirInfo?.mode ?? 0o700
        do {
            try shadow.removeTemporaryFiles()

            let writer = try writer()
            let mode = try writer.queryText("PRAGMA journal_mode = wal;")
            guard mode?.lowercased() == "wal" else {
                throw ReplicationError(.sqlite, "enable wal failed, mode=\"\(mode ?? "")\"")
            }
            try writer.exec(Self.createSeqTable)
            try writer.exec(Self.createLockTable)
            guard let ps = try writer.queryInt("PRAGMA page_size;"), ps > 0 else {
                throw ReplicationError(.sqlite, "invalid db page size")
            }
            pageSize = Int(ps)

            let guardian = try ReadGuard(path: path, busyTimeout: options.busyTimeoutMilliseconds)
            readGuard = guardian

            databaseFD = try FileDescriptor.openForReading(path)
            try guardian.take()
            try FileSystem.makeDirectories(meta.root, mode: shadow.directoryMode)
            try recoverCursor()
            try clean()
            logger.info("initialized db: \(path)")
        } catch {
            closeHandles()
            throw (error as? ReplicationError)?.wrapped("open database") ?? error
        }
    }

    /// Opens one of our connections to the database at `path`: persistent WAL (closing it never deletes the
    /// `-wal`), no automatic checkpoint, no checkpoint when it closes (the writer and the guard's spare close
    /// while the application runs), and the WAL opened by a first read.
    static func openOwnConnection(path: String, busyTimeout: Int32) throws -> SQLiteConnection {
        let c = try SQLiteConnection(path: path, busyTimeout: busyTimeout)
        do {
            try c.setPersistentWAL()
            try c.setCheckpointOnClose(false)
            try c.exec("PRAGMA wal_autocheckpoint = 0;")
            // A first read opens the WAL: until then a checkpoint on this connection sees no frames ([0,-1,-1]).
            _ = try c.queryInt("PRAGMA schema_version;")
        } catch {
            c.close()
            throw error
        }
        return c
    }

    /// Our writer connection (`_litestream_seq` writes, checkpoints), opened on first use and closed again when the
    /// database idles (`releaseIdleConnections`); an open failure is thrown to the sync or checkpoint that needed it.
    func writer() throws -> SQLiteConnection {
        if let w = writeConnection { return w }
        let w = try Self.openOwnConnection(path: path, busyTimeout: options.busyTimeoutMilliseconds)
        writeConnection = w
        return w
    }

    /// Records a sync, checkpoint or snapshot, and makes sure an idle check follows (`releaseIdleConnections`).
    ///
    /// One check is pending at a time: under writes it finds recent activity and re-arms itself for the rest of
    /// the delay, so a busy database costs one timer per `idleConnectionDelay`, not one per sync.
    func noteActivity() {
        lastActivity = .now
        guard !idleCheckScheduled, !closed, options.idleConnectionDelay > .zero else { return }
        idleCheckScheduled = true
        scheduleIdleCheck(after: options.idleConnectionDelay)
    }

    private func scheduleIdleCheck(after delay: Duration) {
        queue.asyncAfter(deadline: .now() + delay.timeInterval) { [weak self] in self?.idleCheck() }
    }

    private func idleCheck() {
        let idle = ContinuousClock.now - lastActivity
        guard !closed, readGuard != nil else { idleCheckScheduled = false; return }
        if idle < options.idleConnectionDelay || activeSnapshots > 0 {
            scheduleIdleCheck(after: max(options.idleConnectionDelay - idle, .milliseconds(1)))
            return
        }
        idleCheckScheduled = false
        releaseIdleConnections()
    }

    /// Shrinks an idle database to what the read guard needs: closes the writer and the guard's spare and frees
    /// the holder's cached pages (README "Memory of idle databases"). The hold itself is untouched, and none of
    /// these connections checkpoints on close, so nothing the application committed can escape the shadow WAL.
    func releaseIdleConnections() {
        writeConnection?.close()
        writeConnection = nil
        readGuard?.releaseIdle()
        HeapTrim.request()
    }

    /// SQLite connections this database holds open now (for tests and diagnostics).
    var openConnections: Int {
        onQueue { (writeConnection == nil ? 0 : 1) + (readGuard?.openConnections ?? 0) }
    }

    /// Rebuilds the cursor from the shadow WAL (REPLICATION §6.2).
    ///
    /// At open (`checkHeader`), the real WAL must still carry the last shadow index's header, since nothing
    /// guarded it while we were not running (§6.1 step 12). After a failed sync the guard was held all along,
    /// so the continuity check of the next sync judges the WAL instead.
    func recoverCursor(checkHeader: Bool = true) throws {
        cursor = nil
        shadowLog.publish(nil, notify: false)
        guard let g = try shadow.currentGeneration() else { return }
        let recovered: ShadowCursor?
        do {
            recovered = try shadow.recoverCursor(g)
        } catch {
            // An unreadable shadow must not wedge startup (upstream §11 item 15): start over in a new generation.
            logger.warning("init: cannot read shadow wal, clearing generation; \(error.oneLine)")
            try shadow.clearGeneration()
            return
        }
        guard let c = recovered else {
            logger.info("init: no wal files available, clearing generation")
            try shadow.clearGeneration()
            return
        }
        let header = try realWAL.read { fd, _ in try fd.pread(count: walHeaderSize, at: 0) }
        guard !checkHeader || header == c.header.bytes else {
            logger.info("init: cannot determine last wal position, clearing generation; wal header mismatch")
            try shadow.clearGeneration()
            return
        }
        cursor = c
        shadowLog.publish(c.position, notify: false)
    }
}
