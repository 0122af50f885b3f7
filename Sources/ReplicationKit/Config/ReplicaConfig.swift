import Yams

/// One resolved replica: its name, timing and typed destination (derived from `url` and the keys when given).
public struct ReplicaConfig: Sendable {
    /// Explicit name, else the type.
    public var name: String
    /// The `url` as written (its parts are already folded into `destination`).
    public var url: String?
    /// Where the objects live, one type per backend.
    public var destination: ReplicaDestination
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
    /// Retention never deletes objects on the replica (the store's lifecycle rules do); default false.
    public var skipRemoteDeletion: Bool
    /// Client-side encryption (`age:` block, Litestream 0.3.13 keys); nil when objects are stored as plain LZ4.
    public var age: AgeConfig?

    /// The backend type: `file`, `s3`, `gs`, `abs` or `sftp` (`gcs` is normalised to `gs`).
    public var type: String { destination.type }

    /// Creates a replica with default intervals.
    public init(name: String? = nil, destination: ReplicaDestination) {
        self.destination = destination
        self.name = name ?? destination.type
        retention = .seconds(24 * 3600)
        retentionCheckInterval = .seconds(3600)
        syncInterval = .seconds(1)
        snapshotInterval = .zero
        validationInterval = .zero
        skipRemoteDeletion = false
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

/// The keys a replica block may hold, and which backends use each (the one table that key checks read).
enum ReplicaKeys {
    /// Keys every backend reads.
    static let common: Set<String> = [
        "type", "name", "url", "path", "retention", "retention-check-interval", "sync-interval", "snapshot-interval",
        "validation-interval", "skip-remote-deletion", "age",
    ]
    /// Keys of each backend type, beyond the common ones.
    static let byType: [String: Set<String>] = [
        "file": [],
        "s3": ["bucket", "region", "endpoint", "force-path-style", "skip-verify", "access-key-id", "secret-access-key",
               "storage-class"],
        "gs": ["bucket", "endpoint", "skip-verify"],
        "abs": ["account-name", "account-key", "sas-token", "bucket", "endpoint", "skip-verify"],
        "sftp": ["host", "user", "password", "key-path", "key-passphrase", "host-key", "known-hosts-path",
                 "insecure-skip-host-key-check"],
    ]
    /// Keys that change what users believe about security or safety; accepting and ignoring them would mislead.
    static let refused: [String: String] = [:]
    /// Every key some backend reads.
    static var all: Set<String> { byType.values.reduce(common) { $0.union($1) } }
}

/// Reports keys of a mapping that the reader does not act on: `refused` keys are errors, unknown keys warnings
/// naming the closest valid key.
struct KeyChecker {
    /// Checks the keys of `mapping` (at `path`) against `known`; appends warnings, throws for a refused key.
    static func check(_ mapping: [String: Node], path: String, known: Set<String>, refused: [String: String] = [:],
                      elsewhere: (String) -> String? = { _ in nil }, walker w: YAMLWalker,
                      warnings: inout [String]) throws {
        for key in mapping.keys.sorted() where !known.contains(key) {
            let at = path.isEmpty ? key : "\(path).\(key)"
            if let why = refused[key] { throw w.fail(at, why) }
            if let note = elsewhere(key) {
                warnings.append("\(w.source): \(at): \(note); ignored")
            } else if let near = closest(key, in: known.union(refused.keys)) {
                warnings.append("\(w.source): \(at): unknown key (did you mean \(goQuote(near))?); ignored")
            } else {
                warnings.append("\(w.source): \(at): unknown key; ignored")
            }
        }
    }

    /// The candidate nearest to `key` by edit distance, when it is close enough to be a likely misspelling.
    static func closest(_ key: String, in candidates: Set<String>) -> String? {
        var best: (String, Int)?
        for c in candidates.sorted() {
            let d = editDistance(key, c)
            if best == nil || d < best!.1 { best = (c, d) }
        }
        guard let (name, d) = best else { return nil }
        return d <= max(2, min(key.count, name.count) / 3) ? name : nil
    }

    /// Levenshtein distance over characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var prev = Array(0...y.count), cur = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            cur[0] = i
            for j in 1...y.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[y.count]
    }
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
    var skipRemoteDeletion: Bool?
    var bucket, region, endpoint: String?
    var forcePathStyle: Bool?
    var skipVerify: Bool?
    var accessKeyID, secretAccessKey, storageClass: String?
    var accountName, accountKey, sasToken: String?
    var host, user, password, keyPath, keyPassphrase, hostKey, knownHostsPath: String?
    var insecureSkipHostKeyCheck: Bool?
    var age: AgeConfig?
    /// The keys present in the block, for the per-type check after resolution.
    var presentKeys: Set<String> = []

    /// Reads one `replicas[]` mapping; keys no backend reads are warned about, refused keys are errors.
    static func decode(_ node: Node, key: String, walker w: YAMLWalker, warnings: inout [String]) throws -> RawReplica {
        var r = RawReplica()
        guard let m = try w.mapping(node, key: key) else { return r }
        try KeyChecker.check(m, path: key, known: ReplicaKeys.all, refused: ReplicaKeys.refused, walker: w,
                             warnings: &warnings)
        r.presentKeys = Set(m.keys)
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
        r.skipRemoteDeletion = try b("skip-remote-deletion")
        r.bucket = try s("bucket")
        r.region = try s("region")
        r.endpoint = try s("endpoint")
        r.forcePathStyle = try b("force-path-style")
        r.skipVerify = try b("skip-verify")
        r.accessKeyID = try s("access-key-id")
        r.secretAccessKey = try s("secret-access-key")
        r.storageClass = try s("storage-class")
        r.accountName = try s("account-name")
        r.accountKey = try s("account-key")
        r.sasToken = try s("sas-token")
        r.host = try s("host")
        r.user = try s("user")
        r.password = try s("password")
        r.keyPath = try s("key-path")
        r.keyPassphrase = try s("key-passphrase")
        r.hostKey = try s("host-key")
        r.knownHostsPath = try s("known-hosts-path")
        r.insecureSkipHostKeyCheck = try b("insecure-skip-host-key-check")
        if let node = m["age"] { r.age = try AgeConfig.parse(node, key: "\(key).age", walker: w) }
        return r
    }

    /// Warnings for keys present in the block that the resolved type does not read (upstream ignores them silently).
    func unusedKeyWarnings(type: String, key: String, source: String) -> [String] {
        let used = ReplicaKeys.common.union(ReplicaKeys.byType[type] ?? [])
        return presentKeys.subtracting(used).intersection(ReplicaKeys.all).sorted().map {
            "\(source): \(key).\($0): not used by \(type) replicas; ignored"
        }
    }

    /// Applies upstream's `NewReplicaFromConfig` rules: path-is-URL check, type from URL scheme, per-type URL folding
    /// and validation. The one place replica defaults and validation live, for the YAML and the URL forms alike.
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
        guard ReplicaKeys.byType[typ] != nil else {
            throw fail(typeField, "unknown replica type in config: \(goQuote(typ))")
        }

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
        func noURLAnd(_ field: String, _ value: String?) throws {
            if url != nil && value != nil { throw fail(nil, "cannot specify url & \(field) for \(typ) replica") }
        }

        let destination: ReplicaDestination
        switch typ {
        case "file":
            try noURLAnd("path", path)
            var p = path
            if let u = url { p = try parsedURL(u).path }
            guard let p, !p.isEmpty else { throw fail(nil, "file replica path required") }
            destination = .file(FileDestination(path: PathExpansion.expand(p)))

        case "s3":
            try noURLAnd("path", path)
            try noURLAnd("bucket", bucket)
            var p = path
            var b = bucket, r = region, e = endpoint
            var pathStyle = endpoint != nil
            if let v = forcePathStyle { pathStyle = v }
            if let u = url {
                let parsed = try parsedURL(u)
                let h = S3Host.parse(parsed.host)
                if p == nil { p = parsed.path }
                if b == nil { b = nonEmpty(h.bucket) }
                if r == nil { r = h.region }
                if e == nil { e = h.endpoint }
                if !pathStyle { pathStyle = h.forcePathStyle }
            }
            guard let b else { throw fail(nil, "bucket required for s3 replica") }
            if let c = storageClass, !S3Destination.storageClasses.contains(c) {
                throw fail("storage-class", "invalid storage class \(goQuote(c)): use one of "
                    + S3Destination.storageClasses.joined(separator: ", "))
            }
            destination = .s3(S3Destination(bucket: b, path: keyPrefix(p), region: r, endpoint: e,
                                            forcePathStyle: pathStyle, skipVerify: skipVerify ?? false,
                                            accessKeyID: accessKeyID, secretAccessKey: secretAccessKey,
                                            storageClass: storageClass))

        case "gs":
            try noURLAnd("path", path)
            try noURLAnd("bucket", bucket)
            var p = path, b = bucket
            if let u = url {
                let parsed = try parsedURL(u)
                if p == nil { p = parsed.path }
                if b == nil { b = nonEmpty(parsed.host) }
            }
            guard let b else { throw fail(nil, "bucket required for gs replica") }
            destination = .gcs(GCSDestination(bucket: b, path: keyPrefix(p), endpoint: endpoint,
                                              skipVerify: skipVerify ?? false))

        case "abs":
            try noURLAnd("path", path)
            try noURLAnd("bucket", bucket)
            var p = path, b = bucket, account = accountName
            if let u = url {
                let parsed = try goURL(u)
                if account == nil { account = nonEmpty(parsed.user) }
                if b == nil { b = nonEmpty(parsed.host) }
                if p == nil { p = parsed.path }
            }
            guard let b else { throw fail(nil, "bucket required for abs replica") }
            if account == nil && endpoint == nil {
                throw fail(nil, "account-name required for abs replica (or abs://ACCOUNT@CONTAINER/PATH)")
            }
            destination = .azure(AzureDestination(accountName: account, container: b, path: keyPrefix(p),
                                                  endpoint: endpoint, accountKey: accountKey, sasToken: sasToken,
                                                  skipVerify: skipVerify ?? false))

        case "sftp":
            try noURLAnd("path", path)
            try noURLAnd("host", host)
            var p = path, h = host, u = user, pw = password
            if let raw = url {
                let parsed = try goURL(raw)
                if h == nil { h = nonEmpty(parsed.host) }
                if u == nil { u = nonEmpty(parsed.user) }
                if pw == nil { pw = nonEmpty(parsed.password) }
                if p == nil { p = nonEmpty(parsed.path) }
            }
            guard let h else { throw fail(nil, "host required for sftp replica") }
            guard let u else { throw fail(nil, "user required for sftp replica") }
            if hostKey != nil && insecureSkipHostKeyCheck == true {
                throw fail("insecure-skip-host-key-check", "cannot be combined with host-key")
            }
            destination = .sftp(SFTPDestination(host: h, user: u, password: pw, keyPath: keyPath.map(PathExpansion.expand),
                                                keyPassphrase: keyPassphrase, path: p, hostKey: hostKey,
                                                knownHostsPath: knownHostsPath.map(PathExpansion.expand),
                                                insecureSkipHostKeyCheck: insecureSkipHostKeyCheck ?? false))

        default:
            throw fail(typeField, "unknown replica type in config: \(goQuote(typ))")
        }

        var r = ReplicaConfig(name: name, destination: destination)
        r.url = url
        if let v = retention { r.retention = v }
        if let v = retentionCheckInterval { r.retentionCheckInterval = v }
        if let v = syncInterval { r.syncInterval = v }
        if let v = snapshotInterval { r.snapshotInterval = v }
        if let v = validationInterval { r.validationInterval = v }
        if let v = skipRemoteDeletion { r.skipRemoteDeletion = v }
        r.age = age
        if r.retention > .zero && r.retentionCheckInterval > r.retention {
            r.retentionCheckInterval = r.retention
        }
        return r
    }
}
