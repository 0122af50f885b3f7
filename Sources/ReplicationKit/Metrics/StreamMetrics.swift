import Metrics

/// The live-replication series of one database (this project's; upstream has none): `litestream_stream_clients`,
/// `litestream_stream_snapshot_total`, `litestream_stream_segment_total`, labelled `db`.
final class StreamMetrics: Sendable {
    /// Stream clients attached now.
    let clients: Gauge
    /// Snapshot records sent.
    let snapshots: Counter
    /// WAL-segment records sent.
    let segments: Counter

    private static let cache = HandleCache<String, StreamMetrics> { StreamMetrics(path: $0) }

    /// The handles of the database at `path`, created once (stream sessions are short-lived, syncs are not).
    static func `for`(path: String) -> StreamMetrics { cache.get(path) }

    private init(path: String) {
        let dims = [("db", path)]
        clients = Gauge(label: "litestream_stream_clients", dimensions: dims)
        snapshots = Counter(label: "litestream_stream_snapshot_total", dimensions: dims)
        segments = Counter(label: "litestream_stream_segment_total", dimensions: dims)
    }
}
