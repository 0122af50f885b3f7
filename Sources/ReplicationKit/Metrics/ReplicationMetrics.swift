import Foundation
import Metrics
import Prometheus

/// Process-wide Prometheus metrics: installs the swift-metrics backend and renders `GET /metrics` (INTERFACES §4).
///
/// Library code records through swift-metrics handles (`DatabaseMetrics`, `ReplicaMetrics`,
/// `ReplicaOperationMetrics`); until `bootstrap()` runs those are swift-metrics' no-op handles, so the library works
/// the same with metrics off.
public enum ReplicationMetrics {
    /// The registry every `litestream_*` series lives in (created once, whether or not it is ever installed).
    public static let registry = PrometheusCollectorRegistry()

    // Whether `bootstrap()` already ran (MetricsSystem.bootstrap may run only once per process).
    private static let state = Locked(false)

    /// Installs a `PrometheusMetricsFactory` over `registry` as the process's swift-metrics backend; idempotent.
    ///
    /// Handles created before this call (databases opened earlier) are recreated against the new backend, so
    /// their series appear at 0. When another backend was bootstrapped by someone else first, nothing is
    /// installed and only the `process_*` family is exported.
    /// - Returns: the registry the series are written to.
    @discardableResult
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let installedNow = state.withLock { done -> Bool in
            guard !done else { return false }
            done = true
            // Another component may have bootstrapped its own backend; bootstrapping twice would crash.
            guard MetricsSystem.factory is NOOPMetricsHandler else { return false }
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            return true
        }
        if installedNow { MetricsHandleCaches.rebuildAll() }
        return registry
    }

    /// Whether `bootstrap()` installed the Prometheus backend in this process.
    public static var isBootstrapped: Bool {
        state.current && MetricsSystem.factory is PrometheusMetricsFactory
    }

    /// The `/metrics` body in the Prometheus text format 0.0.4: every registered series (with upstream's `# HELP`
    /// lines) followed by the `process_*` family read from /proc now.
    public static func exposition() -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(8192)
        registry.emit(into: &raw)
        var out = addHelpLines(raw)
        if !out.isEmpty && out.last != UInt8(ascii: "\n") { out.append(UInt8(ascii: "\n")) }
        out.append(contentsOf: ProcessMetrics.sample().exposition().utf8)
        return out
    }

    /// The content type of `exposition()` for the HTTP `Content-Type` header.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Upstream's help texts (swift-metrics handles carry none, and the registry rejects mixed help texts).
    static let helpTexts: [String: String] = [
        "litestream_db_size": "The current size of the real DB",
        "litestream_wal_size": "The current size of the real WAL",
        "litestream_total_wal_bytes": "Total number of bytes written to shadow WAL",
        "litestream_shadow_wal_index": "The current index of the shadow WAL",
        "litestream_shadow_wal_size": "Current size of shadow WAL, in bytes",
        "litestream_sync_count": "Number of sync operations performed",
        "litestream_sync_error_count": "Number of sync errors that have occurred",
        "litestream_sync_seconds": "Time spent syncing shadow WAL, in seconds",
        "litestream_checkpoint_count": "Number of checkpoint operations performed",
        "litestream_checkpoint_error_count": "Number of checkpoint errors that have occurred",
        "litestream_checkpoint_seconds": "Time spent checkpointing WAL, in seconds",
        "litestream_replica_snapshot_total": "The current number of snapshots",
        "litestream_replica_wal_bytes": "The number wal bytes written",
        "litestream_replica_wal_index": "The current WAL index",
        "litestream_replica_wal_offset": "The current WAL offset",
        "litestream_replica_lag_seconds": "Seconds since the replica last held everything the database had (0: up to date)",
        "litestream_replica_lag_bytes": "WAL bytes the replica is behind the local position (a lower bound across WAL indexes)",
        "litestream_replica_sync_error_count": "Number of failed syncs of the replica",
        "litestream_replica_operation_total": "The number of replica operations performed",
        "litestream_replica_operation_bytes": "The number of bytes used by replica operations",
        "litestream_lease_held": "Whether this launcher holds the database's single-writer lease (1) or not (0)",
        "litestream_lease_expires_seconds": "Unix time the held lease ends unless renewed (0 when not held)",
        "litestream_lease_renew_error_count": "Number of failed lease renewals",
    ]

    /// Inserts `# HELP name text` before each `# TYPE name …` line of a known family that has no HELP line yet.
    static func addHelpLines(_ raw: [UInt8]) -> [UInt8] {
        let text = String(decoding: raw, as: UTF8.self)
        var out = ""
        out.reserveCapacity(text.utf8.count + 1024)
        var previous: Substring = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("# TYPE ") {
                let name = line.dropFirst(7).prefix { $0 != " " }
                if let help = helpTexts[String(name)], !previous.hasPrefix("# HELP \(name) ") {
                    out += "# HELP \(name) \(help)\n"
                }
            }
            out += line
            out += "\n"
            previous = line
        }
        return Array(out.utf8)
    }
}

/// Process-wide caches of metric handles, keyed by label values, rebuilt when the backend is installed.
///
/// Handles are created lazily from paths and names because the objects that own the data (databases, replicas)
/// may be created before `ReplicationMetrics.bootstrap()`.
final class HandleCache<Key: Hashable & Sendable, Handles: Sendable>: Sendable {
    private let entries = Locked<[Key: Handles]>([:])
    private let make: @Sendable (Key) -> Handles

    init(_ make: @escaping @Sendable (Key) -> Handles) {
        self.make = make
        MetricsHandleCaches.add { [weak self] in self?.rebuild() }
    }

    /// The handles for `key`, created (and so exported at 0) on first use.
    func get(_ key: Key) -> Handles {
        entries.withLock { d in
            if let h = d[key] { return h }
            let h = make(key)
            d[key] = h
            return h
        }
    }

    /// Recreates every cached entry against the current backend.
    func rebuild() {
        entries.withLock { d in
            for k in Array(d.keys) { d[k] = make(k) }
        }
    }
}

/// Every `HandleCache`, so `bootstrap()` can rebuild them.
enum MetricsHandleCaches {
    private static let rebuilders = Locked<[@Sendable () -> Void]>([])

    static func add(_ rebuild: @escaping @Sendable () -> Void) {
        rebuilders.withLock { $0.append(rebuild) }
    }

    static func rebuildAll() {
        for r in rebuilders.current { r() }
    }
}
