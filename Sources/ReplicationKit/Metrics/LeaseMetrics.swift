import Metrics

/// The `db`-labelled lease series of one database (ours; upstream has no lease):
/// `litestream_lease_held` (1 while this launcher holds the lease, else 0), `litestream_lease_expires_seconds`
/// (Unix time the held lease ends unless renewed, by this host's clock) and `litestream_lease_renew_error_count`.
public final class LeaseMetrics: Sendable {
    let held: Gauge
    let expires: Gauge
    let renewErrors: Counter

    private static let cache = HandleCache<String, LeaseMetrics> { LeaseMetrics(path: $0) }

    /// The handles of the database at `path` (created, and exported at 0, on first use).
    public static func `for`(path: String) -> LeaseMetrics { cache.get(path) }

    private init(path: String) {
        let dims = [("db", path)]
        held = Gauge(label: "litestream_lease_held", dimensions: dims)
        expires = Gauge(label: "litestream_lease_expires_seconds", dimensions: dims)
        renewErrors = Counter(label: "litestream_lease_renew_error_count", dimensions: dims)
    }

    /// Records the lease as held until `expiresAt` (Unix seconds), or not held (nil).
    func setHeld(until expiresAt: Double?) {
        held.record(expiresAt == nil ? 0 : 1)
        expires.record(Int64(expiresAt ?? 0))
    }
}
