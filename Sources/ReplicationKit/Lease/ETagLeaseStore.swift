import Foundation

/// A lease object on an HTTP object store with ETag preconditions (S3, Azure Blob): `PUT If-None-Match: *` creates
/// it only if absent, `PUT If-Match: <ETag>` replaces it only if unchanged, `DELETE If-Match` releases it. The
/// version is the ETag. The backend supplies the signed request; this type supplies the protocol.
public final class ETagLeaseStore: LeaseStore {
    /// Sends one request to the lease object and returns its response, which is 2xx or one of `accepting`.
    public typealias Send = @Sendable (_ method: String, _ headers: [(String, String)], _ body: HTTPBody, _ what: String,
                                       _ accepting: Set<Int>) throws -> HTTPResponse

    public let location: String
    private let send: Send
    /// Statuses that mean "the condition did not hold" (S3: 409, 412; Azure: 409, 412).
    private let conflicts: Set<Int>
    /// Headers every PUT carries besides the condition and `Content-MD5` (Azure: `x-ms-blob-type`).
    private let putHeaders: [(String, String)]
    /// The error prefix (`s3`, `abs`).
    private let prefix: String

    /// Creates a store for the object at `location` reached through `send`.
    public init(location: String, prefix: String, conflicts: Set<Int>, putHeaders: [(String, String)] = [], send: @escaping Send) {
        self.location = location
        self.prefix = prefix
        self.conflicts = conflicts
        self.putHeaders = putHeaders
        self.send = send
    }

    public func readLease() throws -> LeaseObject? {
        let resp = try send("GET", [], .empty, "read lease \(location)", [404])
        if resp.status == 404 { return nil }
        return LeaseObject(data: resp.body, version: try etag(resp, "read"))
    }

    public func createLease(_ data: [UInt8]) throws -> String {
        // A 404 here is a missing bucket or container: an error to report, not a lost race.
        try put(data, condition: ("If-None-Match", "*"), what: "create", conflicts: conflicts)
    }

    public func replaceLease(_ data: [UInt8], ifMatch version: String) throws -> String {
        // The object is gone (404 on some stores, 412 on others): someone else moved it.
        try put(data, condition: ("If-Match", version), what: "renew", conflicts: conflicts.union([404]))
    }

    public func deleteLease(ifMatch version: String) throws {
        let resp = try send("DELETE", [("If-Match", version)], .empty, "release lease \(location)", conflicts.union([404]))
        // A missing object fails `If-Match` too (412 on S3): that one is released already.
        if resp.status != 404, conflicts.contains(resp.status), try readLease() != nil {
            throw ReplicationError(.conflict, "\(prefix): release lease \(location): HTTP \(resp.status): the object changed")
        }
    }

    private func put(_ data: [UInt8], condition: (String, String), what: String, conflicts: Set<Int>) throws -> String {
        let headers = putHeaders + [("Content-Type", "application/json"), ("Content-MD5", Digest.base64(Digest.md5(data))), condition]
        let resp = try send("PUT", headers, .bytes(data), "\(what) lease \(location)", conflicts)
        if conflicts.contains(resp.status) {
            throw ReplicationError(.conflict, "\(prefix): \(what) lease \(location): HTTP \(resp.status): the object changed")
        }
        return try etag(resp, what)
    }

    private func etag(_ resp: HTTPResponse, _ what: String) throws -> String {
        guard let e = resp.header("ETag"), !e.isEmpty else {
            throw ReplicationError(.io, "\(prefix): \(what) lease \(location): no ETag in the response; this store cannot hold a lease")
        }
        return e
    }
}

extension CurlHTTPOptions {
    /// These options with the short timeouts and few retries of lease requests, which must give up within
    /// `timeout` so a renewal never outlives the time it has to prove the lease.
    func forLease(timeout: Duration) -> CurlHTTPOptions {
        var o = self
        o.connectTimeout = min(o.connectTimeout, max(timeout / 2, .seconds(1)))
        o.requestTimeout = timeout
        o.stallTimeout = timeout
        o.maxAttempts = 2
        o.maxDelay = .milliseconds(500)
        return o
    }
}
