/// Builds the storage client for a configured replica.
public enum ReplicaClientFactory {
    /// Returns a client for `config`; a destination that cannot be used (missing credentials, a bad key) throws an
    /// error naming the replica.
    public static func make(_ config: ReplicaConfig) throws -> any ReplicaClient {
        let client = try makeStorage(config)
        return config.age.map { AgeReplicaClient(client, config: $0) } ?? client
    }

    /// The backend's own client, without encryption.
    private static func makeStorage(_ config: ReplicaConfig) throws -> any ReplicaClient {
        switch config.destination {
        case .file(let d):
            return FileReplicaClient(root: d.path)
        case .s3(let d):
            return try S3ReplicaClient(destination: d)
        case .gcs(let d):
            return try GCSReplicaClient(destination: d)
        case .azure(let d):
            return try AzureBlobReplicaClient(destination: d)
        case .sftp(let d):
            return try SFTPReplicaClient(destination: d)
        }
    }

    /// Replica timing from its configuration.
    public static func options(_ config: ReplicaConfig) -> ReplicaOptions {
        var o = ReplicaOptions()
        o.syncInterval = config.syncInterval
        o.snapshotInterval = config.snapshotInterval
        o.retention = config.retention
        o.retentionCheckInterval = config.retentionCheckInterval
        o.skipRemoteDeletion = config.skipRemoteDeletion
        return o
    }
}

extension DatabaseConfig {
    /// The tracking options this configuration asks for.
    public var options: DatabaseOptions {
        var o = DatabaseOptions()
        o.monitorDelayInterval = monitorDelayInterval
        o.checkpointInterval = checkpointInterval
        o.minCheckpointPageCount = minCheckpointPageCount
        o.maxCheckpointPageCount = maxCheckpointPageCount
        o.shadowRetentionCount = shadowRetentionCount
        return o
    }
}
