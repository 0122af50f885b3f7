import Metrics

/// The (`db`, `name`)-labelled series of one replica (INTERFACES §4).
///
/// Get them with `ReplicaMetrics.for(db:name:)` at each use, so handles made before
/// `ReplicationMetrics.bootstrap()` are replaced by live ones.
public final class ReplicaMetrics: Sendable {
    /// Cache key: database path and replica name.
    struct Key: Hashable, Sendable {
        var db: String
        var name: String
    }

    /// `litestream_replica_snapshot_total`: snapshots of the current generation on the replica.
    let snapshotTotal: Gauge
    /// `litestream_replica_wal_bytes`: uncompressed WAL bytes written to the replica.
    let walBytes: Counter
    /// `litestream_replica_wal_index`: last replicated WAL index.
    let walIndex: Gauge
    /// `litestream_replica_wal_offset`: last replicated WAL offset.
    let walOffset: Gauge
    /// `litestream_replica_lag_seconds`: seconds since the replica last held everything the database had (set at scrape).
    let lagSeconds: Gauge
    /// `litestream_replica_lag_bytes`: WAL bytes the replica is behind (`StatusReport.lagBytes`, set at scrape).
    let lagBytes: Gauge
    /// `litestream_replica_sync_error_count`: failed syncs of this replica.
    let syncErrors: Counter
    // Generation and count behind `snapshotTotal`, so writes can count up without listing the replica.
    private let snapshots = Locked<(generation: Generation?, count: Int)>((nil, 0))

    private static let cache = HandleCache<Key, ReplicaMetrics> { ReplicaMetrics($0) }

    /// The handles of replica `name` of the database at `db` (created, and exported at 0, on first use).
    public static func `for`(db: String, name: String) -> ReplicaMetrics { cache.get(Key(db: db, name: name)) }

    private init(_ key: Key) {
        let dims = [("db", key.db), ("name", key.name)]
        snapshotTotal = Gauge(label: "litestream_replica_snapshot_total", dimensions: dims)
        walBytes = Counter(label: "litestream_replica_wal_bytes", dimensions: dims)
        walIndex = Gauge(label: "litestream_replica_wal_index", dimensions: dims)
        walOffset = Gauge(label: "litestream_replica_wal_offset", dimensions: dims)
        lagSeconds = Gauge(label: "litestream_replica_lag_seconds", dimensions: dims)
        lagBytes = Gauge(label: "litestream_replica_lag_bytes", dimensions: dims)
        syncErrors = Counter(label: "litestream_replica_sync_error_count", dimensions: dims)
    }

    /// Sets the lag gauges; an unknown value leaves its gauge as it was.
    func setLag(seconds: Double?, bytes: UInt64?) {
        if let seconds { lagSeconds.record(seconds) }
        if let bytes { lagBytes.record(Int64(clamping: bytes)) }
    }

    /// Sets the replica position gauges.
    func setPosition(_ p: WALPosition) {
        walIndex.record(Int64(p.index))
        walOffset.record(Int64(clamping: p.offset))
    }

    /// Adds uncompressed WAL bytes uploaded.
    func addWALBytes(_ n: UInt64) {
        if n > 0 { walBytes.increment(by: Int64(clamping: n)) }
    }

    /// Sets the number of snapshots of generation `g` on the replica (from a listing).
    func setSnapshotCount(_ count: Int, generation g: Generation) {
        snapshots.withLock { $0 = (g, count) }
        snapshotTotal.record(count)
    }

    /// Counts one snapshot written to generation `g` (a different generation starts over at 1).
    func snapshotWritten(generation g: Generation) {
        let n = snapshots.withLock { s -> Int in
            s = (g, s.generation == g ? s.count + 1 : 1)
            return s.count
        }
        snapshotTotal.record(n)
    }
}

/// Remote operations of one replica type (`litestream_replica_operation_total` / `_bytes`, labels `replica_type`,
/// `operation`); the file replica records none.
public final class ReplicaOperationMetrics: Sendable {
    /// The `operation` label.
    public enum Operation: String, Sendable, CaseIterable {
        case get = "GET", put = "PUT", delete = "DELETE", list = "LIST"
    }

    /// The `replica_type` label.
    public let type: String
    // One (total, bytes) pair per operation, created on first use as upstream's labelled vectors are.
    private let handles = Locked<[Operation: (total: Counter, bytes: Counter?)]>([:])

    private static let cache = HandleCache<String, ReplicaOperationMetrics> { ReplicaOperationMetrics(type: $0) }

    /// The handles for replica type `type` (`s3`, `gs`, `abs`, `sftp`).
    public static func `for`(type: String) -> ReplicaOperationMetrics { cache.get(type) }

    private init(type: String) { self.type = type }

    /// Records one completed operation; `bytes` counts for `GET` (object length) and `PUT` (bytes uploaded).
    public func record(_ op: Operation, bytes n: UInt64 = 0) {
        let h = handles.withLock { d in
            if let h = d[op] { return h }
            // Labels in name order, as the Go client emits them.
            let dims = [("operation", op.rawValue), ("replica_type", type)]
            // Only GET and PUT move counted bytes (upstream never creates the other two byte series).
            let h = (total: Counter(label: "litestream_replica_operation_total", dimensions: dims),
                     bytes: op == .get || op == .put
                        ? Counter(label: "litestream_replica_operation_bytes", dimensions: dims) : nil)
            d[op] = h
            return h
        }
        h.total.increment()
        if n > 0 { h.bytes?.increment(by: Int64(clamping: n)) }
    }
}
