import CSQLite
import Foundation

/// How a checkpoint treats readers and writers (values of `SQLITE_CHECKPOINT_*`).
public enum CheckpointMode: Int32, Sendable, CustomStringConvertible {
    case passive = 0, full = 1, restart = 2, truncate = 3

    public var description: String {
        switch self {
        case .passive: return "PASSIVE"
        case .full: return "FULL"
        case .restart: return "RESTART"
        case .truncate: return "TRUNCATE"
        }
    }
}

/// The three numbers `sqlite3_wal_checkpoint_v2` reports.
public struct CheckpointResult: Sendable, Equatable {
    /// Whether the checkpoint could not complete because of readers or writers.
    public var busy: Bool
    /// Frames in the WAL when the checkpoint ran.
    public var logFrames: Int32
    /// Frames copied back into the database.
    public var checkpointedFrames: Int32
}

/// One SQLite connection; its single owner calls it from one thread at a time, never from the cooperative pool.
public final class SQLiteConnection {
    private var handle: OpaquePointer?
    /// The database file this connection opened.
    public let path: String
    /// The busy timeout in force, in milliseconds.
    private var busyTimeoutMillis: Int32 = 1000

    /// Opens `path`. `create` allows creating a missing file; the busy timeout is in milliseconds; `vfs` names a
    /// registered VFS (nil: the default one).
    ///
    /// The corresponding C function is `sqlite3_open_v2`.
    public init(path: String, create: Bool = false, readOnly: Bool = false, busyTimeout: Int32 = 1000,
                vfs: String? = nil) throws {
        _ = Self.processSetup
        self.path = path
        var flags = readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE
        if create && !readOnly { flags |= SQLITE_OPEN_CREATE }
        flags |= SQLITE_OPEN_NOMUTEX
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags, vfs)
        if rc != SQLITE_OK {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            // sqlite.org: "Whether or not an error occurs when it is opened, resources associated with the
            // database connection handle should be released by passing it to sqlite3_close()".
            sqlite3_close(db)
            throw ReplicationError(.sqlite, "open \(path): \(msg)", cause: .sqlite(rc))
        }
        handle = db
        busyTimeoutMillis = busyTimeout
        rk_sqlite_set_busy_timeout(db!, busyTimeout)
        sqlite3_extended_result_codes(db, 1)
    }

    /// The name of the read-ahead VFS (`rk_sqlite_register_readahead_vfs` in CSQLite's shim: the main database
    /// read in 64 KiB windows, 1 MiB per connection), registered on first use; nil when registering failed.
    /// For one read-only pass over a whole database, such as `PRAGMA quick_check`.
    static let readAheadVFS: String? = {
        _ = processSetup
        return rk_sqlite_register_readahead_vfs() == SQLITE_OK ? "rk-readahead" : nil
    }()

    /// Process-wide SQLite settings, applied once before the first connection (see `rk_sqlite_no_initial_page_cache`).
    private static let processSetup: Void = { _ = rk_sqlite_no_initial_page_cache() }()

    /// Waits up to `millis` for a lock before SQLITE_BUSY (0: fail at once), retrying every 100 µs at first.
    ///
    /// SQLite's own `busy_timeout` sleeps in growing steps (1, 2, 5, 10 … 100 ms), so a lock held for a
    /// couple of milliseconds could cost a hundred; the live replica's apply path cannot afford that.
    public func setBusyTimeout(_ millis: Int32) {
        busyTimeoutMillis = millis
        if let h = handle { rk_sqlite_set_busy_timeout(h, millis) }
    }

    deinit { close() }

    /// Closes the connection; safe to call twice.
    public func close() {
        if let h = handle { sqlite3_close_v2(h) }
        handle = nil
    }

    private var db: OpaquePointer {
        guard let h = handle else { preconditionFailure("use of closed SQLite connection \(path)") }
        return h
    }

    private func error(_ rc: Int32, _ context: String) -> ReplicationError {
        let msg = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
        let primary = rc & 0xff
        let code: ReplicationError.Code = (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) ? .busy : .sqlite
        return ReplicationError(code, "\(context) \(path): \(msg)", cause: .sqlite(rc))
    }

    /// The primary result code of the last failure, for callers that branch on SQLITE_BUSY.
    public var lastErrorCode: Int32 { handle.map { sqlite3_errcode($0) & 0xff } ?? 0 }

    /// Runs one or more statements that return no rows.
    public func exec(_ sql: String) throws {
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        if rc != SQLITE_OK { throw error(rc, sql) }
    }

    /// Runs a query and returns the first column of the first row as text (nil when there is no row or it is NULL).
    public func queryText(_ sql: String) throws -> String? {
        try withStatement(sql) { stmt in
            guard let p = sqlite3_column_text(stmt, 0) else { return nil }
            return String(cString: p)
        }
    }

    /// Runs a query and returns the first column of the first row as an integer.
    public func queryInt(_ sql: String) throws -> Int64? {
        try withStatement(sql) { stmt in
            sqlite3_column_type(stmt, 0) == SQLITE_NULL ? nil : sqlite3_column_int64(stmt, 0)
        }
    }

    /// Runs a query and returns every row, each as an array of column texts (NULL as nil).
    public func queryRows(_ sql: String) throws -> [[String?]] {
        var stmt: OpaquePointer?
        var rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK else { throw error(rc, sql) }
        defer { sqlite3_finalize(stmt) }
        var rows: [[String?]] = []
        while true {
            rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc, sql) }
            let n = sqlite3_column_count(stmt)
            rows.append((0..<n).map { i in sqlite3_column_text(stmt, i).map { String(cString: $0) } })
        }
        return rows
    }

    private func withStatement<T>(_ sql: String, _ body: (OpaquePointer?) -> T?) throws -> T? {
        var stmt: OpaquePointer?
        var rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK else { throw error(rc, sql) }
        defer { sqlite3_finalize(stmt) }
        rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return body(stmt) }
        if rc == SQLITE_DONE { return nil }
        throw error(rc, sql)
    }

    /// Keeps the `-wal` and `-shm` files when this connection closes (`SQLITE_FCNTL_PERSIST_WAL` = 1).
    ///
    /// Without it, closing our connection could delete a WAL whose frames are not yet replicated.
    public func setPersistentWAL() throws {
        var on: Int32 = 1
        let rc = rk_sqlite_file_control_int(db, "main", SQLITE_FCNTL_PERSIST_WAL, &on)
        if rc != SQLITE_OK { throw error(rc, "set persistent WAL on") }
    }

    /// Whether closing this connection may checkpoint the WAL (SQLite's default; `SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`).
    ///
    /// SQLite checkpoints (and with a non-persistent WAL deletes the WAL) when the last connection to a database
    /// closes. Connections we close while the application runs must never do that.
    public func setCheckpointOnClose(_ on: Bool) throws {
        let rc = rk_sqlite_db_config_int(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, on ? 0 : 1)
        if rc != SQLITE_OK { throw error(rc, "set checkpoint on close on") }
    }

    /// Frees the cached pages no open statement or transaction uses (`sqlite3_db_release_memory`): about 13 KB
    /// for a connection that read the schema once, kept otherwise until the connection closes.
    public func releaseMemory() {
        if let h = handle { sqlite3_db_release_memory(h) }
    }

    /// Runs a checkpoint of the main database.
    ///
    /// The corresponding C function is `sqlite3_wal_checkpoint_v2`; SQLITE_BUSY is reported as `busy`, not thrown.
    public func checkpoint(_ mode: CheckpointMode) throws -> CheckpointResult {
        var log: Int32 = -1
        var ckpt: Int32 = -1
        let rc = sqlite3_wal_checkpoint_v2(db, "main", mode.rawValue, &log, &ckpt)
        if rc == SQLITE_OK { return CheckpointResult(busy: false, logFrames: log, checkpointedFrames: ckpt) }
        if rc & 0xff == SQLITE_BUSY { return CheckpointResult(busy: true, logFrames: log, checkpointedFrames: ckpt) }
        throw error(rc, "checkpoint(\(mode))")
    }

    /// Runs a checkpoint whose waits for locks call `onBusy(attempt)` instead of the busy timeout; `onBusy`
    /// returns false to give up (SQLITE_BUSY is then reported as `busy`). The busy timeout is restored after.
    public func checkpoint(_ mode: CheckpointMode, onBusy: (Int32) -> Bool) throws -> CheckpointResult {
        try withoutActuallyEscaping(onBusy) { body in
            let box = BusyBox(body)
            let context = Unmanaged.passUnretained(box).toOpaque()
            sqlite3_busy_handler(db, { ctx, count in
                Unmanaged<BusyBox>.fromOpaque(ctx!).takeUnretainedValue().body(count) ? 1 : 0
            }, context)
            defer {
                rk_sqlite_set_busy_timeout(db, busyTimeoutMillis)
                withExtendedLifetime(box) {}
            }
            return try checkpoint(mode)
        }
    }

    /// Whether the connection is inside an explicit transaction.
    public var inTransaction: Bool { sqlite3_get_autocommit(db) == 0 }
}

/// Carries a busy callback through SQLite's `void *` context.
private final class BusyBox {
    let body: (Int32) -> Bool
    init(_ body: @escaping (Int32) -> Bool) { self.body = body }
}
