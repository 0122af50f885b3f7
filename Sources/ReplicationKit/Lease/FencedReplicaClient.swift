/// A replica client whose every write and delete first checks the database's lease (`ReplicaLease.checkWritable`),
/// and runs under `TransferAbort.whileAllowed`, so an upload in flight when the lease stops being provable is
/// aborted at curl's next progress callback: once the lease may have passed to another launcher, nothing more
/// reaches the replica. Reads pass through.
public final class FencedReplicaClient: WrappingReplicaClient {
    /// The client that does the work.
    public let base: any ReplicaClient
    /// The lease that guards it.
    public let lease: ReplicaLease

    /// Wraps `base` behind `lease`.
    public init(_ base: any ReplicaClient, lease: ReplicaLease) {
        self.base = base
        self.lease = lease
    }

    public func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
        try fenced {
            try base.writeSnapshot(generation: generation, index: index) { sink in
                try withoutActuallyEscaping(sink) { try body($0) }
                // Staging may take long for a big snapshot: look again before the upload starts.
                try lease.checkWritable()
            }
        }
    }

    public func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
        try fenced {
            try base.writeWALSegment(position: position) { sink in
                try withoutActuallyEscaping(sink) { try body($0) }
                try lease.checkWritable()
            }
        }
    }

    public func deleteGeneration(_ generation: Generation) throws {
        try fenced { try base.deleteGeneration(generation) }
    }

    public func deleteSnapshot(_ snapshot: SnapshotInfo) throws {
        try fenced { try base.deleteSnapshot(snapshot) }
    }

    public func deleteWALSegments(_ segments: [WALSegmentInfo]) throws {
        try fenced { try base.deleteWALSegments(segments) }
    }

    /// Checks the lease, then runs `body` with every transfer it makes cut off once the lease is lost.
    private func fenced<T>(_ body: () throws -> T) throws -> T {
        try lease.checkWritable()
        let lease = self.lease
        return try TransferAbort.whileAllowed({ lease.lossReason.map { "lease lost: \($0)" } }, body)
    }
}
