import Foundation

extension Database {
    /// Applies the checkpoint policy after a sync (REPLICATION §6.8).
    func checkpointIfNeeded() throws {
        guard let c = cursor, activeSnapshots == 0 else { return }
        guard let mode = try CheckpointPolicy.decide(offset: c.position.offset, pageSize: pageSize, options: options,
                                                     databaseAge: {
            let modified = try FileSystem.info(path)?.modified ?? Date()
            return .milliseconds(Int64(Date().timeIntervalSince(modified) * 1000))
        }) else { return }
        try checkpointOnQueue(mode)
    }

    /// Runs a checkpoint now (waits for the database queue); see `checkpointOnQueue`.
    public func checkpoint(_ mode: CheckpointMode) throws {
        try onQueue { try checkpointOnQueue(mode) }
    }

    /// Runs a checkpoint without ever letting a committed frame escape the shadow WAL.
    ///
    /// The read guard is never dropped for longer than it takes to re-begin it:
    /// 1. copy every committed frame, then move the guard to the newest snapshot;
    /// 2. checkpoint on the writer connection (PASSIVE, or FULL for `.truncate`/`.restart`/`.full`, which waits for
    ///    the application's readers and writers); the guard's mark is the WAL end, so it does not hold anything back;
    /// 3. if the WAL is now fully in the database, move the guard again: it now reads the database file only
    ///    (SQLite's read slot 0), which stops every checkpoint from copying frames we have not seen, but lets a
    ///    writer restart the WAL; copy what was committed meanwhile, then make that restart ourselves with a
    ///    one-row write; for `.truncate` SQLite also shrinks the file (`journal_size_limit`) as part of that write;
    /// 4. run the continuity check, which follows the restart into the next index.
    /// A frame committed between 3's copy and our write keeps the WAL from restarting (it is not checkpointed),
    /// so the restart and the truncation can only ever discard frames we already hold.
    func checkpointOnQueue(_ mode: CheckpointMode) throws {
        guard let writer = writeConnection else { return }
        try measuredCheckpoint(mode) { try checkpointOpenDatabase(mode, writer: writer) }
    }

    /// The body of `checkpointOnQueue` for an open database.
    private func checkpointOpenDatabase(_ mode: CheckpointMode, writer: SQLiteConnection) throws {
        try copyFrames()
        try refreshReadLock()
        let sqliteMode: CheckpointMode = mode == .passive ? .passive : .full
        let result: CheckpointResult
        do {
            if sqliteMode == .passive {
                result = try writer.checkpoint(.passive)
            } else {
                result = try fullCheckpoint(writer)
            }
        } catch {
            throw (error as? ReplicationError)?.wrapped("checkpoint: mode=\(mode)") ?? error
        }
        logger.info("checkpoint(\(mode)): [\(result.busy ? 1 : 0),\(result.logFrames),\(result.checkpointedFrames)]")
        if !result.busy && result.logFrames >= 0 && result.logFrames == result.checkpointedFrames {
            try refreshReadLock()
            try copyFrames()
            do {
                if mode == .truncate { try writer.exec("PRAGMA journal_size_limit = 0;") }
                defer { if mode == .truncate { try? writer.exec("PRAGMA journal_size_limit = -1;") } }
                try writer.exec(Self.upsertSeq)
            } catch {
                logger.warning("checkpoint: post-checkpoint write failed: \(error.oneLine)")
            }
        }
        try verifyAndCopy()
    }

    /// SQLite's FULL checkpoint, with our read guard kept out of its way.
    ///
    /// FULL takes the writer lock, then waits until every reader is on the newest snapshot. The guard was moved
    /// to the newest snapshot just before, but an application commit in between leaves it one behind, and FULL
    /// would wait on it for the whole busy timeout while the application's writers are blocked (about a second
    /// at sustained write rates). So while it waits, the guard is moved forward again and what was committed is
    /// copied, in the same order as every sync (hand-over without a gap, then the copy), which keeps the
    /// guard's proof that no WAL restart can lose a frame.
    private func fullCheckpoint(_ writer: SQLiteConnection) throws -> CheckpointResult {
        let deadline = ContinuousClock.now + .milliseconds(Int64(options.busyTimeoutMilliseconds))
        var guardError: (any Error)?
        let result = try writer.checkpoint(.full) { attempt in
            if attempt % 4 == 0 && guardError == nil {
                do {
                    try refreshReadLock()
                    try copyFrames()
                } catch {
                    guardError = error
                }
            }
            guard ContinuousClock.now < deadline else { return false }
            usleep(attempt < 20 ? 100 : 1000)
            return true
        }
        if let e = guardError { throw e }
        return result
    }
}
