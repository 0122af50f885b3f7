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
        let restart = CheckpointPolicy.restartsWAL(after: mode, offset: c.position.offset, pageSize: pageSize,
                                                   options: options)
        try checkpointOnQueue(mode, restart: restart)
    }

    /// Starts the shutdown's checkpoint of the database file on the database's lane and returns at once, so it
    /// runs while the replicas upload their final sync; `close()` then waits for it.
    ///
    /// Upstream's last close checkpoints the WAL into the database file, and so does ours (`ReadGuard.close`): the
    /// file is complete after exit. Done here, that work overlaps the uploads instead of following them, and the
    /// close finds nothing left to copy. PASSIVE without a WAL restart: it writes nothing to the WAL, so the
    /// shadow WAL (and what the replicas upload) is unchanged, and a snapshot's read transaction still keeps
    /// newer pages out of the file. Its failure is only logged: the close checkpoints again.
    public func checkpointBeforeClose() {
        queue.async { [self] in
            guard !closed, readGuard != nil, activeSnapshots == 0 else { return }
            do { try checkpointOnQueue(.passive, restart: false) } catch {
                logger.debug("shutdown checkpoint skipped: \(error.oneLine)")
            }
        }
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
    /// 3. if that checkpoint completed and `restart` (the policy's `CheckpointPolicy.restartsWAL` for automatic
    ///    checkpoints), restart the WAL (`restartWAL`);
    /// 4. run the continuity check, which follows the restart into the next index.
    func checkpointOnQueue(_ mode: CheckpointMode, restart: Bool = true) throws {
        guard readGuard != nil else { return }
        defer { realWAL.endSync(); noteActivity() }
        try measuredCheckpoint(mode) {
            let writer: SQLiteConnection
            do { writer = try self.writer() } catch {
                throw (error as? ReplicationError)?.wrapped("checkpoint: mode=\(mode)") ?? error
            }
            try checkpointOpenDatabase(mode, writer: writer, restart: restart)
        }
    }

    /// The body of `checkpointOnQueue` for an open database.
    private func checkpointOpenDatabase(_ mode: CheckpointMode, writer: SQLiteConnection, restart: Bool) throws {
        try copyFrames()
        try readGuard?.takeOrHandOver()
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
        if restart && !result.busy && result.logFrames >= 0 && result.logFrames == result.checkpointedFrames {
            do {
                try restartWAL(writer: writer, truncate: mode == .truncate)
            } catch let e as ReplicationError where e.code == .busy {
                // The application held a lock throughout; the next checkpoint tries again.
                logger.debug("checkpoint: wal restart skipped: \(e.oneLine)")
            }
        }
        try verifyAndCopy()
    }

    /// Makes the WAL start over from its beginning once everything in it is in the database file.
    ///
    /// SQLite restarts the WAL at the next write when it is fully checkpointed and no reader uses it. Our guard
    /// uses it almost always (it sits on the newest snapshot), and under a steady stream of commits the WAL is
    /// never fully checkpointed at the moment the guard moves, so without this the WAL grew until the forced
    /// blocking checkpoint at `max-checkpoint-page-count`. So the application's writers are held off for the
    /// length of a small copy (an empty write transaction on our writer):
    /// 1. copy what was committed since the checkpoint, with the guard moved to the end first, as in every sync;
    /// 2. checkpoint those few frames from the idle spare connection; the WAL is now fully in the database;
    /// 3. move the guard again: on a fully checkpointed WAL it reads the database file only (SQLite's read slot
    ///    0), which stops any checkpoint from copying frames we have not seen, and no longer keeps the WAL from
    ///    restarting;
    /// 4. end the empty transaction and make the restart with a one-row write (or the application's next write
    ///    makes it, whichever takes the lock first); for `truncate`, SQLite also shrinks the file
    ///    (`journal_size_limit`) as part of that write.
    /// A frame committed after 4's lock is released keeps the WAL from restarting (it is not checkpointed), so a
    /// restart can only ever discard frames we already hold.
    private func restartWAL(writer: SQLiteConnection, truncate: Bool) throws {
        try writer.exec("BEGIN IMMEDIATE;")
        var locked = true
        defer { if locked { try? writer.exec("ROLLBACK;") } }
        try readGuard?.takeOrHandOver()
        try copyFrames()
        guard let spare = try readGuard?.idleSpare() else { return }
        let rest = try spare.checkpoint(.passive)
        // An application reader on an older snapshot keeps the rest in the WAL; the next checkpoint tries again.
        guard !rest.busy, rest.logFrames >= 0, rest.logFrames == rest.checkpointedFrames else { return }
        try readGuard?.takeOrHandOver()
        try writer.exec("ROLLBACK;")
        locked = false
        do {
            if truncate { try writer.exec("PRAGMA journal_size_limit = 0;") }
            defer { if truncate { try? writer.exec("PRAGMA journal_size_limit = -1;") } }
            try writer.exec(Self.upsertSeq)
        } catch {
            logger.warning("checkpoint: post-checkpoint write failed: \(error.oneLine)")
        }
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
                    try readGuard?.takeOrHandOver()
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
