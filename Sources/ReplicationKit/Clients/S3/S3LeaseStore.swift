import Foundation

/// The lease object of an S3 replica, `<prefix>/lease.json`, changed only with S3 conditional writes: `PUT
/// If-None-Match: *` to create, `PUT If-Match: <etag>` to replace, `DELETE If-Match: <etag>` to release.
///
/// 412 (PreconditionFailed) and 409 (ConditionalRequestConflict, a concurrent conditional write) are conflicts.
/// Requests go through a client of their own with short timeouts and few retries, so a renewal never waits
/// longer than the lease can afford.
public final class S3LeaseStore: LeaseStore {
    private let client: S3ReplicaClient
    private let key: String

    init(client: S3ReplicaClient) {
        self.client = client
        key = client.key(LeasePaths.object)
    }

    public var location: String {
        "s3://\(client.s3.bucket)/\(key)" + (client.s3.endpoint.map { " (endpoint \($0))" } ?? "")
    }

    private static let conflicts: Set<Int> = [409, 412]

    public func readLease() throws -> LeaseObject? {
        let resp = try client.send("GET", key: key, sink: .memory(limit: 1 << 20), what: "read lease \(location)", accepting: [404])
        if resp.status == 404 { return nil }
        return LeaseObject(data: resp.body, version: try etag(resp, "read"))
    }

    public func createLease(_ data: [UInt8]) throws -> String {
        try put(data, condition: ("If-None-Match", "*"), what: "create")
    }

    public func replaceLease(_ data: [UInt8], ifMatch version: String) throws -> String {
        try put(data, condition: ("If-Match", version), what: "renew")
    }

    public func deleteLease(ifMatch version: String) throws {
        let resp = try client.send("DELETE", key: key, headers: [("If-Match", version)], what: "release lease \(location)",
                                   accepting: Self.conflicts.union([404]))
        // A missing object fails `If-Match` too (412): that one is released already.
        if Self.conflicts.contains(resp.status), try readLease() != nil {
            throw ReplicationError(.conflict, "release lease \(location): HTTP \(resp.status): the object changed")
        }
    }

    private func put(_ data: [UInt8], condition: (String, String), what: String) throws -> String {
        let resp = try client.send("PUT", key: key,
                                   headers: [("Content-MD5", Digest.base64(Digest.md5(data))), ("Content-Type", "application/json"),
                                             condition],
                                   body: .bytes(data), payloadSHA256: Digest.hex(Digest.sha256(data)),
                                   what: "\(what) lease \(location)", accepting: Self.conflicts)
        if Self.conflicts.contains(resp.status) {
            throw ReplicationError(.conflict, "\(what) lease \(location): HTTP \(resp.status): the object changed")
        }
        return try etag(resp, what)
    }

    private func etag(_ resp: HTTPResponse, _ what: String) throws -> String {
        guard let e = resp.header("ETag"), !e.isEmpty else {
            throw ReplicationError(.io, "\(what) lease \(location): no ETag in the response; this store cannot hold a lease")
        }
        return e
    }
}

extension S3ReplicaClient: LeaseCapableClient {
    public func leaseStore(timeout: Duration) throws -> any LeaseStore {
        var o = CurlHTTPOptions()
        o.connectTimeout = min(o.connectTimeout, max(timeout / 2, .seconds(1)))
        o.requestTimeout = timeout
        o.stallTimeout = timeout
        o.maxAttempts = 2
        o.maxDelay = .milliseconds(500)
        o.skipVerify = http.options.skipVerify
        let c = S3ReplicaClient(location: s3, provider: credentials, httpOptions: o, logger: logger)
        return S3LeaseStore(client: c)
    }
}
