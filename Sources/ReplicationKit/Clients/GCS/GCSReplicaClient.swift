#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Where a GCS replica lives.
public struct GCSLocation: Sendable {
    /// Bucket name.
    public var bucket: String
    /// Object name prefix without leading or trailing `/`; empty = bucket root.
    public var prefix: String
    /// Base URL of the JSON API (`https://storage.googleapis.com` or an emulator).
    public var endpoint: String
    /// Whether `endpoint` is an emulator (configured `endpoint` key or `STORAGE_EMULATOR_HOST`).
    public var emulator: Bool

    /// Creates a location; `prefix` is cleaned (`.`/empty ⇒ root).
    public init(bucket: String, prefix: String?, endpoint: String = "https://storage.googleapis.com", emulator: Bool = false) {
        self.bucket = bucket
        self.prefix = (prefix ?? "").split(separator: "/").filter { $0 != "." && !$0.isEmpty }.joined(separator: "/")
        var e = endpoint
        while e.hasSuffix("/") { e.removeLast() }
        self.endpoint = e
        self.emulator = emulator
    }
}

/// A replica stored in a Google Cloud Storage bucket in the Litestream v0.4 layout, over the JSON API with libcurl.
///
/// Every method blocks on the caller's thread. Bodies are staged in unlinked temporary files; up to
/// `uploadThreshold` bytes go in one `uploadType=multipart` request, larger ones through a resumable session in
/// `chunkSize` pieces (each chunk retried from the offset the server confirms).
public final class GCSReplicaClient: ReplicaClient {
    /// Bucket, prefix, endpoint.
    public let gcs: GCSLocation
    /// Bodies larger than this use a resumable upload.
    public let uploadThreshold: UInt64
    /// Resumable chunk size (a multiple of 256 KiB).
    public let chunkSize: UInt64
    /// `maxResults` for listings; nil = the server's default (1000).
    public let pageSize: Int?
    let credentials: GCSCredentials
    let http: CurlHTTPClient
    let logger: Logger

    public var type: String { "gs" }

    /// `litestream_replica_operation_*{replica_type="gs"}`.
    var operations: ReplicaOperationMetrics { ReplicaOperationMetrics.for(type: type) }

    /// `gs://bucket/prefix`, plus the endpoint when it is not Google's. Never contains a token.
    public var location: String {
        var s = "gs://\(gcs.bucket)" + (gcs.prefix.isEmpty ? "" : "/" + gcs.prefix)
        if gcs.emulator { s += " (endpoint \(gcs.endpoint))" }
        return s
    }

    /// Creates a client.
    public init(location: GCSLocation, credentials: GCSCredentials, httpOptions: CurlHTTPOptions = CurlHTTPOptions(),
                uploadThreshold: UInt64 = 8 << 20, chunkSize: UInt64 = 8 << 20, pageSize: Int? = nil,
                logger: Logger = Logger(label: "replicationkit.gcs")) {
        gcs = location
        self.credentials = credentials
        http = CurlHTTPClient(options: httpOptions, logger: logger)
        self.uploadThreshold = uploadThreshold
        self.chunkSize = max(256 << 10, chunkSize / (256 << 10) * (256 << 10))
        self.pageSize = pageSize
        self.logger = logger
    }

    /// Builds a client from a replica's configuration, the environment (`STORAGE_EMULATOR_HOST`) and the
    /// credential chain.
    /// - Throws: `ReplicationError(.config)` for a missing bucket or credentials.
    public convenience init(destination d: GCSDestination,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard !d.bucket.isEmpty else { throw ReplicationError(.config, "bucket required for gs replica") }
        try CurlLibrary.load(for: "gs replica gs://\(d.bucket)")
        try CryptoLibrary.load(for: "gs replica gs://\(d.bucket)")
        let ep = GCSURL.endpoint(configured: d.endpoint, environment: environment)
        var o = CurlHTTPOptions()
        o.skipVerify = d.skipVerify
        let creds = try GCSCredentials.resolve(environment: environment, emulator: ep.emulator, httpOptions: o)
        self.init(location: GCSLocation(bucket: d.bucket, prefix: d.path, endpoint: ep.base, emulator: ep.emulator),
                  credentials: creds, httpOptions: o)
    }

    // MARK: names and URLs

    /// The full object name of a path relative to the replica root.
    func name(_ relative: String) -> String { gcs.prefix.isEmpty ? relative : gcs.prefix + "/" + relative }

    /// `…/storage/v1/b/BUCKET/o/NAME` (the name percent-encoded, `/` as `%2F`).
    func objectURL(_ name: String, query: [(String, String)] = []) -> String {
        gcs.endpoint + "/storage/v1/b/" + GCSURL.encode(gcs.bucket) + "/o/" + GCSURL.encode(name) + GCSURL.query(query)
    }

    /// `…/storage/v1/b/BUCKET/o?…` (objects.list).
    func listURL(query: [(String, String)]) -> String {
        gcs.endpoint + "/storage/v1/b/" + GCSURL.encode(gcs.bucket) + "/o" + GCSURL.query(query)
    }

    /// `…/upload/storage/v1/b/BUCKET/o?…`.
    func uploadURL(query: [(String, String)]) -> String {
        gcs.endpoint + "/upload/storage/v1/b/" + GCSURL.encode(gcs.bucket) + "/o" + GCSURL.query(query)
    }

    public func objectName(snapshot s: SnapshotInfo) -> String {
        ReplicaPaths.snapshot(s.generation, index: s.index, layout: s.layout)
    }

    public func objectName(segment s: WALSegmentInfo) -> String {
        ReplicaPaths.walSegment(s.generation, index: s.index, offset: s.offset, layout: s.layout)
    }

    // MARK: requests

    /// Sends an authorised request (with the HTTP client's retries) and returns the response whatever its status.
    /// A 401 drops the cached token and the request is sent once more with a new one.
    func authorized(_ method: String, url: String, headers: [(String, String)] = [], body: HTTPBody = .empty,
                    sink: HTTPResponseSink = .memory(limit: 16 << 20), what: String) throws -> HTTPResponse {
        var resp = try sendOnce(method, url: url, headers: headers, body: body, sink: sink, what: what)
        if resp.status == 401, !credentials.isAnonymous {
            credentials.invalidate()
            resp = try sendOnce(method, url: url, headers: headers, body: body, sink: sink, what: what)
        }
        return resp
    }

    func sendOnce(_ method: String, url: String, headers: [(String, String)], body: HTTPBody,
                          sink: HTTPResponseSink, what: String) throws -> HTTPResponse {
        let token: String?
        do { token = try credentials.token() } catch {
            throw ReplicationError(.io, "gs: \(what): \(error.oneLine)", cause: ReplicationError.cause(of: error))
        }
        do {
            return try http.perform(sink: sink) {
                HTTPRequest(method: method, url: url,
                            headers: (token.map { [("Authorization", "Bearer " + $0)] } ?? []) + headers, body: body)
            }
        } catch {
            throw ReplicationError(.io, "gs: \(what): \(error.oneLine)", cause: ReplicationError.cause(of: error))
        }
    }

    /// `authorized` that turns a non-2xx status into a `ReplicationError`.
    func send(_ method: String, url: String, headers: [(String, String)] = [], body: HTTPBody = .empty,
              sink: HTTPResponseSink = .memory(limit: 16 << 20), what: String) throws -> HTTPResponse {
        var resp = try authorized(method, url: url, headers: headers, body: body, sink: sink, what: what)
        guard (200..<300).contains(resp.status) else {
            if case .file(let fd) = sink { resp.body = Self.readHead(fd, limit: 64 << 10) }
            throw failure(what, resp)
        }
        return resp
    }

    static func readHead(_ fd: Int32, limit: Int) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: limit)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, limit, 0) }
        return n > 0 ? Array(buf.prefix(n)) : []
    }

    /// One line for a non-2xx response: replica, operation, status, Google's reason and message.
    func failure(_ what: String, _ resp: HTTPResponse) -> ReplicationError {
        let err = GCSErrorBody.parse(resp.body)
        var text = "gs: \(what): HTTP \(resp.status)"
        if let r = err?.reason, !r.isEmpty { text += " \(r)" }
        if let m = err?.message, !m.isEmpty { text += ": \(m)" }
        if resp.status == 401 { text += " (credentials: \(credentials.source))" }
        return ReplicationError(resp.status == 404 ? .notFound : .io,
                                text.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " "),
                                cause: .http(status: resp.status, providerCode: err?.reason.flatMap { $0.isEmpty ? nil : $0 }))
    }

    // MARK: listing

    /// objects.list over every page.
    func list(prefix: String, delimiter: String?) throws -> (items: [GCSListPage.Item], prefixes: [String]) {
        var items: [GCSListPage.Item] = [], prefixes: [String] = []
        var token: String?
        repeat {
            let page = try listPage(prefix: prefix, delimiter: delimiter, pageToken: token)
            items += page.items
            prefixes += page.prefixes
            token = page.nextPageToken
        } while token != nil
        return (items, prefixes)
    }

    /// One objects.list page (`maxResults` = `pageSize` when set).
    func listPage(prefix: String, delimiter: String?, pageToken: String?) throws -> GCSListPage {
        var q: [(String, String)] = [("prefix", prefix)]
        if let d = delimiter { q.append(("delimiter", d)) }
        if let n = pageSize { q.append(("maxResults", String(n))) }
        if let t = pageToken { q.append(("pageToken", t)) }
        let what = "list gs://\(gcs.bucket)/\(prefix)"
        let resp: HTTPResponse
        do {
            resp = try send("GET", url: listURL(query: q), what: what)
        } catch let e as ReplicationError where e.code == .notFound {
            // objects.list only answers 404 for the bucket itself.
            throw ReplicationError(.io, e.message + " (bucket \"\(gcs.bucket)\" does not exist)", cause: e.cause)
        }
        guard let page = GCSListPage.parse(resp.body) else {
            throw ReplicationError(.io, "gs: \(what): malformed objects.list response")
        }
        operations.record(.list)  // one LIST per result page
        return page
    }

    public func generations() throws -> [Generation] {
        let base = name(ReplicaPaths.generationsDir + "/")
        return try list(prefix: base, delimiter: "/").prefixes.compactMap { p in
            guard p.hasPrefix(base), p.hasSuffix("/") else { return nil }
            return Generation(name: String(p.dropFirst(base.count).dropLast()))
        }.sorted()
    }

    public func snapshots(generation: Generation) throws -> [SnapshotInfo] {
        let base = name(ReplicaPaths.generation(generation) + "/snapshots/")
        return ObjectStoreListing.snapshots(generation: generation, base: base,
                                            objects: try list(prefix: base, delimiter: "/").items.map { ($0.name, $0.size, $0.created) })
    }

    public func walSegments(generation: Generation) throws -> [WALSegmentInfo] {
        let base = name(ReplicaPaths.generation(generation) + "/wal/")
        return Self.segments(generation: generation, base: base, items: try list(prefix: base, delimiter: nil).items)
    }

    /// WAL segments among listed objects (see `ObjectStoreListing.segments`).
    static func segments(generation: Generation, base: String, items: [GCSListPage.Item]) -> [WALSegmentInfo] {
        ObjectStoreListing.segments(generation: generation, base: base, objects: items.map { ($0.name, $0.size, $0.created) })
    }

    // MARK: reading

    /// Streams an object (`alt=media`) into an unlinked temporary file and returns it positioned at its start.
    private func get(_ relative: String) throws -> any ByteSource {
        let fd = try TempFile.make()
        let n = name(relative)
        _ = try send("GET", url: objectURL(n, query: [("alt", "media")]), sink: .file(fd: fd.raw),
                     what: "get gs://\(gcs.bucket)/\(n)")
        operations.record(.get, bytes: (try? fd.size()) ?? 0)
        try fd.seek(to: 0)
        return FileByteSource(fd)
    }

    public func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource {
        try get(objectName(snapshot: snapshot))
    }

    public func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource {
        try get(objectName(segment: segment))
    }

    // MARK: deleting

    /// Deletes one object by its full name; 404 is not an error.
    func delete(fullName n: String) throws {
        let what = "delete gs://\(gcs.bucket)/\(n)"
        let resp = try authorized("DELETE", url: objectURL(n), what: what)
        guard (200..<300).contains(resp.status) || resp.status == 404 else { throw failure(what, resp) }
        operations.record(.delete)
    }

    public func deleteGeneration(_ generation: Generation) throws {
        for o in try list(prefix: name(ReplicaPaths.generation(generation) + "/"), delimiter: nil).items {
            try delete(fullName: o.name)
        }
    }

    public func deleteSnapshot(_ snapshot: SnapshotInfo) throws {
        try delete(fullName: name(objectName(snapshot: snapshot)))
    }

    public func deleteWALSegments(_ segments: [WALSegmentInfo]) throws {
        for s in segments { try delete(fullName: name(objectName(segment: s))) }
    }
}
