import Dispatch

extension Database {
    /// This database's metric handles (looked up per use: cheap, and survives a later `bootstrap()`).
    var metrics: DatabaseMetrics { DatabaseMetrics.for(path: path) }

    /// Runs one sync attempt under the sync counters: count, error count, seconds; on success the size and
    /// shadow-position gauges are refreshed (upstream's `DB.Sync` metrics).
    func measuredSync(_ body: () throws -> Void) throws {
        let m = metrics
        let started = DispatchTime.now()
        do {
            try body()
        } catch {
            m.syncFinished(started: started, failed: true)
            throw error
        }
        m.syncFinished(started: started, failed: false)
        // Only for metrics, so a failed stat leaves the gauge as it was.
        let pos = cursor?.position
        m.setSizes(database: Self.sizeForMetrics(path), wal: Self.sizeForMetrics(meta.walPath),
                   shadowIndex: pos?.index, shadowOffset: pos?.offset)
    }

    /// The size of a file, 0 when it does not exist, nil when it cannot be examined.
    private static func sizeForMetrics(_ p: String) -> UInt64? {
        do { return try FileSystem.info(p)?.size ?? 0 } catch { return nil }
    }

    /// Runs one checkpoint under the `mode`-labelled checkpoint counters.
    func measuredCheckpoint(_ mode: CheckpointMode, _ body: () throws -> Void) throws {
        let started = DispatchTime.now()
        do {
            try body()
        } catch {
            metrics.checkpointFinished(mode, started: started, failed: true)
            throw error
        }
        metrics.checkpointFinished(mode, started: started, failed: false)
    }
}
