import Foundation

/// Applies verified WAL files to the database being restored, and checks the result before it is renamed into place.
enum WALApplier {
    /// Verifies `walFile`, moves it to `<db>-wal` and checkpoints it into `db` with TRUNCATE.
    ///
    /// Fails when the WAL is damaged, when the checkpoint is busy, or when SQLite saw fewer frames than were verified
    /// (SQLite stops silently at the first bad frame; we insist on all of them). `objectAt` names the replica
    /// object holding a WAL offset, for the error about a damaged frame.
    static func apply(walFile: String, to db: String, pageSize: Int, objectAt: ((UInt64) -> String?)? = nil) throws {
        let frames = try WALFileVerifier.verify(path: walFile, pageSize: pageSize, objectAt: objectAt)
        try FileSystem.rename(walFile, to: db + "-wal")
        let conn = try SQLiteConnection(path: db)
        defer { conn.close() }
        try conn.setPersistentWAL()
        // No fsync per checkpoint: the restore fsyncs the finished file once, before renaming it into place (a
        // crash before that leaves only `<out>.tmp`, which the next restore removes).
        try conn.exec("PRAGMA synchronous = OFF;")
        // A read transaction makes SQLite open (and recover) the WAL before the checkpoints run.
        _ = try conn.queryInt("SELECT count(*) FROM sqlite_master")
        // TRUNCATE reports (0,0,0) once it has emptied the WAL, so count the frames SQLite accepted with a PASSIVE
        // checkpoint first (nothing else has the file open, so it copies every frame).
        let seen = try conn.checkpoint(.passive)
        guard max(Int(seen.logFrames), 0) == frames, seen.checkpointedFrames == seen.logFrames else {
            throw ReplicationError(.sqlite, "sqlite accepted \(seen.logFrames) of \(frames) wal frames " +
                "(checkpointed \(seen.checkpointedFrames)); is the snapshot in WAL mode?")
        }
        let r = try conn.checkpoint(.truncate)
        if r.busy {
            throw ReplicationError(.sqlite, "truncation checkpoint failed during restore " +
                "(1,\(r.logFrames),\(r.checkpointedFrames))")
        }
        conn.close()
    }

    /// Page cache of the verification connection, in KiB (bounded whatever the database size).
    static let verifyCacheKiB = 2048

    /// Runs `PRAGMA quick_check` on the restored database at `db`; anything but `ok` is an error naming `output`.
    static func verifyDatabase(_ db: String, output: String) throws {
        let rows: [[String?]]
        do {
            // The read-ahead VFS reads the file in 64 KiB windows: a twelfth of the read calls of page-sized reads.
            let conn = try SQLiteConnection(path: db, vfs: SQLiteConnection.readAheadVFS)
            defer { conn.close() }
            // Read through pread with a small page cache, not a memory map: a map puts every page of the database
            // into the process's RSS (file-backed, but `ps` and cgroup `memory.current` count it), so memory would
            // grow with the database.
            try conn.exec("PRAGMA mmap_size = 0; PRAGMA cache_size = -\(verifyCacheKiB);")
            rows = try conn.queryRows("PRAGMA quick_check")
            conn.close()
        } catch {
            throw RestoreFiles.wrap(error, "restored database failed verification: \(output)")
        }
        let lines = rows.compactMap { $0.first ?? nil }
        guard lines == ["ok"] else {
            let shown = lines.prefix(3).joined(separator: "; ")
            throw ReplicationError(.corrupt, "restored database failed verification: \(output): quick_check: \(shown)")
        }
    }
}
