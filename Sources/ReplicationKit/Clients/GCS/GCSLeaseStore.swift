import Foundation

/// The lease object of a GCS replica, `<prefix>/lease.json`, changed only with generation preconditions: an upload
/// with `ifGenerationMatch=0` creates it only if absent, `ifGenerationMatch=<generation>` replaces it only if
/// unchanged, and a delete with `ifGenerationMatch` releases it (412 conditionNotMet otherwise). The version is the
/// object's generation.
///
/// Requests go through a client of their own with short timeouts, so a renewal never waits longer than the lease
/// can afford.
public final class GCSLeaseStore: LeaseStore {
    private let client: GCSReplicaClient
    private let name: String

    init(client: GCSReplicaClient) {
        self.client = client
        name = client.name(LeasePaths.object)
    }

    public var location: String {
        "gs://\(client.gcs.bucket)/\(name)" + (client.gcs.emulator ? " (endpoint \(client.gcs.endpoint))" : "")
    }

    public func readLease() throws -> LeaseObject? {
        // The generation from the metadata, then the bytes of exactly that generation (a replace in between: again).
        for _ in 0..<5 {
            let meta = try client.authorized("GET", url: client.objectURL(name), what: "read lease \(location)")
            if meta.status == 404 { return nil }
            guard (200..<300).contains(meta.status) else { throw client.failure("read lease \(location)", meta) }
            let generation = try Self.generation(meta.body, location)
            let media = try client.authorized("GET", url: client.objectURL(name, query: [("alt", "media"), ("ifGenerationMatch", generation)]),
                                              sink: .memory(limit: 1 << 20), what: "read lease \(location)")
            if media.status == 404 || media.status == 412 { continue }
            guard (200..<300).contains(media.status) else { throw client.failure("read lease \(location)", media) }
            return LeaseObject(data: media.body, version: generation)
        }
        throw ReplicationError(.io, "gs: read lease \(location): the object kept changing while it was read")
    }

    public func createLease(_ data: [UInt8]) throws -> String {
        try upload(data, ifGenerationMatch: "0", what: "create")
    }

    public func replaceLease(_ data: [UInt8], ifMatch version: String) throws -> String {
        try upload(data, ifGenerationMatch: version, what: "renew")
    }

    public func deleteLease(ifMatch version: String) throws {
        let what = "release lease \(location)"
        let resp = try client.authorized("DELETE", url: client.objectURL(name, query: [("ifGenerationMatch", version)]), what: what)
        if resp.status == 404 { return }
        if resp.status == 412 {
            if try readLease() == nil { return }
            throw ReplicationError(.conflict, "gs: \(what): HTTP 412: the object changed")
        }
        guard (200..<300).contains(resp.status) else { throw client.failure(what, resp) }
    }

    private func upload(_ data: [UInt8], ifGenerationMatch: String, what: String) throws -> String {
        let label = "\(what) lease \(location)"
        let resp = try client.authorized("POST", url: client.uploadURL(query: [("uploadType", "media"), ("name", name),
                                                                              ("ifGenerationMatch", ifGenerationMatch)]),
                                         headers: [("Content-Type", "application/json")], body: .bytes(data), what: label)
        if resp.status == 412 { throw ReplicationError(.conflict, "gs: \(label): HTTP 412: the object changed") }
        guard (200..<300).contains(resp.status) else { throw client.failure(label, resp) }
        return try Self.generation(resp.body, location)
    }

    /// The `generation` of an object resource (a decimal string in the JSON API).
    static func generation(_ body: [UInt8], _ location: String) throws -> String {
        let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]
        if let g = json?["generation"] as? String, !g.isEmpty { return g }
        if let g = json?["generation"] as? NSNumber { return g.stringValue }
        throw ReplicationError(.io, "gs: lease \(location): no generation in the object resource")
    }
}

extension GCSReplicaClient: LeaseCapableClient {
    public func leaseStore(timeout: Duration) throws -> any LeaseStore {
        GCSLeaseStore(client: GCSReplicaClient(location: gcs, credentials: credentials,
                                               httpOptions: http.options.forLease(timeout: timeout), logger: logger))
    }
}
