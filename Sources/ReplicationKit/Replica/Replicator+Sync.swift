import Foundation

/// What `POST /sync` answers: per database the position current at the request (the target) and, per replica,
/// the position it holds and whether that covers the target. Field names are snake_case (README "launcher sync").
public struct SyncReport: Codable, Sendable {
    /// One replica.
    public struct Replica: Codable, Sendable {
        public var name: String
        public var type: String
        /// The position the replica is known to hold; nil before its first sync or after a failed one.
        public var position: StatusReport.Position?
        /// Whether the replica holds its database's target.
        public var reached: Bool
        /// The replica's last sync error, nil when its last sync succeeded.
        public var error: String?

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(type, forKey: .type)
            try c.encode(position, forKey: .position)
            try c.encode(reached, forKey: .reached)
            try c.encode(error, forKey: .error)
        }
    }

    /// One database.
    public struct Database: Codable, Sendable {
        public var path: String
        /// The local position right after the sync this request ran (nil: nothing to replicate, or `error`).
        public var target: StatusReport.Position?
        /// Why the database could not be synced (then its replicas never count as reached).
        public var error: String?
        public var replicas: [Replica]

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(path, forKey: .path)
            try c.encode(target, forKey: .target)
            try c.encode(error, forKey: .error)
            try c.encode(replicas, forKey: .replicas)
        }
    }

    /// Whether every replica of every database holds its target.
    public var complete: Bool
    public var databases: [Database]

    /// The replicas that do not hold their target, one phrase each (for the timeout message).
    public var lagging: [String] {
        databases.flatMap { d in
            d.replicas.filter { !$0.reached }.map { r in
                "\(d.path) replica \(goQuote(r.name)) holds \(r.position.flatMap(\.walPosition).map { "\($0)" } ?? "nothing known")"
                    + ", needs \(d.target.flatMap(\.walPosition).map { "\($0)" } ?? "-")"
                    + (r.error.map { " (last error: \($0))" } ?? d.error.map { " (database: \($0))" } ?? "")
            }
        }
    }

    /// The report as one line of JSON with sorted keys and a trailing newline.
    public func encoded() -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? e.encode(self)) ?? Data("{}".utf8)) + [0x0A]
    }
}

/// One `POST /sync`: the databases it covers and the position each had right after the request synced it.
public final class SyncRequest: Sendable {
    private let targets: [(entry: Replicator.Entry, target: WALPosition?, error: String?)]

    init(targets: [(entry: Replicator.Entry, target: WALPosition?, error: String?)]) { self.targets = targets }

    /// Whether `synced` covers `target`: at or past it in its generation, or in a newer generation the database
    /// moved to since (which began with a snapshot of everything the target had).
    static func holds(_ synced: WALPosition?, target: WALPosition, current: WALPosition?) -> Bool {
        guard let s = synced else { return false }
        if s.generation == target.generation { return s.compare(target) != .orderedAscending }
        return s.generation == current?.generation
    }

    /// Where every replica stands now against its target.
    public func report() -> SyncReport {
        var dbs: [SyncReport.Database] = []
        for (e, target, error) in targets {
            let current = e.database.position
            let replicas = e.replicas.map { r -> SyncReport.Replica in
                let synced = r.syncedPosition.current
                let reached = error == nil && (target.map { Self.holds(synced, target: $0, current: current) } ?? true)
                return SyncReport.Replica(name: r.name, type: r.client.type, position: synced.map(StatusReport.Position.init),
                                          reached: reached, error: r.lastError.current)
            }
            dbs.append(SyncReport.Database(path: e.database.path, target: target.map(StatusReport.Position.init), error: error,
                                           replicas: replicas))
        }
        return SyncReport(complete: dbs.allSatisfy { $0.replicas.allSatisfy(\.reached) }, databases: dbs)
    }
}

extension Replicator {
    /// Syncs the database at `path` (every database when nil) into its shadow WAL now, on the caller's thread, and
    /// asks each of its replicas to sync at once; the positions after the local sync are the request's targets.
    /// Blocks on the databases' queues: never call it on an event loop or the cooperative pool.
    /// - Throws: `.notFound` when `path` names no replicated database.
    public func requestSync(path: String?) throws -> SyncRequest {
        let chosen = entries.filter { path == nil || $0.database.path == path }
        if let path, chosen.isEmpty {
            let why = followers.contains { $0.path == path } ? "is a live read replica (it has no replicas to sync)"
                                                             : "is not replicated by this launcher"
            throw ReplicationError(.notFound, "database \(path) \(why)")
        }
        var targets: [(entry: Entry, target: WALPosition?, error: String?)] = []
        for e in chosen {
            do {
                try e.database.sync()
                targets.append((e, e.database.position, nil))
            } catch {
                targets.append((e, e.database.position, error.oneLine))
            }
            for r in e.replicas { r.requestSync() }
        }
        return SyncRequest(targets: targets)
    }
}
