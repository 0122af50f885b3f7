import Foundation

extension Replica {
    /// Takes a snapshot: WAL first (through the snapshot's position), then the database file (REPLICATION §7.3).
    ///
    /// Uploading the WAL before the snapshot means a restore from this snapshot always finds the WAL it needs.
    @discardableResult
    func snapshot() throws -> SnapshotInfo {
        let lease = try snapshots.beginSnapshot()
        defer { snapshots.endSnapshot(lease) }
        let pos = lease.position
        let g = pos.generation
        if position?.generation != g {
            position = nil
        }
        do {
            if position == nil { try resetPosition(to: pos) }
            try uploadWAL(generation: g)
        } catch let e as ReplicationError where e.code == .notFound {
            // The shadow no longer holds what the replica had; restart this index on the replica.
            try resetPosition(to: pos)
            try uploadWAL(generation: g)
        }
        let info: SnapshotInfo
        do {
            info = try client.writeSnapshot(generation: g, index: pos.index) { sinkNow in
                try withoutActuallyEscaping(sinkNow) { sink in
                    let encoder = try LZ4FrameEncoder(sink: sink)
                    var buf = [UInt8](repeating: 0, count: 1 << 20)
                    var offset: UInt64 = 0
                    while offset < lease.size {
                        let want = Int(min(UInt64(buf.count), lease.size - offset))
                        let n = try buf.withUnsafeMutableBytes {
                            try lease.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want]), at: offset)
                        }
                        if n == 0 { break }
                        try buf.withUnsafeBytes { try encoder.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                        offset += UInt64(n)
                    }
                    try encoder.finish()
                }
            }
        } catch {
            throw (error as? ReplicationError)?.wrapped("snapshot") ?? error
        }
        metrics.snapshotWritten(generation: g)
        logger.info("snapshot written \(g.name)/\(Hex.format(pos.index, width: 16))")
        return info
    }

    /// Starts the replica's WAL of this generation at (index, 0), dropping objects at or after that index.
    private func resetPosition(to pos: WALPosition) throws {
        let stale = try client.walSegments(generation: pos.generation).filter { $0.index >= pos.index }
        if !stale.isEmpty { try client.deleteWALSegments(stale) }
        position = WALPosition(generation: pos.generation, index: pos.index, offset: 0)
        publishPosition()
    }

    /// Checks that the replica still holds a snapshot of the generation being written; when it does not (the
    /// directory or prefix was deleted, the bucket recreated) the WAL uploaded since would be unrestorable, so a
    /// new snapshot is written at once, with one log line. Runs on every retention check and before the final sync.
    func ensureGenerationOnReplica(knownSnapshots: [SnapshotInfo]? = nil) throws {
        guard position != nil, let g = log.position?.generation else { return }
        let snapshots = try knownSnapshots.map { $0.filter { $0.generation == g } } ?? client.snapshots(generation: g)
        guard snapshots.isEmpty else { return }
        logger.warning("replica \(name) (\(client.location)) no longer holds generation \(g.name) (deleted or recreated?); writing a new snapshot")
        position = nil
        publishPosition()
        _ = try snapshot()
    }

    /// Deletes snapshots older than `retention`, keeping at least one, and the WAL they no longer need (§7.5).
    /// With `skipRemoteDeletion` it only writes a snapshot when none is inside the window, and deletes nothing.
    func enforceRetention() throws {
        let generations = try client.generations()
        var all: [SnapshotInfo] = []
        for g in generations { all += try client.snapshots(generation: g) }
        if let g = log.position?.generation, position != nil, !all.contains(where: { $0.generation == g }) {
            try ensureGenerationOnReplica(knownSnapshots: all)
            all += try client.snapshots(generation: g)
        }
        let cutoff = options.now().addingTimeInterval(-options.retention.timeInterval)
        var retained = all.filter { $0.createdAt >= cutoff }
        if retained.isEmpty { retained = [try snapshot()] }
        let current = log.position?.generation
        if options.skipRemoteDeletion {
            logger.debug("retention: skip-remote-deletion is set; nothing deleted on replica \(name)")
        }
        for g in generations where !options.skipRemoteDeletion {
            let kept = retained.filter { $0.generation == g }
            guard let m = kept.map(\.index).min() else {
                if g == current { continue }  // never delete the generation being written
                try client.deleteGeneration(g)
                logger.info("generation deleted \(g.name)")
                continue
            }
            for s in all where s.generation == g && s.index < m {
                try client.deleteSnapshot(s)
                logger.info("snapshot deleted \(g.name)/\(Hex.format(s.index, width: 16))")
            }
            let oldWAL = try client.walSegments(generation: g).filter { $0.index < m }
            if !oldWAL.isEmpty {
                try client.deleteWALSegments(oldWAL)
                logger.info("wal segments deleted: \(g.name) below index \(Hex.format(m, width: 16)) count=\(oldWAL.count)")
            }
        }
        // Retention is rare (hourly by default), so one listing keeps the snapshot gauge exact.
        if let g = current { metrics.setSnapshotCount(try client.snapshots(generation: g).count, generation: g) }
    }

    /// Runs retention now (for tests and the CLI).
    public func runRetention() throws {
        try queue.sync { try enforceRetention() }
    }

    /// Takes a snapshot now (for tests and the CLI).
    public func takeSnapshot() throws {
        try queue.sync { _ = try snapshot() }
    }
}
