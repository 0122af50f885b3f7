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
        let text = expandEnv ? EnvironmentExpansion.expand(yaml) { environment[$0] } : yaml
        let w = YAMLWalker(source: sourceName)
        let root: Node?
        do {
            let parser = try Parser(yaml: text)
            root = try parser.nextRoot()
        } catch {
            throw w.syntaxError(error, text: text)
        }
        var config = Configuration()
        guard let root, let top = try w.mapping(root, key: "") else { return config }

        config.addr = try w.string(top["addr"], key: "addr")
        config.exec = try w.string(top["exec"], key: "exec")
        config.accessKeyID = try w.string(top["access-key-id"], key: "access-key-id")
        config.secretAccessKey = try w.string(top["secret-access-key"], key: "secret-access-key")

        if let dbsNode = top["dbs"], let dbNodes = try w.sequence(dbsNode, key: "dbs") {
            for (i, dbNode) in dbNodes.enumerated() {
                let key = "dbs[\(i)]"
                var db = try parseDatabase(dbNode, key: key, walker: w)
                for j in db.replicas.indices {
                    if db.replicas[j].accessKeyID == nil { db.replicas[j].accessKeyID = config.accessKeyID }
                    if db.replicas[j].secretAccessKey == nil { db.replicas[j].secretAccessKey = config.secretAccessKey }
                }
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
        if r.accessKeyID == nil { r.accessKeyID = accessKeyID }
        if r.secretAccessKey == nil { r.secretAccessKey = secretAccessKey }
        return r
    }

    // MARK: - Internals

    private static func parseDatabase(_ node: Node, key: String, walker w: YAMLWalker) throws -> DatabaseConfig {
        guard let m = try w.mapping(node, key: key) else {
            throw w.fail(key, "database path required")
        }
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
                let raw = try RawReplica.decode(rnode, key: rkey, walker: w)
                let replica: ReplicaConfig
                do {
                    replica = try raw.resolve()
                } catch let e as ReplicaResolutionError {
                    throw w.fail(e.field.map { "\(rkey).\($0)" } ?? rkey, e.message)
                }
                if !names.insert(replica.name).inserted {
                    throw w.fail(raw.name != nil ? "\(rkey).name" : rkey,
                                 "duplicate replica name \(goQuote(replica.name)) (set a unique 'name')")
                }
                db.replicas.append(replica)
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
}

/// One resolved replica destination: type, name and location fields derived from `url` when given.
public struct ReplicaConfig: Sendable {
    /// Resolved type: `file`, `s3`, `gs`, `abs` or `sftp` (`gcs` is normalised to `gs`).
    public var type: String
    /// Explicit name, else the type.
    public var name: String
    /// The `url` as written (its parts are already folded into the other fields).
    public var url: String?
    /// File replicas: absolute directory; s3/gs/abs: key prefix (cleaned, no leading `/`, nil = bucket root); sftp: remote directory.
    public var path: String?
    /// How long snapshots/WAL are kept (default 24 h; ≤ 0 disables retention).
    public var retention: Duration
    /// How often retention is enforced (default 1 h; capped at `retention` when retention > 0).
    public var retentionCheckInterval: Duration
    /// Minimum time between WAL pushes (default 1 s).
    public var syncInterval: Duration
    /// Periodic snapshot interval (default 0 = off).
    public var snapshotInterval: Duration
    /// Accepted for compatibility; has no effect (default 0).
    public var validationInterval: Duration
    /// Bucket (s3, gs) or container (abs).
    public var bucket: String?
    /// S3 region (explicit or URL-derived).
    public var region: String?
    /// S3/ABS endpoint base URL (explicit or URL-derived).
    public var endpoint: String?
    /// S3 path-style addressing; for s3 replicas always resolved (explicit, else endpoint present, OR-ed with the URL host's).
    public var forcePathStyle: Bool?
    /// Disables TLS certificate verification (S3).
    public var skipVerify: Bool
    /// S3 access key id (own value, else the global one).
    public var accessKeyID: String?
    /// S3 secret access key (own value, else the global one); never printed.
    public var secretAccessKey: String?
    /// Azure storage account name.
    public var accountName: String?
    /// Azure storage account key; never printed.
    public var accountKey: String?
    /// SFTP `host` or `host:port`.
    public var host: String?
    /// SFTP user.
    public var user: String?
    /// SFTP password; never printed.
    public var password: String?
    /// SFTP private key file.
    public var keyPath: String?

    /// Creates a replica with default intervals and no location (callers fill in the fields).
    public init(type: String = "file", name: String? = nil) {
        self.type = type
        self.name = name ?? type
        retention = .seconds(24 * 3600)
        retentionCheckInterval = .seconds(3600)
        syncInterval = .seconds(1)
        snapshotInterval = .zero
        validationInterval = .zero
        skipVerify = false
    }

    /// Builds a replica from a URL argument (CLI ad-hoc mode), e.g. `file:///backup`, `s3://bkt/db`.
    public static func fromURL(_ url: String) throws -> ReplicaConfig {
        var raw = RawReplica()
        raw.url = url
        do {
            return try raw.resolve()
        } catch let e as ReplicaResolutionError {
            throw ReplicationError(.invalidInput, e.message)
        }
    }
}

/// A resolution failure: the replica key at fault (nil = the replica as a whole) and upstream's message.
struct ReplicaResolutionError: Error {
    var field: String?
    var message: String
}

/// A replica entry exactly as written in the file (before type/URL resolution).
struct RawReplica {
    var type: String?
    var name: String?
    var url: String?
    var path: String?
    var retention: Duration?
    var retentionCheckInterval: Duration?
    var syncInterval: Duration?
    var snapshotInterval: Duration?
    var validationInterval: Duration?
    var bucket, region, endpoint: String?
    var forcePathStyle: Bool?
    var skipVerify: Bool?
    var accessKeyID, secretAccessKey: String?
    var accountName, accountKey: String?
    var host, user, password, keyPath: String?

    /// Reads the known keys of one `replicas[]` mapping (unknown keys ignored).
    static func decode(_ node: Node, key: String, walker w: YAMLWalker) throws -> RawReplica {
        var r = RawReplica()
        guard let m = try w.mapping(node, key: key) else { return r }
        func s(_ k: String) throws -> String? { try w.string(m[k], key: "\(key).\(k)") }
        func d(_ k: String) throws -> Duration? { try w.duration(m[k], key: "\(key).\(k)") }
        func b(_ k: String) throws -> Bool? { try w.bool(m[k], key: "\(key).\(k)") }
        r.type = try s("type")
        r.name = try s("name")
        r.url = try s("url")
        r.path = try s("path")
        r.retention = try d("retention")
        r.retentionCheckInterval = try d("retention-check-interval")
        r.syncInterval = try d("sync-interval")
        r.snapshotInterval = try d("snapshot-interval")
        r.validationInterval = try d("validation-interval")
        r.bucket = try s("bucket")
        r.region = try s("region")
        r.endpoint = try s("endpoint")
        r.forcePathStyle = try b("force-path-style")
        r.skipVerify = try b("skip-verify")
        r.accessKeyID = try s("access-key-id")
        r.secretAccessKey = try s("secret-access-key")
        r.accountName = try s("account-name")
        r.accountKey = try s("account-key")
        r.host = try s("host")
        r.user = try s("user")
        r.password = try s("password")
        r.keyPath = try s("key-path")
        return r
    }

    /// Applies upstream's `NewReplicaFromConfig` rules: path-is-URL check, type from URL scheme, per-type URL folding and validation.
    func resolve() throws -> ReplicaConfig {
        func fail(_ field: String?, _ message: String) -> ReplicaResolutionError {
            ReplicaResolutionError(field: field, message: message)
        }
        if let p = path, ReplicaURL.isURL(p) {
            throw fail("path", "replica path cannot be a url, please use the 'url' field instead: \(ReplicaURL.redacted(p))")
        }
        var typ: String
        let typeField: String
        if let u = url, let scheme = try? GoURL.parse(u).scheme, !scheme.isEmpty {
            typ = scheme
            typeField = "url"
        } else {
            typ = type ?? "file"
            typeField = "type"
        }
        if typ == "gcs" { typ = "gs" }
        guard ["file", "s3", "gs", "abs", "sftp"].contains(typ) else {
            throw fail(typeField, "unknown replica type in config: \(goQuote(typ))")
        }

        var r = ReplicaConfig(type: typ, name: name)
        r.url = url
        if let v = retention { r.retention = v }
        if let v = retentionCheckInterval { r.retentionCheckInterval = v }
        if let v = syncInterval { r.syncInterval = v }
        if let v = snapshotInterval { r.snapshotInterval = v }
        if let v = validationInterval { r.validationInterval = v }
        if r.retention > .zero && r.retentionCheckInterval > r.retention {
            r.retentionCheckInterval = r.retention
        }
        r.bucket = bucket
        r.region = region
        r.endpoint = endpoint
        r.forcePathStyle = forcePathStyle
        r.skipVerify = skipVerify ?? false
        r.accessKeyID = accessKeyID
        r.secretAccessKey = secretAccessKey
        r.accountName = accountName
        r.accountKey = accountKey
        r.host = host
        r.user = user
        r.password = password
        r.keyPath = keyPath

        func parsedURL(_ u: String) throws -> ParsedReplicaURL {
            do { return try ParsedReplicaURL.parse(u) } catch { throw fail("url", error.oneLine) }
        }
        func goURL(_ u: String) throws -> GoURL {
            do { return try GoURL.parse(u) } catch { throw fail("url", error.oneLine) }
        }
        func keyPrefix(_ p: String?) -> String? {
            guard let p else { return nil }
            let cleaned = ParsedReplicaURL.trimLeadingSlash(GoPath.clean(p))
            return cleaned == "." || cleaned.isEmpty ? nil : cleaned
        }
        func nonEmpty(_ s: String?) -> String? { s?.isEmpty == true ? nil : s }

        switch typ {
        case "file":
            if url != nil && path != nil { throw fail(nil, "cannot specify url & path for file replica") }
            var p = path
            if let u = url { p = try parsedURL(u).path }
            guard let p, !p.isEmpty else { throw fail(nil, "file replica path required") }
            r.path = PathExpansion.expand(p)

        case "s3":
            if url != nil && path != nil { throw fail(nil, "cannot specify url & path for s3 replica") }
            if url != nil && bucket != nil { throw fail(nil, "cannot specify url & bucket for s3 replica") }
            var p = path
            var pathStyle = endpoint != nil
            if let v = forcePathStyle { pathStyle = v }
            if let u = url {
                let parsed = try parsedURL(u)
                let h = S3Host.parse(parsed.host)
                if p == nil { p = parsed.path }
                if r.bucket == nil { r.bucket = nonEmpty(h.bucket) }
                if r.region == nil { r.region = h.region }
                if r.endpoint == nil { r.endpoint = h.endpoint }
                if !pathStyle { pathStyle = h.forcePathStyle }
            }
            r.path = keyPrefix(p)
            r.forcePathStyle = pathStyle
            if r.bucket == nil { throw fail(nil, "bucket required for s3 replica") }

        case "gs":
            if url != nil && path != nil { throw fail(nil, "cannot specify url & path for gs replica") }
            if url != nil && bucket != nil { throw fail(nil, "cannot specify url & bucket for gs replica") }
            var p = path
            if let u = url {
                let parsed = try parsedURL(u)
                if p == nil { p = parsed.path }
                if r.bucket == nil { r.bucket = nonEmpty(parsed.host) }
            }
            r.path = keyPrefix(p)
            if r.bucket == nil { throw fail(nil, "bucket required for gs replica") }

        case "abs":
            if url != nil && path != nil { throw fail(nil, "cannot specify url & path for abs replica") }
            if url != nil && bucket != nil { throw fail(nil, "cannot specify url & bucket for abs replica") }
            var p = path
            if let u = url {
                let parsed = try goURL(u)
                if r.accountName == nil { r.accountName = nonEmpty(parsed.user) }
                if r.bucket == nil { r.bucket = nonEmpty(parsed.host) }
                if p == nil { p = parsed.path }
            }
            r.path = keyPrefix(p)
            if r.bucket == nil { throw fail(nil, "bucket required for abs replica") }

        case "sftp":
            if url != nil && path != nil { throw fail(nil, "cannot specify url & path for sftp replica") }
            if url != nil && host != nil { throw fail(nil, "cannot specify url & host for sftp replica") }
            var p = path
            if let u = url {
                let parsed = try goURL(u)
                if r.host == nil { r.host = nonEmpty(parsed.host) }
                if r.user == nil { r.user = nonEmpty(parsed.user) }
                if r.password == nil { r.password = nonEmpty(parsed.password) }
                if p == nil { p = nonEmpty(parsed.path) }
            }
            r.path = p
            if r.host == nil { throw fail(nil, "host required for sftp replica") }
            if r.user == nil { throw fail(nil, "user required for sftp replica") }

        default:
            break
        }
        return r
    }
}
