import Foundation

/// What `launcher status` shows and `GET /status` serves: per database the local position, each replica's position,
/// its lag and last error, and the lease. Field names are snake_case and stable (README "launcher status").
public struct StatusReport: Codable, Sendable {
    /// A WAL position as three fields.
    public struct Position: Codable, Sendable, Equatable {
        /// 16 hex digits.
        public var generation: String
        /// WAL index.
        public var index: UInt32
        /// Byte offset in the WAL file of `index` (the 32-byte header included).
        public var offset: UInt64

        /// The fields of `p`.
        public init(_ p: WALPosition) {
            generation = p.generation.name
            index = p.index
            offset = p.offset
        }

        /// The typed position, nil when the generation is malformed.
        public var walPosition: WALPosition? {
            Generation(name: generation).map { WALPosition(generation: $0, index: index, offset: offset) }
        }
    }

    /// One replica of a database.
    public struct Replica: Codable, Sendable {
        public var name: String
        public var type: String
        /// Newest position held by the replica; nil before its first sync or when it cannot be read.
        public var position: Position?
        /// WAL bytes the replica is behind the local position (see `StatusReport.lagBytes`); nil when unknown.
        public var lagBytes: UInt64?
        /// Seconds the replica is behind; 0 when it holds the local position; nil when unknown.
        public var lagSeconds: Double?
        /// The last sync error (or why the replica could not be read); nil when fine.
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case name, type, position, error
            case lagBytes = "lag_bytes"
            case lagSeconds = "lag_seconds"
        }

        /// Creates a replica entry.
        public init(name: String, type: String, position: Position?, lagBytes: UInt64?, lagSeconds: Double?, error: String?) {
            (self.name, self.type, self.position) = (name, type, position)
            (self.lagBytes, self.lagSeconds, self.error) = (lagBytes, lagSeconds, error)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(type, forKey: .type)
            try c.encode(position, forKey: .position)
            try c.encode(lagBytes, forKey: .lagBytes)
            try c.encode(lagSeconds, forKey: .lagSeconds)
            try c.encode(error, forKey: .error)
        }
    }

    /// A database's single-writer lease.
    public struct Lease: Codable, Sendable {
        /// Where the lease object lives.
        public var location: String
        /// From a launcher: `idle`, `waiting`, `held`, `lost`, `released`; from the stores: `held`, `expired`, `free`.
        public var state: String
        /// `hostname:pid` of the holder.
        public var holder: String?
        /// When the holder's lease ends unless renewed (RFC 3339, the holder's clock).
        public var expiresAt: String?
        /// Why the lease could not be read, or why it was lost.
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case location, state, holder, error
            case expiresAt = "expires_at"
        }

        /// Creates a lease entry.
        public init(location: String, state: String, holder: String?, expiresAt: String?, error: String?) {
            (self.location, self.state, self.holder, self.expiresAt, self.error) = (location, state, holder, expiresAt, error)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(location, forKey: .location)
            try c.encode(state, forKey: .state)
            try c.encode(holder, forKey: .holder)
            try c.encode(expiresAt, forKey: .expiresAt)
            try c.encode(error, forKey: .error)
        }
    }

    /// One database.
    public struct Database: Codable, Sendable {
        public var path: String
        /// `primary` or `follower` (a live read replica: no replicas of its own).
        public var role: String
        /// The local position (end of the shadow WAL; a follower's applied position); nil when there is none.
        public var position: Position?
        /// A local error (syncs of the database failing; the shadow WAL unreadable); nil when fine.
        public var error: String?
        public var replicas: [Replica]
        /// The lease, when one is configured.
        public var lease: Lease?

        /// Creates a database entry.
        public init(path: String, role: String, position: Position?, error: String?, replicas: [Replica], lease: Lease?) {
            (self.path, self.role, self.position, self.error, self.replicas, self.lease) = (path, role, position, error, replicas, lease)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(path, forKey: .path)
            try c.encode(role, forKey: .role)
            try c.encode(position, forKey: .position)
            try c.encode(error, forKey: .error)
            try c.encode(replicas, forKey: .replicas)
            try c.encode(lease, forKey: .lease)
        }
    }

    /// `launcher` (read from a running launcher's `/status`) or `stores` (read from the files and replicas).
    public var source: String
    /// False when any database, replica or lease has an error.
    public var healthy: Bool
    public var databases: [Database]

    /// Creates a report; `healthy` is derived from the errors.
    public init(source: String, databases: [Database]) {
        self.source = source
        self.databases = databases
        healthy = databases.allSatisfy { d in
            d.error == nil && d.lease?.error == nil && d.replicas.allSatisfy { $0.error == nil }
        }
    }

    /// WAL bytes `replica` is behind `local`: the offset difference on one WAL index; when the replica is on an
    /// earlier index of the generation, the local offset (a lower bound: the rest of the earlier indexes is not
    /// counted); 0 when it is not behind; nil when either is unknown or they are in different generations.
    public static func lagBytes(local: WALPosition?, replica: WALPosition?) -> UInt64? {
        guard let l = local, let r = replica, l.generation == r.generation else { return nil }
        if r.index == l.index { return l.offset > r.offset ? l.offset - r.offset : 0 }
        return r.index > l.index ? 0 : l.offset
    }

    /// Seconds a replica of a running launcher is behind: 0 when it holds the local position, else the time since
    /// it last held everything the database had (`lastSyncedAt`; it keeps growing while the replica fails); nil
    /// before its first good sync.
    public static func lagSeconds(local: WALPosition?, synced: WALPosition?, lastSyncedAt: Date?, now: Date) -> Double? {
        if let s = synced, let l = local, s == l { return 0 }
        return lastSyncedAt.map { max(0, now.timeIntervalSince($0)) }
    }

    /// The report as JSON (sorted keys, one line, trailing newline).
    public func encoded(pretty: Bool = false) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? e.encode(self)) ?? Data("{}".utf8)) + [0x0A]
    }
}
