import Yams

/// A database's single-writer lease (`lease:` at the top level for every database, or per database): the launcher
/// takes it before restoring, renews it every `ttl / 3`, stops the app and every upload when it cannot prove it,
/// and releases it after the final sync. See README "One writer per replica".
public struct LeaseConfig: Sendable, Equatable {
    /// How long a lease lives without renewal (`ttl`, default 30 s, at least 3 s).
    public var ttl: Duration
    /// How long a starting launcher waits for the lease (`wait`); nil waits forever, logging the holder every 10 s.
    public var wait: Duration?
    /// The name of the replica that stores the lease object (`replica`); nil: the database's first replica.
    public var replica: String?

    /// The shortest `ttl` accepted: renewals happen every `ttl / 3`, and the loss margin is `ttl / 3` too.
    public static let minimumTTL: Duration = .seconds(3)

    /// A lease with the defaults (30 s, wait forever, on the first replica).
    public init(ttl: Duration = .seconds(30), wait: Duration? = nil, replica: String? = nil) {
        self.ttl = ttl
        self.wait = wait
        self.replica = replica
    }

    /// Keys of a `lease:` block. Any other key is an error: a misspelt lease setting must not pass for a safe one.
    static let keys: Set<String> = ["ttl", "wait", "replica"]

    /// Checks `ttl` and `wait`; `key` names the block in the message.
    /// - Throws: `.config` for a ttl below `minimumTTL` or a negative wait.
    public func validate(key: String) throws {
        if ttl < Self.minimumTTL {
            throw ReplicationError(.config, "\(key).ttl: \(GoDuration.format(ttl)) is too short: a lease needs at least "
                + "\(GoDuration.format(Self.minimumTTL)) (it is renewed every ttl/3)")
        }
        if let w = wait, w < .zero {
            throw ReplicationError(.config, "\(key).wait: must not be negative")
        }
    }

    /// Parses a `lease:` block (a mapping; `lease: {}` takes every default), inheriting unset values from `base`.
    static func parse(_ node: Node, key: String, base: LeaseConfig?, walker w: YAMLWalker) throws -> LeaseConfig {
        guard let m = try w.mapping(node, key: key) else { return base ?? LeaseConfig() }
        for k in m.keys.sorted() where !keys.contains(k) {
            let near = KeyChecker.closest(k, in: keys).map { " (did you mean \(goQuote($0))?)" } ?? ""
            throw w.fail("\(key).\(k)", "unknown lease setting\(near); lease settings are ttl, wait and replica")
        }
        var lease = base ?? LeaseConfig()
        if let v = try w.duration(m["ttl"], key: "\(key).ttl") { lease.ttl = v }
        if let v = try w.duration(m["wait"], key: "\(key).wait") { lease.wait = v }
        if let v = try w.string(m["replica"], key: "\(key).replica") { lease.replica = v }
        do { try lease.validate(key: key) } catch let e as ReplicationError {
            throw ReplicationError(.config, "\(w.source): \(e.message)")
        }
        return lease
    }
}
