#if canImport(Glibc)
import Glibc
#endif
import Foundation

extension Database {
    /// One sync (REPLICATION §6.4): verify continuity, copy committed frames, follow restarts, checkpoint, clean.
    ///
    /// A failure resets the cursor so the next attempt re-derives it from disk.
    func syncOnQueue() throws {
        guard !closed else { return }
        // A database that cannot be opened counts as a failed sync too (upstream counted only syncs of an open
        // one, so a wedged database showed no error at all); one that does not exist yet is not a sync.
        guard readGuard != nil || FileSystem.exists(path) else { return }
        defer { realWAL.endSync(); noteActivity() }
        try measuredSync {
            try openIfNeeded()
            guard readGuard != nil else { return }
            try syncOpenDatabase()
        }
    }

    /// The body of `syncOnQueue` for an open database.
    private func syncOpenDatabase() throws {
        if let change = try fileReplacement() {
            // Frames of one file must never be replayed onto the pages of another: let go of the old file (our
            // connections would keep its WAL alive) and start over from a snapshot of the new one.
            logger.warning("database file replaced (\(change)); reopening \(path) and starting a new generation from a snapshot of the new file")
            closeHandles()
            try openIfNeeded()
            guard readGuard != nil else { return }
            do {
                try ensureWALExists()
                try newGeneration(reason: "database file replaced")
            } catch {
                cursor = nil
                shadowLog.publish(nil, notify: false)
                throw error
            }
            return
        }
        do {
            // Move the read guard to the newest snapshot before copying, on every sync: its mark then trails the
            // WAL by one sync at most, so the application's own checkpoints (even TRUNCATE, which waits for
            // every reader) go through within milliseconds instead of timing out on us. The hand-over has no gap,
            // and the copy below covers everything up to the new mark, so the guard keeps proving that no WAL
            // restart can lose a frame. A lost guard is taken again here, and the continuity check then proves
            // nothing was lost meanwhile, or starts a new generation.
            try readGuard?.takeOrHandOver()
            if cursor == nil, try shadow.currentGeneration() != nil { try recoverCursor(checkHeader: false) }
            try ensureWALExists()
            try verifyAndCopy()
            try checkpointIfNeeded()
            try clean()
        } catch {
            cursor = nil
            shadowLog.publish(nil, notify: false)
            throw error
        }
    }

    /// When the path now names another file than the one open (the app renamed a new database over it), a
    /// description of the change (`inode A -> B`); nil when it is the same file or the path is gone for now.
    func fileReplacement() throws -> String? {
        guard let fd = databaseFD else { return nil }
        var open = stat(), current = stat()
        guard fstat(fd.raw, &open) == 0 else { return nil }
        guard try Syscall.statOrNil(path, &current) else { return nil }
        guard open.st_dev != current.st_dev || open.st_ino != current.st_ino else { return nil }
        return "inode \(open.st_ino) -> \(current.st_ino)"
    }

    /// Makes SQLite write a WAL header and a frame when the `-wal` file is missing or empty.
    func ensureWALExists() throws {
        let size = try FileSystem.info(meta.walPath)?.size ?? 0
        if size >= UInt64(walHeaderSize) || readGuard == nil { return }
        try writer().exec(Self.upsertSeq)
    }

    /// Checks the cursor against the real WAL, then copies new frames or starts a new generation.
    func verifyAndCopy() throws {
        let observation = try realWAL.read { fd, size -> ContinuityCheck.Observation in
            let header = try fd.pread(count: walHeaderSize, at: 0)
            var frame: WALFrameFingerprint?
            if let c = cursor, c.position.offset > UInt64(walHeaderSize), c.position.offset <= size {
                let fs = c.header.frameSize
                frame = WALFrameFingerprint(try fd.pread(count: fs, at: c.position.offset - UInt64(fs)))
            }
            return ContinuityCheck.Observation(walSize: size, headerBytes: header, frameBeforeCursor: frame)
        } ?? ContinuityCheck.Observation(walSize: 0, headerBytes: [], frameBeforeCursor: nil)

        let proven = readGuard?.provesRestart(of: cursor?.header) ?? false
        if let c = cursor, observation.headerBytes != c.header.bytes || observation.walSize < c.position.offset {
            logger.debug("wal changed under cursor \(c.position): size=\(observation.walSize) proven=\(proven) oldSalt=\(c.header.salt1) newHdr=\((try? WALHeader(bytes: observation.headerBytes)).map { "\($0.salt1)/\($0.checkpointSequence)" } ?? "bad") oldSeq=\(c.header.checkpointSequence) proofSet=\(readGuard?.restartProof != nil) inTx=\(readGuard?.isHeld ?? false)")
        }
        switch ContinuityCheck.judge(cursor: cursor, observation: observation, restartProven: proven) {
        case .continueIndex:
            try copyFrames()
        case .continueAfterRestart:
            // Frames of the old lifetime after our position are still intact (the check above proved it).
            try copyFrames()
            guard let c = cursor else { return }
            try startIndex(generation: c.position.generation, index: c.position.index + 1)
        case .newGeneration(let reason):
            try newGeneration(reason: reason)
        }
    }

    /// Creates a generation and starts its index 0 from the real WAL (REPLICATION §6.9).
    func newGeneration(reason: String) throws {
        let g = Generation.random()
        logger.info("sync: new generation \"\(g.name)\", \(reason)")
        do {
            try startIndex(generation: g, index: 0)
            try shadow.setCurrentGeneration(g)
        } catch {
            throw (error as? ReplicationError)?.wrapped("create generation") ?? error
        }
        try clean()
    }

    /// Starts shadow index `index` from the real WAL's current header, then copies its committed frames (§6.7).
    func startIndex(generation g: Generation, index: UInt32) throws {
        guard let headerBytes = try realWAL.read({ fd, _ in try fd.pread(count: walHeaderSize, at: 0) }) else {
            throw ReplicationError(.io, "cannot init shadow wal: \(meta.walPath) does not exist")
        }
        let header: WALHeader
        do { header = try WALHeader(bytes: headerBytes) } catch {
            throw (error as? ReplicationError)?.wrapped("cannot init shadow wal: \(meta.walPath)") ?? error
        }
        readGuard?.forgetProof()
        cursor = ShadowCursor(position: WALPosition(generation: g, index: index, offset: UInt64(walHeaderSize)),
                              header: header, checksum: header.checksumState, lastFrame: nil, headerPending: true)
        do {
            try copyFrames()
        } catch {
            // Keep the index's start on disk, as if no frame had been committed yet, so a cursor re-derived from
            // the shadow WAL continues this index instead of judging the restart unproven.
            try? writeHeaderSegment()
            throw error
        }
        // No committed frame after the restart yet: the index starts with its header alone.
        try writeHeaderSegment()
    }

    /// Writes the pending header of the current index as its segment at offset 0 (nothing when none is pending).
    private func writeHeaderSegment() throws {
        guard var c = cursor, c.headerPending else { return }
        let g = c.position.generation
        let seg = try shadow.writeSegment(g, index: c.position.index, offset: 0, keepCopy: true) { write in
            try c.header.bytes.withUnsafeBytes { try write($0) }
        }
        shadowLog.append(seg, generation: g)
        metrics.addShadowBytes(UInt64(c.header.bytes.count))
        c.headerPending = false
        cursor = c
        try positionFile.write(WALPosition(generation: g, index: c.position.index, offset: 0))
        publish()
    }

    /// Copies committed frames after the cursor into a new shadow segment (REPLICATION §6.6).
    ///
    /// One pass through one bounded buffer (`CommittedFrameReader`): each buffer-full of new frames is verified
    /// against the checksum chain, and the transactions it completes go into the segment at once, so memory does
    /// not grow with the batch and an uncommitted tail is never copied. No segment is written when nothing new is
    /// committed. A transaction longer than the buffer is copied in two passes from its start: the first finds the
    /// end of the last commit, the second reads those bytes again and re-verifies them while writing them.
    func copyFrames() throws {
        guard var c = cursor else { return }
        let scanner = WALScanner(header: c.header)
        let start = c.position.offset
        let fs = c.header.frameSize
        let buffer = realWAL.scanBuffer(frameSize: fs)
        // The first read is sized by the last batch, not by the file: a restarted WAL keeps its old length, and
        // the stale frames after the new ones would all be read.
        let guess = Int(min(realWAL.lastCopyBytes, UInt64(buffer.count))) + 16 * fs
        let g = c.position.generation
        // The first frames of an index carry its header: one segment at offset 0.
        let segmentStart = c.headerPending ? 0 : start
        let copied: (scan: WALScanResult, segment: ShadowSegment)?
        do {
            copied = try realWAL.read { fd, _ -> (scan: WALScanResult, segment: ShadowSegment)? in
                let pread: (UnsafeMutableRawBufferPointer, UInt64) throws -> Int = { buf, off in try fd.pread(into: buf, at: off) }
                var reader = CommittedFrameReader(scanner: scanner, from: start, checksum: c.checksum, buffer: buffer,
                                                  firstRead: guess, read: pread)
                let first = try reader.next()
                // A first transaction longer than the buffer: find its end before creating the segment.
                var long: WALScanResult?
                if first == nil {
                    guard reader.overflow else { return nil }
                    long = try scanner.findCommittedEnd(from: start, checksum: c.checksum, buffer: buffer, read: pread)
                    guard long!.committedEnd > start else { return nil }
                }
                // The replicas and stream clients read the segment from memory (see `ShadowLog.append`).
                let seg = try shadow.writeSegment(g, index: c.position.index, offset: segmentStart, keepCopy: true) { write in
                    if c.headerPending { try c.header.bytes.withUnsafeBytes { try write($0) } }
                    var chunk = first
                    while let bytes = chunk {
                        try write(bytes)
                        chunk = try reader.next()
                    }
                    guard reader.overflow else { return }
                    let from = reader.result.committedEnd
                    let tail = try long ?? scanner.findCommittedEnd(from: from, checksum: reader.result.checksum,
                                                                    buffer: buffer, read: pread)
                    long = tail
                    guard tail.committedEnd > from else { return }
                    var running = reader.result.checksum
                    var off = from
                    while off < tail.committedEnd {
                        let want = min(UInt64(buffer.count / fs * fs), tail.committedEnd - off)
                        let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(want)])
                        let (frames, _) = try fd.pread(into: piece, at: off) == Int(want)
                            ? scanner.verifyFrames(UnsafeRawBufferPointer(piece), checksum: &running) : (0, false)
                        guard frames * fs == Int(want) else { throw Self.changedWhileCopying(meta.walPath) }
                        try write(UnsafeRawBufferPointer(piece))
                        off += want
                    }
                    guard running == tail.checksum else { throw Self.changedWhileCopying(meta.walPath) }
                }
                var scan = reader.result
                if let t = long, t.committedEnd > scan.committedEnd {
                    scan.committedFrames += t.committedFrames
                    (scan.committedEnd, scan.checksum, scan.lastCommitFrame) = (t.committedEnd, t.checksum, t.lastCommitFrame)
                }
                return (scan, seg)
            } ?? nil
        } catch {
            throw (error as? ReplicationError)?.wrapped("cannot copy to shadow wal") ?? error
        }
        guard let (scan, seg) = copied else {
            realWAL.lastCopyBytes = 0
            markCopiedUnderGuard()
            return
        }
        let end = scan.committedEnd
        realWAL.lastCopyBytes = end - start
        shadowLog.append(seg, generation: g)
        metrics.addShadowBytes(end - segmentStart)
        try positionFile.write(WALPosition(generation: g, index: c.position.index, offset: segmentStart))
        c.headerPending = false
        c.position.offset = end
        c.checksum = scan.checksum
        c.lastFrame = scan.lastCommitFrame.map(WALFrameFingerprint.init)
        cursor = c
        markCopiedUnderGuard()
        publish()
    }

    static func changedWhileCopying(_ path: String) -> ReplicationError {
        ReplicationError(.io, "cannot copy to shadow wal: \(path) changed while copying")
    }

    /// Records that the current lifetime is copied to its committed end while the read guard is held.
    private func markCopiedUnderGuard() {
        if let c = cursor { readGuard?.markCopied(c.header) }
    }

    /// Publishes the cursor position and wakes the replicas.
    func publish() {
        shadowLog.publish(cursor?.position)
    }

    /// Removes other generations and shadow indexes no replica needs any more (REPLICATION §6.10).
    ///
    /// Skipped when nothing it depends on changed since the last run (it lists directories, and syncs are frequent).
    func clean() throws {
        let key = CleanKey(generation: cursor?.position.generation, index: cursor?.position.index,
                           replicaIndexes: shadowLog.heldIndexes.sorted { ($0 ?? 0) < ($1 ?? 0) })
        if key == lastClean { return }
        // Every outcome below depends only on the key (and on the disk, which only we change), so the early
        // returns are remembered too; a failure forgets it so the next sync retries.
        lastClean = key
        do { try cleanShadow() } catch {
            lastClean = nil
            throw error
        }
    }

    private func cleanShadow() throws {
        let current = try shadow.currentGeneration()
        for name in try shadow.removeGenerations(except: current) {
            logger.debug("removed old shadow generation \(name)")
        }
        guard let g = current, let c = cursor, c.position.generation == g else { return }
        let minRetention = Int64(c.position.index) - Int64(options.shadowRetentionCount)
        let needs = shadowLog.heldIndexes
        var limit = minRetention
        if !needs.isEmpty {
            // A replica whose position is unknown (nil) still needs everything.
            let known = needs.compactMap { $0 }
            guard known.count == needs.count, let minReplica = known.min(), minReplica > 0 else { return }
            limit = min(limit, Int64(minReplica))
        }
        guard limit > 0 else { return }
        for index in try shadow.indexes(g) where Int64(index) < limit {
            try shadow.removeIndex(g, index)
            logger.debug("remove shadow index: \(g.name)/\(Hex.format(index, width: 16))")
        }
    }
}
