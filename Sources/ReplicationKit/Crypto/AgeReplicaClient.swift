/// The `age` block of a replica (Litestream 0.3.13 keys): objects are written encrypted to `recipients` and read
/// with `identities`.
public struct AgeConfig: Sendable {
    /// Who can read what is written; empty means this replica can be restored from but not written.
    public var recipients: [AgeRecipient]
    /// The secret keys that read the objects; empty means it can be written but not restored from.
    public var identities: [AgeIdentity]

    /// Creates a configuration.
    public init(recipients: [AgeRecipient], identities: [AgeIdentity]) {
        self.recipients = recipients
        self.identities = identities
    }
}

/// A replica client that stores every snapshot and WAL object as the age encryption of its LZ4 bytes (what
/// Litestream 0.3.13 writes with `age` configured): `encrypt(lz4(data))`. Encryption runs inside the base client's
/// write, decryption inside reads of the returned source, so both happen on the caller's (replica or restore)
/// thread, one 64 KiB chunk at a time. Listings, names and deletions pass through; sizes are the encrypted sizes.
public final class AgeReplicaClient: WrappingReplicaClient {
    /// The client that stores the encrypted objects.
    public let base: any ReplicaClient
    /// The keys.
    public let config: AgeConfig

    /// Wraps `base`.
    public init(_ base: any ReplicaClient, config: AgeConfig) {
        self.base = base
        self.config = config
    }

    public var canReadObjects: Bool { !config.identities.isEmpty && base.canReadObjects }

    public func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
        let recipients = try writeRecipients()
        return try base.writeSnapshot(generation: generation, index: index) { sink in
            try AgeEncryptor.encrypting(to: recipients, sink: sink, body)
        }
    }

    public func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
        let recipients = try writeRecipients()
        return try base.writeWALSegment(position: position) { sink in
            try AgeEncryptor.encrypting(to: recipients, sink: sink, body)
        }
    }

    public func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource {
        let context = describe()
        try checkReadable(context)
        return AgeDecryptingSource(try base.openSnapshot(snapshot), identities: config.identities, context: context)
    }

    public func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource {
        let context = describe()
        try checkReadable(context)
        return AgeDecryptingSource(try base.openWALSegment(segment), identities: config.identities, context: context)
    }

    /// The replica, for errors; the restore path puts the object's name in front.
    private func describe() -> String { "\(base.type) replica \(base.location)" }

    private func writeRecipients() throws -> [AgeRecipient] {
        guard !config.recipients.isEmpty else {
            throw ReplicationError(.config, "\(base.type) replica \(base.location): age has identities but no recipients: "
                + "refusing to write unencrypted objects; add age.recipients (the age1… public keys)")
        }
        return config.recipients
    }

    private func checkReadable(_ context: String) throws {
        guard !config.identities.isEmpty else {
            throw ReplicationError(.config, "\(context): the replica is age-encrypted and age has no identities: "
                + "add age.identities (the AGE-SECRET-KEY-1… key of a recipient) to read it")
        }
    }
}
