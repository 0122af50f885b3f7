import Dispatch
import Metrics

/// The `db`-labelled series of one database (INTERFACES §4), plus its `mode`-labelled checkpoint series.
///
/// Get them with `DatabaseMetrics.for(path:)`; `register(path:)` makes the eight `db` series appear at 0.
public final class DatabaseMetrics: Sendable {
    /// The `db` label: the database's absolute path.
    public let path: String
    /// `litestream_db_size`: size of the database file, bytes.
    let dbSize: Gauge
    /// `litestream_wal_size`: size of the real `-wal` file, bytes.
    let walSize: Gauge
    /// `litestream_total_wal_bytes`: bytes copied from the real WAL into the shadow WAL.
    let totalWALBytes: Counter
    /// `litestream_shadow_wal_index`: current shadow WAL index.
    let shadowWALIndex: Gauge
    /// `litestream_shadow_wal_size`: offset within that index, bytes.
    let shadowWALSize: Gauge
    /// `litestream_sync_count`.
    let syncCount: Counter
    /// `litestream_sync_error_count`.
    let syncErrorCount: Counter
    /// `litestream_sync_seconds`: cumulative seconds spent syncing.
    let syncSeconds: FloatingPointCounter
    // Created on first use per mode, as upstream's labelled vectors are.
    private let checkpoints = Locked<[String: CheckpointMetrics]>([:])

    private static let cache = HandleCache<String, DatabaseMetrics> { DatabaseMetrics(path: $0) }

    /// The handles of the database at `path` (created, and exported at 0, on first use).
    public static func `for`(path: String) -> DatabaseMetrics { cache.get(path) }

    /// Makes the eight `db` series of the database at `path` exist (at 0) now; call when the database object is created.
    public static func register(path: String) { _ = cache.get(path) }

    private init(path: String) {
        self.path = path
        let dims = [("db", path)]
        dbSize = Gauge(label: "litestream_db_size", dimensions: dims)
        walSize = Gauge(label: "litestream_wal_size", dimensions: dims)
        totalWALBytes = Counter(label: "litestream_total_wal_bytes", dimensions: dims)
        shadowWALIndex = Gauge(label: "litestream_shadow_wal_index", dimensions: dims)
        shadowWALSize = Gauge(label: "litestream_shadow_wal_size", dimensions: dims)
        syncCount = Counter(label: "litestream_sync_count", dimensions: dims)
        syncErrorCount = Counter(label: "litestream_sync_error_count", dimensions: dims)
        syncSeconds = FloatingPointCounter(label: "litestream_sync_seconds", dimensions: dims)
    }

    /// Records one finished sync attempt that began at `started`.
    func syncFinished(started: DispatchTime, failed: Bool) {
        syncCount.increment()
        if failed { syncErrorCount.increment() }
        syncSeconds.increment(by: Self.seconds(since: started))
    }

    /// Sets the size and shadow-position gauges after a sync (nil = leave unchanged).
    func setSizes(database: UInt64?, wal: UInt64?, shadowIndex: UInt32?, shadowOffset: UInt64?) {
        if let v = database { dbSize.record(Int64(clamping: v)) }
        if let v = wal { walSize.record(Int64(clamping: v)) }
        if let v = shadowIndex { shadowWALIndex.record(Int64(v)) }
        if let v = shadowOffset { shadowWALSize.record(Int64(clamping: v)) }
    }

    /// Adds `bytes` copied into the shadow WAL.
    func addShadowBytes(_ bytes: UInt64) {
        if bytes > 0 { totalWALBytes.increment(by: Int64(clamping: bytes)) }
    }

    /// Records one finished checkpoint of `mode` (upstream's label: `PASSIVE`, `FULL`, `RESTART`, `TRUNCATE`).
    func checkpointFinished(_ mode: CheckpointMode, started: DispatchTime, failed: Bool) {
        let label = mode.description
        let m = checkpoints.withLock { d in
            if let m = d[label] { return m }
            let m = CheckpointMetrics(path: path, mode: label)
            d[label] = m
            return m
        }
        m.count.increment()
        if failed { m.errorCount.increment() }
        m.seconds.increment(by: Self.seconds(since: started))
    }

    /// Seconds elapsed since `start` on the monotonic clock.
    static func seconds(since start: DispatchTime) -> Double {
        let now = DispatchTime.now().uptimeNanoseconds
        return Double(now &- start.uptimeNanoseconds) / 1e9
    }
}

/// `litestream_checkpoint_count` / `_error_count` / `_seconds` for one (db, mode).
struct CheckpointMetrics: Sendable {
    let count: Counter
    let errorCount: Counter
    let seconds: FloatingPointCounter

    init(path: String, mode: String) {
        // Labels in name order, as the Go client emits them.
        let dims = [("db", path), ("mode", mode)]
        count = Counter(label: "litestream_checkpoint_count", dimensions: dims)
        errorCount = Counter(label: "litestream_checkpoint_error_count", dimensions: dims)
        seconds = FloatingPointCounter(label: "litestream_checkpoint_seconds", dimensions: dims)
    }
}
