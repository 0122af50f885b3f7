import Foundation

/// Timing of one replica (the per-replica config keys, INTERFACES §2.6).
public struct ReplicaOptions: Sendable {
    /// Minimum time between pushes of new WAL to the replica.
    public var syncInterval: Duration = .seconds(1)
    /// Periodic full snapshots; 0 disables.
    public var snapshotInterval: Duration = .zero
    /// How long snapshots are kept; 0 or less disables retention.
    public var retention: Duration = .seconds(24 * 3600)
    /// How often retention is enforced.
    public var retentionCheckInterval: Duration = .seconds(3600)
    /// Retention writes snapshots as usual but deletes nothing on the replica (`skip-remote-deletion`).
    public var skipRemoteDeletion = false
    /// The wall clock retention compares snapshot times with (tests move it to simulate clock jumps).
    public var now: @Sendable () -> Date = { Date() }

    /// Default options.
    public init() {}
}
