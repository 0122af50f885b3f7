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

            let writer = try SQLiteConnection(path: path, busyTimeout: options.busyTimeoutMilliseconds)
            writeConnection = writer
            try writer.setPersistentWAL()
            let mode = try writer.queryText("PRAGMA journal_mode = wal;")
            guard mode?.lowercased() == "wal" else {
                throw ReplicationError(.sqlite, "enable wal failed, mode=\"\(mode ?? "")\"")
            }
            try writer.exec("PRAGMA wal_autocheckpoint = 0;")
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
