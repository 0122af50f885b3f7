#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Where and how an S3 replica is addressed.
public struct S3Location: Sendable {
    /// Bucket name.
    public var bucket: String
    /// Key prefix without leading or trailing `/`; empty = bucket root.
    public var prefix: String
    /// Region; nil = discover (AWS) or `us-east-1` (custom endpoint).
    public var region: String?
    /// Base URL of an S3-compatible endpoint; nil = AWS.
    public var endpoint: String?
    /// Path-style (`endpoint/bucket/key`) instead of virtual-host (`bucket.endpoint/key`) addressing.
    public var forcePathStyle: Bool
    /// `x-amz-storage-class` of snapshot and WAL objects; nil = the bucket's default.
    public var storageClass: String?

    /// Creates a location; `prefix` is cleaned (`.`/empty ⇒ root).
    public init(bucket: String, prefix: String?, region: String? = nil, endpoint: String? = nil, forcePathStyle: Bool? = nil) {
        self.bucket = bucket
        let parts = (prefix ?? "").split(separator: "/").filter { $0 != "." && !$0.isEmpty }
        self.prefix = parts.joined(separator: "/")
        self.region = (region?.isEmpty ?? true) ? nil : region
        self.endpoint = (endpoint?.isEmpty ?? true) ? nil : endpoint
        self.forcePathStyle = forcePathStyle ?? (self.endpoint != nil)
    }
}

/// A replica stored in an S3 bucket (AWS or S3-compatible) in the Litestream v0.4 layout, over libcurl with
/// SigV4 signing (signed payload hashes, no `aws-chunked`).
///
/// Every method blocks on the caller's thread. Object bodies are staged to (unlinked) temporary files so a
/// snapshot is never held in memory; uploads of `multipartThreshold` bytes or more use multipart upload.
public final class S3ReplicaClient: ReplicaClient {
    /// Bucket, prefix, region and addressing.
    public let s3: S3Location
    /// Bodies at least this large use multipart upload.
    public let multipartThreshold: UInt64
    /// Multipart part size (≥ 5 MiB except for the last part).
    public let partSize: UInt64
    /// Signing credentials, asked for at every attempt (temporary ones are refreshed before they expire).
    public let credentials: S3CredentialProvider
    let http: CurlHTTPClient
    private let region: Locked<String?>
    let logger: Logger

    public var type: String { "s3" }

    /// `litestream_replica_operation_*{replica_type="s3"}` (looked up per use so a later `bootstrap()` takes effect).
    private var operations: ReplicaOperationMetrics { ReplicaOperationMetrics.for(type: type) }

    /// `s3://bucket/prefix`, plus the endpoint when one is set. Never contains credentials.
    public var location: String {
        var s = "s3://\(s3.bucket)" + (s3.prefix.isEmpty ? "" : "/" + s3.prefix)
        if let e = s3.endpoint { s += " (endpoint \(e))" }
        return s
    }

    /// Metadata for log lines about this replica (bucket, path, endpoint; never credentials).
    public var logMetadata: Logger.Metadata {
        var m: Logger.Metadata = ["replica.type": "s3", "s3.bucket": "\(s3.bucket)", "s3.path": "\(s3.prefix)"]
        if let e = s3.endpoint { m["s3.endpoint"] = "\(e)" }
        return m
    }

    /// Creates a client.
    /// - Parameters:
    ///   - location: bucket, prefix, region, endpoint, addressing style.
    ///   - credentials: static signing credentials (see `S3CredentialChain`).
    ///   - httpOptions: timeouts, retries, `skip-verify`.
    public convenience init(location: S3Location, credentials: AWSCredentials, httpOptions: CurlHTTPOptions = CurlHTTPOptions(),
                            multipartThreshold: UInt64 = 16 << 20, partSize: UInt64 = 8 << 20,
                            logger: Logger = Logger(label: "replicationkit.s3")) {
        self.init(location: location, provider: S3CredentialProvider(static: credentials), httpOptions: httpOptions,
                  multipartThreshold: multipartThreshold, partSize: partSize, logger: logger)
    }

    /// Creates a client signing with the credentials of `provider` (static or temporary).
    public init(location: S3Location, provider: S3CredentialProvider, httpOptions: CurlHTTPOptions = CurlHTTPOptions(),
                multipartThreshold: UInt64 = 16 << 20, partSize: UInt64 = 8 << 20,
                logger: Logger = Logger(label: "replicationkit.s3")) {
        s3 = location
        self.credentials = provider
        http = CurlHTTPClient(options: httpOptions, logger: logger)
        self.multipartThreshold = multipartThreshold
        self.partSize = max(partSize, 5 << 20)
        region = Locked(location.region ?? (location.endpoint != nil ? "us-east-1" : nil))
        self.logger = logger
    }

    /// Builds a client from a replica's configuration and the credential chain.
    /// - Throws: `ReplicationError(.config)` for a missing bucket or credentials.
    public convenience init(destination d: S3Destination,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard !d.bucket.isEmpty else {
            throw ReplicationError(.config, "bucket required for s3 replica")
        }
        try CurlLibrary.load(for: "s3 replica s3://\(d.bucket)")
        try CryptoLibrary.load(for: "s3 replica s3://\(d.bucket)")
        let provider = try S3CredentialChain.provider(accessKeyID: d.accessKeyID, secretAccessKey: d.secretAccessKey,
                                                      environment: environment)
        var o = CurlHTTPOptions()
        o.skipVerify = d.skipVerify
        var location = S3Location(bucket: d.bucket, prefix: d.path, region: d.region, endpoint: d.endpoint,
                                  forcePathStyle: d.forcePathStyle)
        location.storageClass = d.storageClass
        self.init(location: location, provider: provider, httpOptions: o)
        var m = logMetadata
        m["s3.credentials"] = "\(provider.source)"
        // Keyless identities at info (worth seeing once per replica); static keys at debug, so a failing
        // `restore` stays a one-line error.
        logger.log(level: provider.isTemporary ? .info : .debug, "s3 replica credentials", metadata: m)
    }

    // MARK: keys

    /// The full object key of a path relative to the replica root.
    func key(_ relative: String) -> String { s3.prefix.isEmpty ? relative : s3.prefix + "/" + relative }

    public func objectName(snapshot s: SnapshotInfo) -> String {
        ReplicaPaths.snapshot(s.generation, index: s.index, layout: s.layout)
    }

    public func objectName(segment s: WALSegmentInfo) -> String {
        ReplicaPaths.walSegment(s.generation, index: s.index, offset: s.offset, layout: s.layout)
    }

    // MARK: addressing

    /// The URL, `Host` header and decoded path of an object (`key` empty = the bucket).
    func address(key: String, query: [(String, String?)], region: String) -> (url: String, host: String, path: String) {
        var scheme = "https", host = "s3.\(region).amazonaws.com", port: Int?, basePath = ""
        if let e = s3.endpoint, let c = URLComponents(string: e.contains("://") ? e : "https://" + e) {
            scheme = c.scheme ?? "https"
            host = c.host ?? host
            port = c.port
            basePath = c.path.hasSuffix("/") ? String(c.path.dropLast()) : c.path
        }
        var path: String
        // As aws-sdk-go v1: a bucket name with dots cannot be a virtual host under AWS's TLS wildcard certificate.
        if s3.forcePathStyle || (s3.endpoint == nil && s3.bucket.contains(".")) {
            path = basePath + "/" + s3.bucket + (key.isEmpty ? "" : "/" + key)
        } else {
            host = s3.bucket + "." + host
            path = basePath + "/" + key
        }
        if let p = port, !((scheme == "http" && p == 80) || (scheme == "https" && p == 443)) { host += ":\(p)" }
        let q = SigV4Signer.canonicalQuery(query)
        return ("\(scheme)://\(host)\(SigV4Signer.canonicalURI(path))" + (q.isEmpty ? "" : "?" + q), host, path)
    }

    private func resolvedRegion() throws -> String {
        if let r = region.current { return r }
        // GetBucketLocation (`GET /?location`) signed for us-east-1 on the global endpoint.
        let url = "https://\(s3.bucket).s3.amazonaws.com/?location="
        let host = "\(s3.bucket).s3.amazonaws.com"
        let resp: HTTPResponse
        do {
            resp = try http.perform(sink: .memory(limit: 1 << 20)) {
                let signer = SigV4Signer(credentials: try credentials.credentials(), region: "us-east-1")
                let h = signer.sign(SigV4Signer.Request(method: "GET", path: "/", query: [("location", nil)],
                                                        headers: [("Host", host)], payloadSHA256: Digest.emptySHA256))
                return HTTPRequest(method: "GET", url: url, headers: h)
            }
        } catch let e as ReplicationError {
            throw ReplicationError(.io, "cannot lookup bucket region: \(scrub(e.message))", cause: e.cause)
        } catch {
            throw ReplicationError(.io, "cannot lookup bucket region: \(scrub(error.oneLine))", cause: ReplicationError.cause(of: error))
        }
        guard (200..<300).contains(resp.status) else {
            throw httpFailure("GET", "", resp).wrapped("cannot lookup bucket region")
        }
        let r = Self.region(locationConstraint: resp.body)
        region.withLock { $0 = r }
        return r
    }

    /// The region named by a GetBucketLocation response: empty ⇒ `us-east-1`, legacy `EU` ⇒ `eu-west-1`.
    static func region(locationConstraint body: [UInt8]) -> String {
        let r = S3XML.parse(body)?.text.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if r.isEmpty { return "us-east-1" }
        return r == "EU" ? "eu-west-1" : r
    }

    // MARK: requests

    /// S3 error codes that mean temporary credentials expired or were revoked: invalidate them and retry once.
    static let staleCredentialCodes: Set<String> = ["ExpiredToken", "InvalidAccessKeyId", "InvalidToken", "TokenRefreshRequired"]

    /// Sends a signed request and returns the 2xx response (or one whose status is in `accepting`); any other
    /// status becomes a `ReplicationError`. Credentials are taken from the provider for every attempt; a 403 for
    /// stale temporary credentials invalidates them and the request is sent once more with fresh ones.
    func send(_ method: String, key: String, query: [(String, String?)] = [], headers: [(String, String)] = [],
              body: HTTPBody = .empty, payloadSHA256: String = Digest.emptySHA256,
              sink: HTTPResponseSink = .memory(limit: 16 << 20), what: String? = nil,
              accepting: Set<Int> = []) throws -> HTTPResponse {
        let region = try resolvedRegion()
        let addr = address(key: key, query: query, region: region)
        var refreshed = false
        while true {
            let resp: HTTPResponse
            var used = ""
            do {
                resp = try http.perform(sink: sink) {
                    let creds = try credentials.credentials()
                    used = creds.accessKeyID
                    let signer = SigV4Signer(credentials: creds, region: region)
                    let signed = signer.sign(SigV4Signer.Request(method: method, path: addr.path, query: query,
                                                                 headers: [("Host", addr.host)] + headers,
                                                                 payloadSHA256: payloadSHA256))
                    return HTTPRequest(method: method, url: addr.url, headers: signed, body: body)
                }
            } catch let e as ReplicationError {
                // A credential fetch failed: the sync loop retries the replica later.
                throw ReplicationError(.io, scrub("s3: " + (what ?? "\(method) \(s3.bucket)/\(key)") + ": credentials: " + e.message),
                                       cause: e.cause)
            } catch {
                throw ReplicationError(.io, "s3: " + scrub(error.oneLine), cause: ReplicationError.cause(of: error))
            }
            if (200..<300).contains(resp.status) || accepting.contains(resp.status) { return resp }
            var r = resp
            if case .file(let fd) = sink { r.body = Self.readHead(fd, limit: 64 << 10) }
            if case .stream(let receiver) = sink, let range = receiver as? S3RangeReceiver { r.body = range.errorBody }
            if r.status == 403, credentials.isTemporary, !refreshed,
               let code = S3XML.parse(r.body)?.value("Code"), Self.staleCredentialCodes.contains(code) {
                logger.info("s3 temporary credentials rejected; fetching new ones", metadata: [
                    "s3.bucket": "\(s3.bucket)", "s3.error": "\(code)", "s3.credentials": "\(credentials.source)"])
                credentials.invalidate(accessKeyID: used)
                refreshed = true
                continue
            }
            throw httpFailure(method, key, r, what: what)
        }
    }

    private static func readHead(_ fd: Int32, limit: Int) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: limit)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, limit, 0) }
        return n > 0 ? Array(buf.prefix(n)) : []
    }

    /// One line for a non-2xx response: method, bucket/key, status, S3 error code and message; never a secret.
    func httpFailure(_ method: String, _ key: String, _ resp: HTTPResponse, what: String? = nil) -> ReplicationError {
        let err = S3XML.parse(resp.body)
        let code = err?.value("Code") ?? (resp.status == 404 ? "NotFound" : "")
        var detail = err?.value("Message") ?? ""
        if code == "NoSuchBucket" { detail = "bucket \"\(s3.bucket)\" does not exist" + (detail.isEmpty ? "" : " (\(detail))") }
        var text = "s3: " + (what ?? "\(method) \(s3.bucket)/\(key)") + ": HTTP \(resp.status)"
        if !code.isEmpty { text += " \(code)" }
        if !detail.isEmpty { text += ": \(detail)" }
        let notFound = code == "NoSuchKey" || (resp.status == 404 && code != "NoSuchBucket")
        return ReplicationError(notFound ? .notFound : .io, scrub(text),
                                cause: .http(status: resp.status, providerCode: code.isEmpty ? nil : code))
    }

    /// Removes every secret, session token and identity token the provider has seen; keeps `text` on one line.
    private func scrub(_ text: String) -> String { credentials.scrub(text) }

    // MARK: listing

    struct ObjectEntry { var key: String; var size: UInt64; var modified: Date }

    /// ListObjectsV2 over every page.
    /// - Parameter maxKeys: when set, only the first page of at most this many entries is read.
    func list(prefix: String, delimiter: String?, maxKeys: Int? = nil) throws -> (objects: [ObjectEntry], prefixes: [String]) {
        var objects: [ObjectEntry] = [], prefixes: [String] = []
        var token: String?
        repeat {
            var q: [(String, String?)] = [("list-type", "2"), ("prefix", prefix)]
            if let m = maxKeys { q.append(("max-keys", String(m))) }
            if let d = delimiter { q.append(("delimiter", d)) }
            if let t = token { q.append(("continuation-token", t)) }
            let resp = try send("GET", key: "", query: q, what: "list \(s3.bucket)/\(prefix)")
            guard let doc = S3XML.parse(resp.body), doc.name == "ListBucketResult" else {
                throw ReplicationError(.io, "s3: list \(s3.bucket)/\(prefix): malformed ListBucketResult")
            }
            for c in doc.all("Contents") {
                guard let k = c.value("Key") else { continue }
                objects.append(ObjectEntry(key: k, size: UInt64(c.value("Size") ?? "") ?? 0,
                                           modified: Self.parseTimestamp(c.value("LastModified") ?? "") ?? Date(timeIntervalSince1970: 0)))
            }
            for p in doc.all("CommonPrefixes") { if let v = p.value("Prefix") { prefixes.append(v) } }
            operations.record(.list)  // one LIST per result page, as upstream
            token = doc.value("IsTruncated") == "true" && maxKeys == nil ? doc.value("NextContinuationToken") : nil
        } while token != nil
        return (objects, prefixes)
    }

    /// Parses `2026-11-26T20:46:29.000Z` (fractional seconds optional).
    static func parseTimestamp(_ s: String) -> Date? {
        let u = Array(s.utf8)
        guard u.count >= 20 else { return nil }
        func num(_ a: Int, _ b: Int) -> Int32? { Int32(String(decoding: u[a..<b], as: UTF8.self)) }
        guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13), let mi = num(14, 16),
              let sec = num(17, 19) else { return nil }
        var t = tm()
        t.tm_year = y - 1900; t.tm_mon = mo - 1; t.tm_mday = d; t.tm_hour = h; t.tm_min = mi; t.tm_sec = sec
        var frac = 0.0
        if u[19] == UInt8(ascii: ".") {
            var z = 20
            while z < u.count, u[z] >= UInt8(ascii: "0"), u[z] <= UInt8(ascii: "9") { z += 1 }
            frac = Double("0" + String(decoding: u[19..<z], as: UTF8.self)) ?? 0
        }
        return Date(timeIntervalSince1970: Double(timegm(&t)) + frac)
    }

    public func generations() throws -> [Generation] {
        let base = key(ReplicaPaths.generationsDir + "/")
        var out: [Generation] = []
        for p in try list(prefix: base, delimiter: "/").prefixes {
            guard p.hasPrefix(base), p.hasSuffix("/"), let g = Generation(name: String(p.dropFirst(base.count).dropLast())) else {
                continue
            }
            // Filer-backed stores (SeaweedFS) keep emptied "directories" and list them as common prefixes after
            // every object under them is deleted; a generation without objects does not exist.
            guard try !list(prefix: p, delimiter: nil, maxKeys: 1).objects.isEmpty else { continue }
            out.append(g)
        }
        return out.sorted()
    }

    public func snapshots(generation: Generation) throws -> [SnapshotInfo] {
        let base = key(ReplicaPaths.generation(generation) + "/snapshots/")
        return ObjectStoreListing.snapshots(generation: generation, base: base,
                                            objects: try list(prefix: base, delimiter: "/").objects.map { ($0.key, $0.size, $0.modified) })
    }

    public func walSegments(generation: Generation) throws -> [WALSegmentInfo] {
        let base = key(ReplicaPaths.generation(generation) + "/wal/")
        return ObjectStoreListing.segments(generation: generation, base: base,
                                           objects: try list(prefix: base, delimiter: nil).objects.map { ($0.key, $0.size, $0.modified) })
    }

    // MARK: writing

    /// A body staged in an unlinked temporary file with its digests.
    final class StagedBody {
        let fd: FileDescriptor
        var size: UInt64 = 0
        var sha256 = ""
        var md5 = [UInt8]()
        /// (sha256 hex, md5) of each `partSize` range.
        var parts: [(String, [UInt8])] = []

        init(fd: FileDescriptor) { self.fd = fd }
    }

    /// Writes the body to an unlinked temporary file, hashing each `partSize` range (SHA-256 and MD5) on the way;
    /// the whole-object digests are the single part's, or (between one part and the multipart threshold) a
    /// second pass over the file, so large bodies are hashed once.
    private func stage(_ body: ObjectBody) throws -> StagedBody {
        let fd = try TempFile.make()
        let staged = StagedBody(fd: fd)
        var part = Digest(.sha256), partMD5 = Digest(.md5)
        var inPart: UInt64 = 0
        let partSize = self.partSize
        try body { bytes in
            try fd.writeAll(bytes)
            var rest = bytes
            while rest.count > 0 {
                let take = Int(min(UInt64(rest.count), partSize - inPart))
                let chunk = UnsafeRawBufferPointer(rebasing: rest[0..<take])
                part.update(chunk)
                partMD5.update(chunk)
                inPart += UInt64(take)
                if inPart == partSize {
                    staged.parts.append((Digest.hex(part.finish()), partMD5.finish()))
                    part = Digest(.sha256); partMD5 = Digest(.md5); inPart = 0
                }
                rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            }
            staged.size += UInt64(bytes.count)
        }
        if inPart > 0 || staged.parts.isEmpty { staged.parts.append((Digest.hex(part.finish()), partMD5.finish())) }
        if staged.parts.count == 1 {
            (staged.sha256, staged.md5) = staged.parts[0]
        } else if staged.size < multipartThreshold {
            let whole = Digest(.sha256), wholeMD5 = Digest(.md5)
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            var offset: UInt64 = 0
            while offset < staged.size {
                let n = try buf.withUnsafeMutableBytes { try fd.pread(into: $0, at: offset) }
                guard n > 0 else { throw ReplicationError(.io, "s3: staged body shorter than written") }
                buf.withUnsafeBytes { b in
                    let chunk = UnsafeRawBufferPointer(rebasing: b[0..<n])
                    whole.update(chunk)
                    wholeMD5.update(chunk)
                }
                offset += UInt64(n)
            }
            staged.sha256 = Digest.hex(whole.finish())
            staged.md5 = wholeMD5.finish()
        }
        return staged
    }

    /// `x-amz-storage-class` for snapshot and WAL objects when `storage-class` is set (never on the lease object).
    private var storageClassHeader: [(String, String)] {
        s3.storageClass.map { [("x-amz-storage-class", $0)] } ?? []
    }

    /// Uploads a snapshot or WAL object: one PUT, or a multipart upload from `multipartThreshold` bytes on.
    private func put(key: String, body: ObjectBody) throws -> UInt64 {
        let staged = try stage(body)
        defer { try? staged.fd.close() }
        if staged.size < multipartThreshold {
            _ = try send("PUT", key: key, headers: [("Content-MD5", Digest.base64(staged.md5))] + storageClassHeader,
                         body: .file(fd: staged.fd.raw, offset: 0, length: staged.size), payloadSHA256: staged.sha256)
        } else {
            try multipartUpload(key: key, staged: staged)
        }
        operations.record(.put, bytes: staged.size)  // one PUT per object, multipart or not, as upstream
        return staged.size
    }

    private func multipartUpload(key: String, staged: StagedBody) throws {
        let created = try send("POST", key: key, query: [("uploads", nil)], headers: storageClassHeader)
        guard let uploadID = S3XML.parse(created.body)?.value("UploadId"), !uploadID.isEmpty else {
            throw ReplicationError(.io, "s3: POST \(s3.bucket)/\(key)?uploads: no UploadId in response")
        }
        do {
            var etags: [String] = []
            for (i, (sha, md5)) in staged.parts.enumerated() {
                let offset = UInt64(i) * partSize
                let length = min(partSize, staged.size - offset)
                let r = try send("PUT", key: key, query: [("partNumber", String(i + 1)), ("uploadId", uploadID)],
                                 headers: [("Content-MD5", Digest.base64(md5))],
                                 body: .file(fd: staged.fd.raw, offset: offset, length: length), payloadSHA256: sha)
                guard let etag = r.header("ETag") else {
                    throw ReplicationError(.io, "s3: PUT \(s3.bucket)/\(key) part \(i + 1): no ETag in response")
                }
                etags.append(etag)
            }
            var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            for (i, e) in etags.enumerated() {
                xml += "<Part><PartNumber>\(i + 1)</PartNumber><ETag>\(S3XML.escape(e))</ETag></Part>"
            }
            xml += "</CompleteMultipartUpload>"
            let bytes = Array(xml.utf8)
            let done = try send("POST", key: key, query: [("uploadId", uploadID)],
                                headers: [("Content-Type", "application/xml")], body: .bytes(bytes),
                                payloadSHA256: Digest.hex(Digest.sha256(bytes)))
            // CompleteMultipartUpload can fail with 200 and an <Error> body.
            if let doc = S3XML.parse(done.body), doc.name == "Error" {
                throw ReplicationError(.io, scrub("s3: complete multipart upload \(s3.bucket)/\(key): " +
                    "\(doc.value("Code") ?? "error"): \(doc.value("Message") ?? "")"))
            }
        } catch {
            _ = try? send("DELETE", key: key, query: [("uploadId", uploadID)])
            throw error
        }
    }

    public func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
        let started = Date()
        let size = try put(key: key(ReplicaPaths.snapshot(generation, index: index)), body: body)
        return SnapshotInfo(generation: generation, index: index, size: size, createdAt: started)
    }

    public func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
        let started = Date()
        let rel = ReplicaPaths.walSegment(position.generation, index: position.index, offset: position.offset)
        let size = try put(key: key(rel), body: body)
        return WALSegmentInfo(generation: position.generation, index: position.index, offset: position.offset,
                              size: size, createdAt: started)
    }

    // MARK: reading

    private func get(_ relative: String) throws -> any ByteSource {
        let fd = try TempFile.make()
        _ = try send("GET", key: key(relative), sink: .file(fd: fd.raw))
        operations.record(.get, bytes: (try? fd.size()) ?? 0)  // body length
        try fd.seek(to: 0)
        return FileByteSource(fd)
    }

    /// Counts one GET of `bytes` body bytes (a ranged GET of a snapshot download).
    func recordGet(bytes: UInt64) { operations.record(.get, bytes: bytes) }

    public func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource {
        try get(objectName(snapshot: snapshot))
    }

    public func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource {
        try get(objectName(segment: segment))
    }

    // MARK: deleting

    /// DeleteObjects in batches of at most 1,000 keys (Quiet, with Content-MD5); per-key errors are reported.
    func deleteObjects(_ keys: [String]) throws {
        var failures: [String] = []
        var start = 0
        while start < keys.count {
            let batch = keys[start..<min(start + 1000, keys.count)]
            start += batch.count
            var xml = "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
            for k in batch { xml += "<Object><Key>\(S3XML.escape(k))</Key></Object>" }
            xml += "</Delete>"
            let bytes = Array(xml.utf8)
            let resp = try send("POST", key: "", query: [("delete", nil)],
                                headers: [("Content-MD5", Digest.base64(Digest.md5(bytes))), ("Content-Type", "application/xml")],
                                body: .bytes(bytes), payloadSHA256: Digest.hex(Digest.sha256(bytes)),
                                what: "delete \(batch.count) objects in \(s3.bucket)")
            operations.record(.delete)  // one DELETE per DeleteObjects request, as upstream
            for e in S3XML.parse(resp.body)?.all("Error") ?? [] {
                let code = e.value("Code") ?? "error"
                if code == "NoSuchKey" { continue }
                failures.append("\(e.value("Key") ?? "?") (\(code)\(e.value("Message").map { ": " + $0 } ?? ""))")
            }
        }
        if !failures.isEmpty {
            let shown = failures.prefix(5).joined(separator: ", ") + (failures.count > 5 ? ", …" : "")
            throw ReplicationError(.io, scrub("s3: delete objects in \(s3.bucket): \(failures.count) of \(keys.count) failed: \(shown)"))
        }
    }

    public func deleteGeneration(_ generation: Generation) throws {
        let keys = try list(prefix: key(ReplicaPaths.generation(generation) + "/"), delimiter: nil).objects.map(\.key)
        try deleteObjects(keys)
    }

    public func deleteSnapshot(_ snapshot: SnapshotInfo) throws {
        try deleteObjects([key(objectName(snapshot: snapshot))])
    }

    public func deleteWALSegments(_ segments: [WALSegmentInfo]) throws {
        try deleteObjects(segments.map { key(objectName(segment: $0)) })
    }
}
