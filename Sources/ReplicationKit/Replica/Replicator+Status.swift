import Foundation

extension Replicator {
    /// The status of this running replicator (`GET /status`): positions, lag and errors as the replicas know them,
    /// and each lease as this launcher sees it. Reads published values only; never touches a store.
    public func statusReport(now: Date = Date()) -> StatusReport {
        var dbs: [StatusReport.Database] = []
        for e in entries {
            let db = e.database
            let local = db.position
            let replicas = e.replicas.map { r -> StatusReport.Replica in
                let synced = r.syncedPosition.current
                return StatusReport.Replica(
                    name: r.name, type: r.client.type, position: synced.map(StatusReport.Position.init),
                    lagBytes: StatusReport.lagBytes(local: local, replica: synced),
                    lagSeconds: StatusReport.lagSeconds(local: local, synced: synced, lastSyncedAt: r.lastSyncedAt.current, now: now),
                    error: r.lastError.current)
            }
            let failures = db.syncFailures.current
            let lease = e.lease.map { l -> StatusReport.Lease in
                let h = l.healthEntry
                return StatusReport.Lease(location: h.location, state: h.state, holder: h.holder, expiresAt: h.expiresAt,
                                          error: h.state == "lost" ? h.error ?? "lost" : h.error)
            }
            dbs.append(StatusReport.Database(path: db.path, role: "primary", position: local.map(StatusReport.Position.init),
                                             error: failures.count > 0 ? failures.lastError : nil, replicas: replicas,
                                             lease: lease))
        }
        for f in followers {
            dbs.append(StatusReport.Database(path: f.path, role: "follower", position: f.position.current.map(StatusReport.Position.init),
                                             error: nil, replicas: [], lease: nil))
        }
        return StatusReport(source: "launcher", databases: dbs)
    }

    /// Sets every replica's lag gauges (`litestream_replica_lag_seconds`, `_bytes`) from the published positions;
    /// `/metrics` calls it before each exposition.
    public func recordLagMetrics(now: Date = Date()) {
        for e in entries {
            let local = e.database.position
            for r in e.replicas {
                let synced = r.syncedPosition.current
                r.metrics.setLag(seconds: StatusReport.lagSeconds(local: local, synced: synced, lastSyncedAt: r.lastSyncedAt.current, now: now),
                                 bytes: StatusReport.lagBytes(local: local, replica: synced))
            }
        }
    }
}
