extension AzureBlobReplicaClient: LeaseCapableClient {
    /// `<prefix>/lease.json` with Put/Delete Blob conditions (409 BlobAlreadyExists for `If-None-Match: *`, 412
    /// ConditionNotMet for `If-Match`, 404 for a replace of a blob that is gone), through a client of its own with
    /// lease timeouts.
    public func leaseStore(timeout: Duration) throws -> any LeaseStore {
        let c = AzureBlobReplicaClient(location: abs, auth: auth, httpOptions: http.options.forLease(timeout: timeout), logger: logger)
        let blob = c.blobName(LeasePaths.object)
        return ETagLeaseStore(location: "abs://\(abs.account)@\(abs.container)/\(blob)", prefix: "abs", conflicts: [409, 412],
                              putHeaders: [("x-ms-blob-type", "BlockBlob")]) { method, headers, body, what, accepting in
            try c.send(method, blob: blob, headers: headers, body: body, sink: .memory(limit: 1 << 20), what: what,
                       accepting: accepting)
        }
    }
}
