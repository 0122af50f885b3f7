import Foundation
import Logging

/// Applies `/stream` records to a live read replica's local database without readers ever seeing a partial
/// transaction or data going backwards.
///
/// Records become WAL frames appended after the last committed frame of the local `-wal` file, under SQLite's WAL
/// write lock (`BEGIN IMMEDIATE` on the applier's own connection). Once the frames are written and the position
/// file records them, the wal-index gets their entries and a new header, exactly as SQLite's own writer would do
/// (`ReplicaWALIndex`), so the next reader sees the whole new commit; readers inside a read transaction keep their
/// snapshot, because frames they may use are never rewritten. When the index is not in the expected state (a new
/// `-shm`, one rebuilt or reset by another process), it is marked uninitialised instead and rebuilt from the WAL
/// file. The WAL is emptied only by SQLite's own TRUNCATE
/// checkpoint, which waits for readers.
// @unchecked Sendable: the applier is handed to one dedicated thread and used only from there (one call at a time);
// it holds blocking file and SQLite handles that must never be touched concurrently.
public final class StreamApplier: @unchecked Sendable {
    /// Path of the local database file.
    public let path: String
    private let logger: Logger
    private let meta: MetaDirectory

    /// Committed frames after which an apply tries a TRUNCATE checkpoint (tests lower it).
    ///
    /// SQLite's own auto-checkpoint size: 4 MiB at 4 KiB pages, a checkpoint every few seconds at 100 small
    /// transactions a second. (It was 256 while every apply made readers re-read the whole WAL.)
    var checkpointFrameThreshold = StreamApplier.defaultCheckpointFrameThreshold
    static let defaultCheckpointFrameThreshold = 1000
    /// Busy timeout of the applier's connection, in milliseconds (INTERFACES §3.8).
    static let busyTimeoutMillis = 1000

    private var connection: SQLiteConnection?
    private var wal: ReplicaWAL?
    private var walIndex: ReplicaWALIndex?
    /// Runs the PASSIVE checkpoints off this thread (nil before `prepare`).
    private var checkpointer: FollowerCheckpointer?
    /// The position file, kept open and rewritten in place (its text has a fixed length).
    private var positionFD: FileDescriptor?
    private var pageSize = 0
    private var position: WALPosition?
    /// End of the segments appended but not yet published (a batch, see `applySegment(_:compressed:publish:)`).
    private var pending: WALPosition?
    private var snapshot: StreamSnapshotProgress?
    private var nextCheckpointAt = StreamApplier.defaultCheckpointFrameThreshold
    /// Publishes made by updating the wal-index in place (the rest made the next reader rebuild it; for tests).
    private(set) var indexPublishes = 0
    /// PASSIVE checkpoints completed in the background (for tests).
    var backgroundCheckpoints: Int { checkpointer?.completed.current ?? 0 }
    /// Starts a background checkpoint now unless one is running: the number completed before it, or nil (for tests).
    func requestBackgroundCheckpoint() -> Int? { checkpointer?.request() }
    /// Publishes that marked the wal-index stale for a rebuild (for tests).
    var indexRebuilds: Int { walIndex?.rebuilds ?? 0 }

    /// Creates an applier for the database at `path`; nothing is opened until `prepare(pageSize:)`.
    public init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        meta = MetaDirectory(databasePath: path)
    }

    deinit { close() }

    /// Position stored in the position file (END of the last applied record), nil if none/invalid.
    ///
    /// Before `prepare`, a position written during an earlier boot of the machine counts as none (see `checkBoot`).
    public func storedPosition() -> WALPosition? {
        if connection != nil { return position }
        guard recordedBootID() == Self.bootID() else { return nil }
        return readPositionFile()
    }

    /// Creates the local database if missing (WAL mode, page size `pageSize`), else verifies its page size; opens
    /// the applier's connection, `-wal` and `-shm`, and recovers where the local WAL's committed frames end.
    ///
    /// - Throws: `init replica: page size mismatch: <local> <> <remote>` when an existing database differs.
    public func prepare(pageSize: Int) throws {
        close()
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw ReplicationError(.invalidInput, "init replica: invalid page size \(pageSize)")
        }
        try FileSystem.makeDirectories(meta.root)
        let isNew = (try FileSystem.info(path))?.size ?? 0 == 0
        let conn = try SQLiteConnection(path: path, create: true, busyTimeout: Int32(Self.busyTimeoutMillis))
        do {
            // Before anything opens the WAL: closing our connection must never delete the -wal/-shm readers use.
            try conn.setPersistentWAL()
            if isNew {
                try conn.exec("PRAGMA page_size=\(pageSize)")
                try conn.exec("PRAGMA journal_mode=WAL")
                try conn.exec("CREATE TABLE IF NOT EXISTS _litestream (id INTEGER)")
                _ = try conn.checkpoint(.truncate)
                // A position left over from a deleted database would let segments apply to an empty one.
                try FileSystem.remove(meta.positionFile)
            } else {
                let local = try conn.queryInt("PRAGMA page_size") ?? 0
                guard local == Int64(pageSize) else {
                    throw ReplicationError(.invalidInput, "init replica: page size mismatch: \(local) <> \(pageSize)")
                }
                if try conn.queryText("PRAGMA journal_mode")?.lowercased() != "wal" {
                    try conn.exec("PRAGMA journal_mode=WAL")
                }
            }
            // A read makes SQLite open (and create) the -wal and -shm files.
            _ = try conn.queryInt("SELECT count(*) FROM sqlite_master")
            let wal = try ReplicaWAL(path: meta.walPath, pageSize: pageSize)
            try wal.recover()
            let walIndex = try ReplicaWALIndex(path: path + "-shm")
            self.connection = conn
            self.wal = wal
            self.walIndex = walIndex
            self.checkpointer = FollowerCheckpointer(path: path, logger: logger)
        } catch {
            conn.close()
            throw error
        }
        self.pageSize = pageSize
        position = readPositionFile()
        try checkBoot()
        positionFD = try FileDescriptor.open(meta.positionFile, flags: O_RDWR | O_CREAT, mode: 0o600)
        nextCheckpointAt = checkpointFrameThreshold
        logger.debug("stream applier prepared", metadata: [
            "db": "\(path)", "position": "\(position.map { "\($0)" } ?? "none")",
            "wal_frames": "\(wal?.frameCount ?? 0)",
        ])
    }

    /// Starts a snapshot record: its pages are appended to the WAL as one transaction, visible only once
    /// `finishSnapshot()` succeeds.
    public func beginSnapshot(_ header: StreamRecordHeader) throws {
        guard header.kind == .snapshot else {
            throw ReplicationError(.invalidInput, "beginSnapshot called with a \(header.kind) record")
        }
        let (conn, wal) = try handles()
        try flush()
        abort()
        guard header.size / UInt64(pageSize) <= UInt64(UInt32.max) else {
            throw ReplicationError(.corrupt, "snapshot \(header.position) size \(header.size) is too large")
        }
        try beginWrite(conn, wal)
        snapshot = StreamSnapshotProgress(header: header, pageSize: pageSize)
    }

    /// Feeds the next bytes of the snapshot payload (any chunk size); only one partial page is buffered.
    public func snapshotData(_ bytes: UnsafeRawBufferPointer) throws {
        let (_, wal) = try handles()
        guard var s = snapshot else { throw ReplicationError(.invalidInput, "snapshot data without a snapshot record") }
        guard s.received + UInt64(bytes.count) <= s.header.size else {
            abort()
            throw ReplicationError(.corrupt, "snapshot \(s.header.position) is longer than its \(s.header.size) bytes")
        }
        do {
            let page = wal.pageBuffer
            var at = 0
            while at < bytes.count {
                let n = min(pageSize - s.filled, bytes.count - at)
                UnsafeMutableRawBufferPointer(rebasing: page[s.filled..<(s.filled + n)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]))
                s.filled += n
                at += n
                if s.filled == pageSize {
                    let commit = s.nextPage == s.pageCount ? UInt32(s.pageCount) : 0
                    setFrameHeader(wal, page: UInt32(s.nextPage), commit: commit)
                    try wal.appendFrame()
                    s.nextPage += 1
                    s.filled = 0
                }
            }
            s.received += UInt64(bytes.count)
            snapshot = s
        } catch {
            abort()
            throw error
        }
    }

    /// Completes the snapshot: checks its size, makes its frames durable, records its position and makes it
    /// visible, then tries to checkpoint. On a short or malformed snapshot nothing becomes visible (`.corrupt`).
    public func finishSnapshot() throws {
        let (conn, wal) = try handles()
        guard let s = snapshot else { throw ReplicationError(.invalidInput, "finishSnapshot without a snapshot record") }
        if let reason = s.incompleteReason(pageSize: pageSize) {
            abort()
            throw ReplicationError(.corrupt, reason)
        }
        snapshot = nil
        let end = s.header.position
        do { try publish(end, conn, wal) } catch { abort(); throw error }
        logger.debug("snapshot applied", metadata: ["db": "\(path)", "position": "\(end)", "pages": "\(s.pageCount)"])
        tryCheckpoint(conn, wal)
    }

    /// Applies one WAL segment record whose payload `compressed` is the whole LZ4 frame.
    ///
    /// - Returns: false when the segment was already applied (skipped), true when applied.
    /// - Throws: `.conflict` for another generation or a gap; `.corrupt` for a damaged payload (nothing applied).
    ///
    /// With `publish: false` the segment joins a batch that becomes visible, as one step, at the next `flush()`
    /// (or the next segment applied with `publish: true`): a follower that is behind applies what one network read
    /// brought in one go instead of paying the per-commit costs for each segment. An error discards the whole batch.
    public func applySegment(_ header: StreamRecordHeader, compressed: UnsafeRawBufferPointer,
                             publish publishNow: Bool = true) throws -> Bool {
        guard header.kind == .walSegment else {
            throw ReplicationError(.invalidInput, "applySegment called with a \(header.kind) record")
        }
        let (conn, wal) = try handles()
        if snapshot != nil { abort() }
        switch StreamSegmentDecision.decide(segment: header.position, stored: pending ?? position) {
        case .skip:
            if publishNow { try flush() }
            return false
        case .conflict(let why):
            abort()
            throw ReplicationError(.conflict, why)
        case .apply:
            break
        }
        if pending == nil {
            truncateIfBackfilled(conn, wal)
            try beginWrite(conn, wal)
        }
        do {
            let length = try appendSegmentFrames(header, compressed: compressed, wal: wal)
            pending = WALPosition(generation: header.generation, index: header.index, offset: header.offset + length)
        } catch {
            abort()
            throw error
        }
        if publishNow { try flush() }
        return true
    }

    /// Makes the segments of the current batch visible (nothing to do without one).
    public func flush() throws {
        guard let end = pending else { return }
        let (conn, wal) = try handles()
        pending = nil
        do { try publish(end, conn, wal) } catch {
            abort()
            throw error
        }
        logger.debug("wal segments applied", metadata: ["db": "\(path)", "position": "\(end)"])
        if wal.frameCount >= nextCheckpointAt {
            if wal.frameCount >= checkpointFrameThreshold * 4 {
                // The background checkpoints do not catch up (readers keep them from finishing): bound the WAL.
                tryCheckpoint(conn, wal)
            } else {
                checkpointer?.request()
                nextCheckpointAt = wal.frameCount + checkpointFrameThreshold / 4
            }
        }
    }

    /// Empties the WAL once a background checkpoint copied all of it: SQLite's TRUNCATE checkpoint then has nothing
    /// to copy or fsync, and only waits briefly for readers. Called before a batch takes the write lock.
    private func truncateIfBackfilled(_ conn: SQLiteConnection, _ wal: ReplicaWAL) {
        guard wal.frameCount >= checkpointFrameThreshold, let walIndex, (try? walIndex.isFullyBackfilled()) == true
        else { return }
        tryCheckpoint(conn, wal, waitMillis: 5)
    }

    /// Discards anything half-written (connection dropped mid-record); the visible database is untouched.
    public func abort() {
        snapshot = nil
        pending = nil
        // Cut the unpublished frames while we still hold the write lock, then release it.
        if let wal, wal.pendingEnd != nil {
            do { try wal.discard() } catch {
                logger.warning("stream applier: cannot discard partial frames", metadata: ["db": "\(path)", "error": "\(error.oneLine)"])
            }
        }
        if let connection, connection.inTransaction { try? connection.exec("ROLLBACK") }
    }

    /// Closes the connection and files; a later `prepare(pageSize:)` reopens them.
    public func close() {
        abort()
        // The checkpointer's connection first, so ours is the last; then ours before the -shm descriptor: closing
        // that descriptor drops this process's POSIX locks on the file.
        checkpointer?.close()
        checkpointer = nil
        connection?.close()
        connection = nil
        try? wal?.close()
        wal = nil
        try? walIndex?.close()
        walIndex = nil
        try? positionFD?.close()
        positionFD = nil
    }

    // MARK: - Steps

    private func handles() throws -> (SQLiteConnection, ReplicaWAL) {
        guard let connection, let wal else {
            throw ReplicationError(.invalidInput, "stream applier for \(path) used before prepare")
        }
        return (connection, wal)
    }

    /// Takes SQLite's WAL write lock (no checkpoint can restart or truncate the WAL, no other writer exists;
    /// readers continue) and starts an append at the end of the last committed frame.
    private func beginWrite(_ conn: SQLiteConnection, _ wal: ReplicaWAL) throws {
        try conn.exec("BEGIN IMMEDIATE")
        do { try wal.begin() } catch {
            try? conn.exec("ROLLBACK")
            throw error
        }
    }

    /// Durable frames, then the position file, then visibility, then release of the write lock.
    private func publish(_ end: WALPosition, _ conn: SQLiteConnection, _ wal: ReplicaWAL) throws {
        let appended = try wal.commit()
        try writePositionFile(end)
        position = end
        // Publish the frames in the wal-index as SQLite's writer would; if the index is not as expected, mark it
        // stale instead, and rebuild it below.
        var rebuild = false
        if appended, let walIndex {
            if let batch = wal.lastCommit, try walIndex.publish(batch) {
                indexPublishes += 1
            } else {
                try walIndex.invalidate()
                rebuild = true
            }
        }
        // Nothing was written through SQLite: the rollback only releases the locks.
        try conn.exec("ROLLBACK")
        // Rebuild a stale wal-index now, on this thread: otherwise the app's next reader pays for the recovery, or,
        // if our next record (a long snapshot download) takes the write lock first, waits for it with SQLITE_BUSY.
        if rebuild { _ = try? conn.queryInt("SELECT count(*) FROM sqlite_master") }
    }

    private func setFrameHeader(_ wal: ReplicaWAL, page: UInt32, commit: UInt32) {
        var h = [UInt8]()
        h.reserveCapacity(8)
        BigEndian.append(page, to: &h)
        BigEndian.append(commit, to: &h)
        h.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: wal.frameBuffer[0..<8]).copyMemory(from: $0) }
    }

    /// Decompresses the segment frame by frame straight into the WAL; returns the decompressed length.
    private func appendSegmentFrames(_ header: StreamRecordHeader, compressed: UnsafeRawBufferPointer,
                                     wal: ReplicaWAL) throws -> UInt64 {
        let pos = header.position
        func corrupt(_ why: String) -> ReplicationError { ReplicationError(.corrupt, "wal segment \(pos): \(why)") }
        var consumed = 0
        do {
            let decoder = try LZ4FrameDecoder { buf in
                let n = min(buf.count, compressed.count - consumed)
                if n > 0 {
                    UnsafeMutableRawBufferPointer(rebasing: buf[0..<n])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: compressed[consumed..<(consumed + n)]))
                    consumed += n
                }
                return n
            }
            var reader = WALFrameReader(pageSize: pageSize)
            do {
                if header.offset == 0 { _ = try reader.readHeader(decoder.read) }
                while try reader.next(into: wal.frameBuffer, decoder.read) != nil { try wal.appendFrame() }
            } catch let e as ReplicationError where e.code == .corrupt {
                throw corrupt(e.message)
            }
            // A segment at offset 0 may hold only the WAL header; any frames must end a transaction.
            guard reader.frames > 0 ? reader.endsWithCommit : header.offset == 0 else {
                throw corrupt(reader.frames == 0 ? "no frames" : "does not end with a commit frame")
            }
            return reader.bytesRead
        } catch let e as LZ4Error {
            throw corrupt(e.message)
        }
    }

    /// Tries to empty the WAL without waiting for readers; SQLITE_BUSY just means "later".
    private func tryCheckpoint(_ conn: SQLiteConnection, _ wal: ReplicaWAL, waitMillis: Int? = nil) {
        do {
            // A TRUNCATE checkpoint waits for the readers of the moment to finish; the wait is short while the WAL
            // is small (the stream must not stall) and grows with the WAL, so an app that reads all the time
            // still lets it shrink: read transactions are short, and new ones read the database file meanwhile.
            let backlog = wal.frameCount / max(checkpointFrameThreshold, 1)
            let wait = waitMillis ?? (backlog < 2 ? 20 : backlog < 8 ? 100 : Self.busyTimeoutMillis)
            conn.setBusyTimeout(Int32(wait))
            defer { conn.setBusyTimeout(Int32(Self.busyTimeoutMillis)) }
            let r = try conn.checkpoint(.truncate)
            logger.trace("replica checkpoint", metadata: ["db": "\(path)", "busy": "\(r.busy)"])
        } catch {
            logger.warning("replica checkpoint failed", metadata: ["db": "\(path)", "error": "\(error.oneLine)"])
        }
        if (try? wal.fileSize()) == 0 {
            wal.didTruncate()
            nextCheckpointAt = checkpointFrameThreshold
        } else {
            // Readers kept the WAL alive; retry after some more frames rather than after every segment.
            nextCheckpointAt = wal.frameCount + checkpointFrameThreshold / 4
        }
    }

    private func readPositionFile() -> WALPosition? {
        guard let bytes = try? FileSystem.readSmallFile(meta.positionFile) else { return nil }
        return WALPosition(parsing: String(decoding: bytes, as: UTF8.self))
    }

    /// Rewrites the position file in place: one `pwrite` of a fixed-length line (`G/I:O`, 16 hex digits each).
    ///
    /// Not fsynced (see `checkBoot`); within one boot a reader of the file never sees a torn line, since the
    /// page cache applies a small write at once, and only this process writes it.
    private func writePositionFile(_ pos: WALPosition) throws {
        let line = Array((pos.description + "\n").utf8)
        guard let fd = positionFD else { throw ReplicationError(.io, "stream applier for \(path) used before prepare") }
        try line.withUnsafeBytes { try fd.pwriteAll($0, at: 0) }
    }

    /// Nothing on the follower is fsynced per record (it would cap a follower at a few hundred records a second on
    /// ordinary disks). Within one boot the page cache keeps the WAL frames and the position file consistent,
    /// whatever happens to the process; after a machine crash either may have lost its tail, so a position
    /// written during an earlier boot is not trusted: the next connection takes a fresh snapshot.
    private func checkBoot() throws {
        let current = Self.bootID()
        let recorded = recordedBootID()
        if recorded == current { return }
        if position != nil, recorded != nil {
            logger.warning("the machine restarted since the stored position was written; a fresh snapshot will be taken",
                           metadata: ["db": "\(path)"])
        }
        if position != nil {
            try FileSystem.remove(meta.positionFile)
            position = nil
        }
        try FileSystem.writeAtomically(meta.root + "/boot-id") { fd in try fd.writeAll(Array((current + "\n").utf8)) }
    }

    /// The boot the stored position was written in (`<db>-litestream/boot-id`), nil when unknown.
    private func recordedBootID() -> String? {
        (try? FileSystem.readSmallFile(meta.root + "/boot-id")).flatMap { $0 }
            .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// This boot's identity (`/proc/sys/kernel/random/boot_id`).
    static func bootID() -> String {
        let bytes = (try? FileSystem.readSmallFile("/proc/sys/kernel/random/boot_id")).flatMap { $0 } ?? []
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
