import Foundation
import Yams
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A parsed and validated configuration file (INTERFACES §2).
public struct Configuration: Sendable {
    /// HTTP bind address (`addr`); nil when disabled.
    public var addr: String?
    /// Child command line (`exec`); nil when absent.
    public var exec: String?
    /// Global S3 access key id, already copied into replicas that lack one.
    public var accessKeyID: String?
    /// Global S3 secret key, already copied into replicas that lack one.
    public var secretAccessKey: String?
    /// Managed databases in file order.
    public var dbs: [DatabaseConfig]
    /// The top-level `lease:` block, already applied to every database without one of its own.
    public var lease: LeaseConfig?
    /// One line per key that was read but is not acted on (unknown, misspelt or used by another replica type),
    /// naming the file and the key; the commands log them at startup.
    public var warnings: [String] = []

    /// Creates an empty configuration (no databases).
    public init() {
        dbs = []
    }

    /// Loads and validates a config file; a missing file throws `config file not found: PATH`.
    public static func load(path: String, expandEnv: Bool = true,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Configuration {
        let filename = PathExpansion.expand(path)
        let data = try readConfigFile(filename)
        guard let text = String(validating: data, as: UTF8.self) else {
            let bad = firstInvalidUTF8Line(data)
            throw ReplicationError(.config, "\(filename): yaml: line \(bad): invalid UTF-8")
        }
        return try parse(yaml: text, sourceName: filename, expandEnv: expandEnv, environment: environment)
    }

    /// Parses YAML text (after optional `$VAR` expansion); every error is one line prefixed with `sourceName`.
    public static func parse(yaml: String, sourceName: String, expandEnv: Bool = true,
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Configuration {
        if expandEnv, let unset = EnvironmentExpansion.unsetReferences(yaml, lookup: { environment[$0] }).first {
            throw ReplicationError(.config, "\(sourceName): line \(unset.line): environment variable $\(unset.name) is not set "
                + "(set it, write ${\(unset.name):-} for an empty value or ${\(unset.name):-default} for a default, "
                + "or pass -no-expand-env)")
        }
        let text = expandEnv ? EnvironmentExpansion.expand(yaml) { environment[$0] } : yaml
        let w = YAMLWalker(source: sourceName)
        let root: Node?
        do {
            // `YAMLScalar` resolves plain scalars itself (yaml.v2's rules); the parser's resolver only tags mapping
            // keys, and only the merge key `<<` matters there. Yams's rules are regular expressions, and its default
            // resolver compiles seven on first use, which maps ICU's regex engine and data into every launcher
            // (about 1.4 MB of resident memory, issue 15): a file without `<<` gets no rules at all.
            let parser = try Parser(yaml: text, resolver: text.contains("<<") ? Resolver.basic.appending(.merge) : .basic)
            root = try parser.nextRoot()
        } catch {
            throw w.syntaxError(error, text: text)
        }
        var config = Configuration()
        guard let root, let top = try w.mapping(root, key: "") else { return config }
        try KeyChecker.check(top, path: "", known: topLevelKeys, refused: refusedKeys, elsewhere: legacyNote, walker: w,
                             warnings: &config.warnings)

        config.addr = try w.string(top["addr"], key: "addr")
        config.exec = try w.string(top["exec"], key: "exec")
        config.accessKeyID = try w.string(top["access-key-id"], key: "access-key-id")
        config.secretAccessKey = try w.string(top["secret-access-key"], key: "secret-access-key")
        if let node = top["lease"] { config.lease = try LeaseConfig.parse(node, key: "lease", base: nil, walker: w) }

        if let dbsNode = top["dbs"], let dbNodes = try w.sequence(dbsNode, key: "dbs") {
            for (i, dbNode) in dbNodes.enumerated() {
                let key = "dbs[\(i)]"
                var db = try parseDatabase(dbNode, key: key, lease: config.lease, walker: w, warnings: &config.warnings)
                for j in db.replicas.indices { config.applyGlobalCredentials(to: &db.replicas[j]) }
                config.dbs.append(db)
            }
        }
        return config
    }

    /// Finds a database by path after `~`/absolute expansion (first match wins).
    public func database(path: String) -> DatabaseConfig? {
        let target = PathExpansion.expand(path)
        return dbs.first { $0.path == target }
    }

    /// Builds a replica from a URL argument and applies this config's global credentials to it.
    public func replica(url: String) throws -> ReplicaConfig {
        var r = try ReplicaConfig.fromURL(url)
        applyGlobalCredentials(to: &r)
        return r
    }

    /// Copies the top-level `access-key-id`/`secret-access-key` into an S3 replica that has none of its own (the only
    /// backend that reads them).
    func applyGlobalCredentials(to r: inout ReplicaConfig) {
        guard case .s3(var d) = r.destination else { return }
        if d.accessKeyID == nil { d.accessKeyID = accessKeyID }
        if d.secretAccessKey == nil { d.secretAccessKey = secretAccessKey }
        r.destination = .s3(d)
    }

    /// Config files larger than this are refused before they are parsed.
    static let maxConfigSize = 4 << 20

    /// Top-level keys (`logging` is 0.3.13's and not acted on: warned about like an unknown key).
    static let topLevelKeys: Set<String> = ["addr", "exec", "access-key-id", "secret-access-key", "dbs", "lease"]
    /// Database-level keys.
    static let databaseKeys: Set<String> = [
        "path", "upstream", "monitor-delay-interval", "checkpoint-interval", "min-checkpoint-page-count",
        "max-checkpoint-page-count", "shadow-retention-count", "replicas", "lease",
    ]
    /// Keys whose silent acceptance would mislead about safety, at the top and database levels.
    static let refusedKeys: [String: String] = [:]
    /// Notes for 0.3.13 keys that this version reads differently.
    static func legacyNote(_ key: String) -> String? {
        switch key {
        case "logging": return "Litestream 0.3 logging settings are not supported (set LAUNCHER_LOG_LEVEL)"
        case "meta-path": return "Litestream 0.3's meta-path is not supported: the shadow WAL lives in <db>-litestream"
        case "monitor-interval": return "Litestream 0.3's monitor-interval is not used (see monitor-delay-interval)"
        default: return nil
        }
    }

    // MARK: - Internals

    private static func parseDatabase(_ node: Node, key: String, lease: LeaseConfig?, walker w: YAMLWalker,
                                      warnings: inout [String]) throws -> DatabaseConfig {
        guard let m = try w.mapping(node, key: key) else {
            throw w.fail(key, "database path required")
        }
        try KeyChecker.check(m, path: key, known: databaseKeys, refused: refusedKeys, elsewhere: legacyNote, walker: w,
                             warnings: &warnings)
        guard let rawPath = try w.string(m["path"], key: "\(key).path") else {
            throw w.fail("\(key).path", "database path required")
        }
        var db = DatabaseConfig(path: rawPath)
        if let up = m["upstream"], let um = try w.mapping(up, key: "\(key).upstream") {
            db.upstreamURL = try w.string(um["url"], key: "\(key).upstream.url")
            db.upstreamPath = try w.string(um["path"], key: "\(key).upstream.path")
        }
        if let v = try w.duration(m["monitor-delay-interval"], key: "\(key).monitor-delay-interval") {
            db.monitorDelayInterval = v
        }
        if let v = try w.duration(m["checkpoint-interval"], key: "\(key).checkpoint-interval") {
            db.checkpointInterval = v
        }
        if let v = try w.int(m["min-checkpoint-page-count"], key: "\(key).min-checkpoint-page-count") {
            db.minCheckpointPageCount = v
        }
        if db.minCheckpointPageCount <= 0 {
            throw w.fail("\(key).min-checkpoint-page-count", "minimum checkpoint page count required")
        }
        if let v = try w.int(m["max-checkpoint-page-count"], key: "\(key).max-checkpoint-page-count") {
            db.maxCheckpointPageCount = v
        }
        if let v = try w.int(m["shadow-retention-count"], key: "\(key).shadow-retention-count") {
            db.shadowRetentionCount = v
        }
        if let rn = m["replicas"], let replicaNodes = try w.sequence(rn, key: "\(key).replicas") {
            var names: Set<String> = []
            for (j, rnode) in replicaNodes.enumerated() {
                let rkey = "\(key).replicas[\(j)]"
                let raw = try RawReplica.decode(rnode, key: rkey, walker: w, warnings: &warnings)
                let replica: ReplicaConfig
                do {
                    replica = try raw.resolve()
                } catch let e as ReplicaResolutionError {
                    throw w.fail(e.field.map { "\(rkey).\($0)" } ?? rkey, e.message)
                }
                warnings += raw.unusedKeyWarnings(type: replica.type, key: rkey, source: w.source)
                if !names.insert(replica.name).inserted {
                    throw w.fail(raw.name != nil ? "\(rkey).name" : rkey,
                                 "duplicate replica name \(goQuote(replica.name)) (set a unique 'name')")
                }
                db.replicas.append(replica)
            }
        }
        // The top-level lease covers the databases written here; a live read replica writes no replica.
        if db.upstreamURL == nil { db.lease = lease }
        if let node = m["lease"] { db.lease = try LeaseConfig.parse(node, key: "\(key).lease", base: lease, walker: w) }
        if db.lease != nil {
            do { try db.checkLease() } catch let e as ReplicationError {
                if m["lease"] != nil { throw w.fail("\(key).lease", e.message) }
                throw w.fail("lease", "\(key) (\(db.path)): \(e.message)")
            }
        }
        return db
    }

    private static func readConfigFile(_ filename: String) throws -> [UInt8] {
        let fd = open(filename, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            if err == ENOENT || err == ENOTDIR {
                throw ReplicationError(.config, "config file not found: \(filename)")
            }
            throw ReplicationError(.config, "cannot read config file: \(filename): \(String(cString: strerror(err)))")
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            if out.count > maxConfigSize {
                throw ReplicationError(.config, "\(filename): config file too large (more than \(maxConfigSize >> 20) MiB); "
                    + "a configuration is a few KB even for thousands of databases")
            }
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let err = errno
                if err == EINTR { continue }
                throw ReplicationError(.config, "cannot read config file: \(filename): \(String(cString: strerror(err)))")
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    private static func firstInvalidUTF8Line(_ data: [UInt8]) -> Int {
        var line = 1
        var start = 0
        for (i, b) in data.enumerated() where b == UInt8(ascii: "\n") {
            if String(validating: data[start..<i], as: UTF8.self) == nil { return line }
            line += 1
            start = i + 1
        }
        return line
    }
}

/// One `dbs[]` entry with defaults applied.
public struct DatabaseConfig: Sendable {
    /// Absolute, `~`-expanded, cleaned database path.
    public var path: String
    /// Primary's base URL (`upstream.url`) when this DB is a live read replica.
    public var upstreamURL: String?
    /// Database path as known to the primary (`upstream.path`); nil means this DB's own path.
    public var upstreamPath: String?
    /// Delay after a change notification before syncing (default 10 ms; 0 = none).
    public var monitorDelayInterval: Duration
    /// Idle time after which a PASSIVE checkpoint is attempted (default 1 min; 0 disables).
    public var checkpointInterval: Duration
    /// WAL pages at which a PASSIVE checkpoint is attempted (default 1000, always > 0).
    public var minCheckpointPageCount: Int
    /// WAL pages at which a RESTART checkpoint is forced (default 10000; 0 disables).
    public var maxCheckpointPageCount: Int
    /// Shadow-WAL indexes kept locally after replication (default 32).
    public var shadowRetentionCount: Int
    /// Replica destinations in file order.
    public var replicas: [ReplicaConfig]
    /// The single-writer lease, when one is configured (its own `lease:` or the top-level one).
    public var lease: LeaseConfig?

    /// Creates a database entry with default settings; `path` is expanded with `PathExpansion`.
    public init(path: String) {
        self.path = PathExpansion.expand(path)
        monitorDelayInterval = .milliseconds(10)
        checkpointInterval = .seconds(60)
        minCheckpointPageCount = 1000
        maxCheckpointPageCount = 10000
        shadowRetentionCount = 32
        replicas = []
    }

    /// The replica that stores the lease: the one `lease.replica` names, else the first.
    public var leaseReplica: ReplicaConfig? {
        guard let lease else { return nil }
        if let name = lease.replica { return replicas.first { $0.name == name } }
        return replicas.first
    }

    /// Checks that the lease can be kept: a replica to hold it, a replica type with compare-and-swap writes, and a
    /// database that is written here (not a live read replica).
    /// - Throws: `.config` saying what to change.
    public func checkLease() throws {
        guard let lease else { return }
        if upstreamURL != nil {
            throw ReplicationError(.config, "a live read replica (upstream) does not write its replicas, so it takes no lease; remove the lease")
        }
        guard !replicas.isEmpty else {
            throw ReplicationError(.config, "a lease lives on a replica, and this database has none")
        }
        guard let r = leaseReplica else {
            throw ReplicationError(.config, "lease replica \(goQuote(lease.replica ?? "")) is not one of this database's replicas ("
                + replicas.map { goQuote($0.name) }.joined(separator: ", ") + ")")
        }
        if case .sftp = r.destination {
            throw ReplicationError(.config, "replica \(goQuote(r.name)) is an sftp replica, and SFTP has no compare-and-swap write "
                + "to hold a lease safely; put the lease on an s3, gs, abs or file replica (lease.replica)")
        }
    }
}
