/// Builds the storage client for a configured replica.
public enum ReplicaClientFactory {
    /// Returns a client for `config`, or an error naming the replica when its type is not available.
    public static func make(_ config: ReplicaConfig) throws -> any ReplicaClient {
        switch config.destination {
        case .file(let d):
            return FileReplicaClient(root: d.path)
        case .s3(let d):
            return try S3ReplicaClient(destination: d)
        case .gcs:
            throw notYet(config)
        case .azure:
            throw notYet(config)
        case .sftp(let d):
            return try SFTPReplicaClient(destination: d)
        }
    }

    private static func notYet(_ config: ReplicaConfig) -> ReplicationError {
        ReplicationError(.config, "replica \"\(config.name)\": type \"\(config.type)\" is not supported by this build yet; use a file replica")
    }

    /// Replica timing from its configuration.
    public static func options(_ config: ReplicaConfig) -> ReplicaOptions {
        var o = ReplicaOptions()
        o.syncInterval = config.syncInterval
        o.snapshotInterval = config.snapshotInterval
        o.retention = config.retention
        o.retentionCheckInterval = config.retentionCheckInterval
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
