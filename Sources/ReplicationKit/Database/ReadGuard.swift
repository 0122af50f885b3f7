import Foundation

/// The read guard: a long-lived read transaction on the database that keeps SQLite from discarding WAL frames we
/// have not copied into the shadow WAL yet (REPLICATION §6.1, §6.4).
///
/// SQLite restarts (or truncates) the WAL only when no reader uses it, and checkpoints a frame into the database
/// file only when no reader's snapshot predates it. A read transaction therefore pins the WAL:
///
/// - held on a read mark > 0 (it reads frames of the WAL), no connection can restart the WAL, so every frame
///   after our copy position stays where we will read it;
/// - held on read mark 0 (taken when the WAL was fully checkpointed, it reads the database file only), no frame
///   can be checkpointed, so the WAL can only restart while nothing has been committed since the guard began.
///
/// **Invariant** (`restartProof`): while the guard has been held without a gap since the header `H` of a WAL
/// lifetime was copied to its committed end, a later restart of that lifetime cannot have lost a frame we did not
/// copy; so a changed WAL header is followed into the next shadow index instead of starting a new generation.
/// The proof is recorded by `markCopied(_:)` (only while held), kept across `handOver()` (the spare connection
/// begins before the old one ends, so the hold has no gap), and forgotten by `take()` after a release, by
/// `release()`, by `forgetProof()` (a new index starts) and by `close()`.
///
/// The spare connection exists only from a hand-over until the database idles (`releaseIdle()`): an idle database
/// costs one SQLite connection, not two. Opening it is the hand-over's first step, before the holder ends
/// anything, so a failed open leaves the hold (and the proof) as it was.
///
/// Not thread-safe: used on the database's serial queue only.
final class ReadGuard {
    /// The connection that holds the guard (its read transaction is the pin).
    private(set) var holder: SQLiteConnection
    /// The other connection: begins before `holder` ends in a hand-over; idle otherwise (checkpoints run on it).
    /// Opened by the first hand-over (or checkpoint) that needs it and closed by `releaseIdle()`.
    private(set) var spare: SQLiteConnection?
    /// Header of the WAL lifetime copied in full while the guard has been held ever since (see the invariant).
    private(set) var restartProof: WALHeader?
    private let path: String
    private let busyTimeout: Int32
    private var closed = false
    /// Test seam: runs in the middle of a hand-over, after its first step (the spare's begin) and before its second.
    var midHandOver: (() -> Void)?

    /// Opens the holder connection of the guard on the database at `path` (nothing is held yet; the spare
    /// connection is opened when first needed).
    init(path: String, busyTimeout: Int32) throws {
        self.path = path
        self.busyTimeout = busyTimeout
        holder = try Database.openOwnConnection(path: path, busyTimeout: busyTimeout)
    }

    /// Connections open now (1 while idle, 2 after a hand-over until `releaseIdle()`, 0 after `close()`).
    var openConnections: Int { closed ? 0 : (spare == nil ? 1 : 2) }

    /// Whether the read transaction is open.
    var isHeld: Bool { !closed && holder.inTransaction }

    /// Begins the read transaction if it is not held; a gap in the hold forgets the proof.
    func take() throws {
        guard !closed else { throw ReplicationError(.invalidInput, "read guard on \(path) used after close") }
        if holder.inTransaction { return }
        restartProof = nil
        try Self.beginRead(holder)
    }

    /// Takes the guard if it is not held, or moves it to the newest snapshot without a gap: the spare connection
    /// begins its read transaction before the holder ends its own, then the two swap roles. The proof is kept.
    func takeOrHandOver() throws {
        if isHeld { try handOver() } else { try take() }
    }

    /// Moves the guard to the newest snapshot without a gap (see `takeOrHandOver`); nothing happens if not held.
    func handOver() throws {
        guard isHeld else { return }
        let next: SQLiteConnection
        do {
            next = try spareConnection()
            // A spare still in a transaction is left over from a hand-over that failed half-way; `holder` still holds.
            if next.inTransaction { try? next.exec("ROLLBACK;") }
            try Self.beginRead(next)
            midHandOver?()
            try holder.exec("ROLLBACK;")
        } catch {
            throw (error as? ReplicationError)?.wrapped("read guard on \(path): hand-over") ?? error
        }
        spare = holder
        holder = next
    }

    /// The spare connection, opened if it is not.
    private func spareConnection() throws -> SQLiteConnection {
        if let s = spare { return s }
        let s = try Database.openOwnConnection(path: path, busyTimeout: busyTimeout)
        spare = s
        return s
    }

    /// Lets an idle database's guard shrink to its minimum: closes the spare (it never holds the pin outside a
    /// hand-over, and never checkpoints on close) and frees the holder's cached pages. The hold is untouched.
    func releaseIdle() {
        guard !closed else { return }
        if let s = spare, !s.inTransaction {
            s.close()
            spare = nil
        }
        holder.releaseMemory()
    }

    /// Ends the read transaction; the proof is forgotten with the hold.
    func release() throws {
        restartProof = nil
        guard isHeld else { return }
        try holder.exec("ROLLBACK;")
    }

    /// Records that the lifetime with `header` is copied to its committed end; ignored unless the guard is held.
    func markCopied(_ header: WALHeader) {
        if isHeld { restartProof = header }
    }

    /// Forgets the proof (a new shadow index starts from another header).
    func forgetProof() { restartProof = nil }

    /// Whether a restart of the lifetime with `header` provably lost no frame we did not copy.
    func provesRestart(of header: WALHeader?) -> Bool {
        restartProof != nil && restartProof == header
    }

    /// The spare connection (opened if needed) when it is not in a transaction, for a checkpoint that must not
    /// use the holder.
    func idleSpare() throws -> SQLiteConnection? {
        guard !closed else { return nil }
        let s = try spareConnection()
        return s.inTransaction ? nil : s
    }

    /// Ends both transactions and closes both connections; safe to call twice.
    ///
    /// None of our connections checkpoints when it closes, except the holder at `shutdown` (SQLite's default, and
    /// only when it is the last connection to the database anywhere, so never while the application runs).
    func close(shutdown: Bool = false) {
        restartProof = nil
        guard !closed else { return }
        closed = true
        try? holder.exec("ROLLBACK")
        try? spare?.exec("ROLLBACK")
        spare?.close()
        spare = nil
        if shutdown { try? holder.setCheckpointOnClose(true) }
        holder.close()
    }

    /// A read transaction only starts at the first read: `BEGIN` plus one query pins the snapshot.
    private static func beginRead(_ c: SQLiteConnection) throws {
        try c.exec("BEGIN;")
        do {
            _ = try c.queryInt("SELECT COUNT(1) FROM _litestream_seq;")
        } catch {
            try? c.exec("ROLLBACK;")
            throw error
        }
    }
}
