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
    /// Two steps: `holdIfNeeded` (the read guard: what protects the WAL, writing nothing), then the rest (our
    /// tables, the metadata directory, the shadow cursor). A database held by `hold()` before the application
    /// started continues here at its first sync. All or nothing: on failure everything opened so far is closed.
    func openIfNeeded() throws {
        guard !openFinished else { return }
        try holdIfNeeded()
        guard readGuard != nil else { return }  // not created yet: the watcher tells us
        do {
            try shadow.removeTemporaryFiles()
            let writer = try writer()
            try writer.exec(Self.createSeqTable)
            try writer.exec(Self.createLockTable)
            guard let ps = try writer.queryInt("PRAGMA page_size;"), ps > 0 else {
                throw ReplicationError(.sqlite, "invalid db page size")
            }
            pageSize = Int(ps)
            try FileSystem.makeDirectories(meta.root, mode: shadow.directoryMode)
            try recoverCursor()
            try clean()
            openFinished = true
            logger.info("initialized db: \(path)")
        } catch {
            closeHandles()
            throw (error as? ReplicationError)?.wrapped("open database") ?? error
        }
    }

    /// The first step of `openIfNeeded`: WAL mode, our tables and a WAL to start from (`prepareForTracking`), the
    /// read guard's connection and its read transaction, the database's descriptor. Cheap enough to run before the
    /// application starts (no fsync; no write at all once the database has been replicated before), and from
    /// then on no checkpoint of the application's can discard a WAL frame before the shadow WAL has it.
    func holdIfNeeded() throws {
        guard readGuard == nil else { return }
        // Earliest point this file sees the database: its `db` series exist (at 0) even while the file is missing.
        DatabaseMetrics.register(path: path)
        guard let dbInfo = try FileSystem.info(path) else { return }  // not created yet: the watcher tells us
        guard !dbInfo.isDirectory else { throw ReplicationError(.invalidInput, "open database \(path): is a directory") }
        let dirInfo = try FileSystem.info((path as NSString).deletingLastPathComponent)
        shadow.fileMode = dbInfo.mode & 0o666
        shadow.directoryMode = dirInfo?.mode ?? 0o700
        do {
            let guardian = try ReadGuard(path: path, busyTimeout: options.busyTimeoutMilliseconds)
            readGuard = guardian
            let mode = try guardian.holder.queryText("PRAGMA journal_mode = wal;")
            guard mode?.lowercased() == "wal" else {
                throw ReplicationError(.sqlite, "enable wal failed, mode=\"\(mode ?? "")\"")
            }
            databaseFD = try FileDescriptor.openForReading(path)
            try prepareForTracking(guardian.holder)
            try guardian.take()
        } catch {
            closeHandles()
            throw (error as? ReplicationError)?.wrapped("open database") ?? error
        }
    }

    /// Creates our two tables when missing, and writes a `_litestream_seq` row when the `-wal` is missing or empty
    /// (a generation starts from a WAL header), in one transaction: our only writes to the application's
    /// database at startup, made here so they never contend with an application that has just started (one
    /// without a busy timeout would fail on its first write). Nothing is fsynced (`synchronous=OFF` for this one
    /// transaction; with NORMAL, SQLite would still sync a new WAL's header and then its directory): a power loss
    /// can only take this bookkeeping transaction with it (the WAL's checksums reject what did not reach the
    /// disk), and the next start writes it again. Every checkpoint still syncs the WAL before the database file.
    private func prepareForTracking(_ reader: SQLiteConnection) throws {
        let ours = try reader.queryInt("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_litestream_seq', '_litestream_lock');")
        let walEmpty = (try FileSystem.info(meta.walPath)?.size ?? 0) < UInt64(walHeaderSize)
        guard ours != 2 || walEmpty else { return }
        let w = try writer()
        let level = try w.queryInt("PRAGMA synchronous;") ?? 2
        try w.exec("PRAGMA synchronous = OFF;")
        defer { try? w.exec("PRAGMA synchronous = \(level);") }
        try w.exec("BEGIN IMMEDIATE;")
        do {
            try w.exec(Self.createSeqTable)
            try w.exec(Self.createLockTable)
            if walEmpty { try w.exec(Self.upsertSeq) }
            try w.exec("COMMIT;")
        } catch {
            try? w.exec("ROLLBACK;")
            throw error
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
        queue.asyncAfter(delay) { [weak self] in self?.idleCheck() }
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

    /// Shrinks an idle database to what the read guard needs: closes the writer and the guard's spare, frees the
    /// holder's cached pages and the sync's read buffer (README "Memory of idle databases"). The hold itself is
    /// untouched, and none of these connections checkpoints on close, so nothing the application committed can
    /// escape the shadow WAL.
    func releaseIdleConnections() {
        writeConnection?.close()
        writeConnection = nil
        readGuard?.releaseIdle()
        realWAL.releaseBuffer()
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

extension Database {
    /// Takes the read guard before the application starts (`holdIfNeeded`); nothing when the file does not exist.
    /// - Throws: when the file exists but cannot be opened as a SQLite database in WAL mode.
    public func hold() throws {
        try onQueue {
            try holdIfNeeded()
            if readGuard != nil { logger.info("holding db: \(path) (read guard taken; initialized in the background)") }
        }
    }

    /// `start()` without waiting for it: the rest of the open and the first sync run on the database's queue, then
    /// `then` runs there too, also when they failed (the failure is logged and retried like a background sync's).
    /// Whatever the caller queues for this database afterwards (`sync()`, `close()`) runs after them.
    public func startInBackground(then: @escaping @Sendable () -> Void) {
        queue.async { [self] in
            do {
                try openIfNeeded()
                if readGuard != nil { try syncOnQueue() }
            } catch let e as ReplicationError where e.code == .busy {
                logger.warning("\(path): database busy at startup, retrying: \(e.message)")
                notifyChanged()
            } catch {
                logger.error("sync error: \(error.oneLine)")
                notifyChanged()
            }
            then()
        }
    }
}
