import Foundation

extension ReplicaClient {
    /// The end of the data a generation holds on this replica (REPLICATION §7.1: the newest snapshot's index, or the
    /// end of the last WAL segment at or after it, measured by decompressing that segment), and when its newest
    /// object was written.
    /// - Throws: `.notFound` when the generation has no snapshot; listing and read errors of the store.
    public func endPosition(generation g: Generation) throws -> (position: WALPosition, newest: Date?) {
        let snapshots = try self.snapshots(generation: g)
        guard let snapshotIndex = snapshots.map(\.index).max() else {
            throw ReplicationError(.notFound, "no snapshot available: generation=\(g.name)")
        }
        let segments = try walSegments(generation: g)
        let newest = (snapshots.map(\.createdAt) + segments.map(\.createdAt)).max()
        guard let last = segments.last, last.index >= snapshotIndex else {
            return (WALPosition(generation: g, index: snapshotIndex, offset: 0), newest)
        }
        let src = try openWALSegment(last)
        defer { src.close() }
        let length = try LZ4FrameDecoder { try src.read(into: $0) }.forEachChunk { _ in }
        return (WALPosition(generation: g, index: last.index, offset: last.offset + length), newest)
    }
}

/// `launcher status` without a running launcher: the local positions from the metadata directories, each
/// replica's newest position from its listings, each lease from its object. Blocks on the stores.
public enum StoreStatus {
    /// The status of every database of `config`.
    public static func report(config: Configuration, now: Date = Date()) -> StatusReport {
        StatusReport(source: "stores", databases: config.dbs.map { database($0, now: now) })
    }

    static func database(_ dbc: DatabaseConfig, now: Date) -> StatusReport.Database {
        if dbc.upstreamURL != nil {
            // A follower's applier keeps its applied position in the `position` file.
            let text = (try? FileSystem.readSmallFile(MetaDirectory(databasePath: dbc.path).positionFile))
                .map { String(decoding: $0, as: UTF8.self) }
            return StatusReport.Database(path: dbc.path, role: "follower",
                                         position: text.flatMap(WALPosition.init(parsing:)).map(StatusReport.Position.init),
                                         error: nil, replicas: [], lease: nil)
        }
        var local: WALPosition?, localError: String?
        do { local = try localPosition(dbc.path) } catch { localError = "cannot read the shadow wal: \(error.oneLine)" }
        // The primary's last change: the later mtime of the database and its WAL (as `generations` computes lag).
        let updatedAt = [dbc.path, dbc.path + "-wal"].compactMap { try? FileSystem.info($0)?.modified }.max()
        let replicas = dbc.replicas.map { replica($0, local: local, updatedAt: updatedAt) }
        return StatusReport.Database(path: dbc.path, role: "primary", position: local.map(StatusReport.Position.init),
                                     error: localError, replicas: replicas, lease: lease(dbc, now: now))
    }

    /// The end of the local shadow WAL (its current generation's last segment, measured); nil when there is none.
    public static func localPosition(_ path: String) throws -> WALPosition? {
        let shadow = ShadowWAL(meta: MetaDirectory(databasePath: path))
        guard let g = try shadow.currentGeneration(), let index = try shadow.indexes(g).last else { return nil }
        guard let last = try shadow.segments(g, index: index).last else {
            return WALPosition(generation: g, index: index, offset: 0)
        }
        let length = try shadow.openSegment(last).forEachChunk { _ in }
        return WALPosition(generation: g, index: index, offset: last.offset + length)
    }

    /// One replica: the local generation if it has it, else its newest generation (by its newest object).
    static func replica(_ rc: ReplicaConfig, local: WALPosition?, updatedAt: Date?) -> StatusReport.Replica {
        var entry = StatusReport.Replica(name: rc.name, type: rc.type, position: nil, lagBytes: nil, lagSeconds: nil, error: nil)
        do {
            let client = try ReplicaClientFactory.make(rc)
            entry.type = client.type
            let generations = try client.generations()
            var best: (position: WALPosition, newest: Date?)?
            if let l = local, generations.contains(l.generation) {
                best = try client.endPosition(generation: l.generation)
            } else {
                for g in generations {
                    guard let end = try? client.endPosition(generation: g) else { continue }
                    if best == nil || (end.newest ?? .distantPast) > (best!.newest ?? .distantPast) { best = end }
                }
            }
            guard let best else { return entry }
            entry.position = StatusReport.Position(best.position)
            entry.lagBytes = StatusReport.lagBytes(local: local, replica: best.position)
            if let l = local, l == best.position {
                entry.lagSeconds = 0
            } else if let u = updatedAt, let n = best.newest {
                entry.lagSeconds = max(0, u.timeIntervalSince(n))
            }
        } catch {
            entry.error = error.oneLine
        }
        return entry
    }

    /// The lease object of `dbc`'s lease replica, when a lease is configured: `held` (not yet expired), `expired`
    /// or `free` (no object).
    static func lease(_ dbc: DatabaseConfig, now: Date) -> StatusReport.Lease? {
        guard dbc.lease != nil, let rc = dbc.leaseReplica else { return nil }
        var entry = StatusReport.Lease(location: rc.name, state: "unknown", holder: nil, expiresAt: nil, error: nil)
        do {
            guard let capable = try ReplicaClientFactory.make(rc) as? any LeaseCapableClient else {
                throw ReplicationError(.config, "replica \(goQuote(rc.name)) cannot hold a lease")
            }
            let store = try capable.leaseStore(timeout: .seconds(10))
            entry.location = store.location
            guard let object = try store.readLease() else {
                entry.state = "free"
                return entry
            }
            let record = try LeaseRecord.decode(object.data, location: store.location)
            entry.holder = record.owner
            entry.expiresAt = LeaseRecord.format(record.expiresAt)
            entry.state = record.expiresAt > now ? "held" : "expired"
        } catch {
            entry.error = error.oneLine
        }
        return entry
    }
}
