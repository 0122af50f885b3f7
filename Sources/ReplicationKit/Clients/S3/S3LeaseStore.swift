extension S3ReplicaClient: LeaseCapableClient {
    /// `<prefix>/lease.json` with S3 conditional writes (412 PreconditionFailed; 409 ConditionalRequestConflict for
    /// a concurrent conditional write), through a client of its own with lease timeouts.
    public func leaseStore(timeout: Duration) throws -> any LeaseStore {
        let c = S3ReplicaClient(location: s3, provider: credentials, httpOptions: http.options.forLease(timeout: timeout),
                                logger: logger)
        let key = c.key(LeasePaths.object)
        let location = "s3://\(s3.bucket)/\(key)" + (s3.endpoint.map { " (endpoint \($0))" } ?? "")
        return ETagLeaseStore(location: location, prefix: "s3", conflicts: [409, 412]) { method, headers, body, what, accepting in
            let sha = switch body {
            case .bytes(let b): Digest.hex(Digest.sha256(b))
            default: Digest.emptySHA256
            }
            return try c.send(method, key: key, headers: headers, body: body, payloadSHA256: sha,
                              sink: .memory(limit: 1 << 20), what: what, accepting: accepting)
        }
    }
}
