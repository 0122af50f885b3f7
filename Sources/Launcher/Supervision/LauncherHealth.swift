import Foundation
import ReplicationKit

/// What `/readyz` reports for this launcher: the startup phase, every database's position, and every replica's.
final class LauncherHealth: HealthSource, @unchecked Sendable {
    // @unchecked: `replicator` is only read (its entries are fixed after init); `phase` is a lock.

    /// Where the launcher is in its life.
    enum Phase: String, Sendable {
        /// Waiting for the databases' leases.
        case leasing
        /// Restoring missing databases.
        case restoring
        /// Opening databases and waiting for followers' first snapshots.
        case tracking
        /// The app runs (or, without one, replication runs).
        case running
        /// The final sync runs.
        case stopping
        /// A lease was lost: the app is being stopped.
        case leaseLost
    }

    let phase = Locked(Phase.restoring)
    private let replicator: Replicator
    private let supervisesChild: Bool

    init(replicator: Replicator, supervisesChild: Bool) {
        self.replicator = replicator
        self.supervisesChild = supervisesChild
    }

    func healthReport() -> HealthReport {
        let now = Date()
        var dbs: [HealthReport.Database] = []
        for e in replicator.entries {
            let db = e.database
            let pos = db.position
            let replicas = e.replicas.map { r -> HealthReport.Replica in
                let synced = r.syncedPosition.current
                let lag = StatusReport.lagSeconds(local: pos, synced: synced, lastSyncedAt: r.lastSyncedAt.current, now: now)
                return HealthReport.Replica(name: r.name, type: r.client.type, position: synced.map { "\($0)" },
                                            lagSeconds: lag, error: r.lastError.current)
            }
            dbs.append(HealthReport.Database(path: db.path, role: "primary", position: pos.map { "\($0)" },
                                             ready: pos != nil, upstream: nil, replicas: replicas, lease: e.lease?.healthEntry))
        }
        for f in replicator.followers {
            dbs.append(HealthReport.Database(path: f.path, role: "follower", position: f.position.current.map { "\($0)" },
                                             ready: f.isReady.current, upstream: f.upstreamBase, replicas: []))
        }
        let p = phase.current
        var reason: String?
        switch p {
        case .leasing:
            reason = replicator.leases.lazy.compactMap { l -> String? in
                if case .waiting(let holder, let exp) = l.status {
                    return "waiting for the lease on \(l.store.location), held by \(holder) until \(ISO8601DateFormatter().string(from: exp))"
                }
                return nil
            }.first ?? "taking the lease"
        case .leaseLost:
            reason = "lease lost: " + (replicator.lostLease?.reason ?? "stopping")
        case .restoring: reason = "restoring databases"
        case .tracking: reason = "opening databases"
        case .stopping: reason = "shutting down"
        case .running: reason = nil
        }
        // A database whose syncs keep failing is not ready, whatever the phase: a wedge must never look healthy.
        if reason == nil, let wedged = replicator.entries.first(where: { $0.database.syncFailures.current.count >= 3 }) {
            let f = wedged.database.syncFailures.current
            reason = "database \(wedged.database.path): \(f.count) syncs failed in a row since "
                + "\(f.since.map { ISO8601DateFormatter().string(from: $0) } ?? "?"): \(f.lastError ?? "")"
        }
        if reason == nil || p == .tracking, let notReady = dbs.first(where: { !$0.ready }) {
            reason = notReady.role == "follower" ? "waiting for the first snapshot of \(notReady.path)"
                                                 : "database \(notReady.path) is not tracked yet"
        }
        return HealthReport(ready: reason == nil, reason: reason, databases: dbs)
    }
}
