/// Tuning of one tracked database (the per-database config keys, INTERFACES §2.5).
public struct DatabaseOptions: Sendable {
    /// Wait after a change notification before syncing, to batch transactions.
    public var monitorDelayInterval: Duration = .milliseconds(10)
    /// Longest wait under sustained writes: while every sync finds new frames the wait doubles up to this,
    /// and falls back to `monitorDelayInterval` after a sync that found nothing. Nothing is at risk meanwhile
    /// (the read guard keeps every frame in the WAL until it is copied); it only saves work. Set it equal to
    /// `monitorDelayInterval` for a fixed delay.
    ///
    /// One second, upstream 0.3.13's monitor interval: at 1,000 transactions a second, 250 ms cost about a third
    /// more CPU per transaction (four shadow segments, fsyncs and checkpoints per replica upload instead of one;
    /// bench/RESULTS.md, session 9). A replica uploads once per `sync-interval` (1 s) anyway, and a live follower
    /// attached turns batching off (`Database.adaptDelay`).
    public var maxMonitorDelayInterval: Duration = .seconds(1)
    /// Checkpoint when the database file has not changed for this long and the WAL holds more than one frame; 0 disables.
    public var checkpointInterval: Duration = .seconds(60)
    /// WAL size in pages at which a PASSIVE checkpoint is attempted (must be > 0).
    public var minCheckpointPageCount: Int = 1000
    /// WAL size in pages at which a blocking checkpoint is forced; 0 disables.
    public var maxCheckpointPageCount: Int = 10000
    /// Number of most recent shadow WAL indexes kept locally.
    public var shadowRetentionCount: Int = 32
    /// SQLite busy timeout of our connections, in milliseconds.
    public var busyTimeoutMilliseconds: Int32 = 1000
    /// After this long without a sync, checkpoint or snapshot, the writer connection and the read guard's spare are
    /// closed (reopened by the next that needs them): an idle database keeps one SQLite connection. 0 keeps them.
    /// Two seconds is eight times the longest batching delay and twice the replicas' sync interval, so a database
    /// written to steadily keeps them; reopening costs about half a millisecond once per idle period.
    public var idleConnectionDelay: Duration = .seconds(2)

    /// Default options.
    public init() {}
}

/// The decision taken after each sync about checkpointing (REPLICATION §6.8).
public enum CheckpointPolicy {
    /// Chooses a checkpoint mode, or nil for none.
    ///
    /// - Parameters:
    ///   - offset: shadow offset in the current index (bytes of WAL copied in this index).
    ///   - pageSize: database page size.
    ///   - databaseAge: time since the database file was last modified.
    public static func decide(offset: UInt64, pageSize: Int, databaseAge: Duration,
                              options: DatabaseOptions) -> CheckpointMode? {
        decide(offset: offset, pageSize: pageSize, options: options) { databaseAge }
    }

    /// The same, asking for the database's age only when the decision depends on it (it costs a `stat`, and the
    /// policy runs after every sync).
    public static func decide(offset: UInt64, pageSize: Int, options: DatabaseOptions,
                              databaseAge: () throws -> Duration) rethrows -> CheckpointMode? {
        func walSize(_ pages: Int) -> UInt64 { walBytes(pages: pages, pageSize: pageSize) }
        // Past the maximum: a blocking checkpoint that also shrinks the WAL file (see Database.checkpoint).
        if options.maxCheckpointPageCount > 0 && offset >= walSize(options.maxCheckpointPageCount) { return .truncate }
        if offset >= walSize(options.minCheckpointPageCount) { return .passive }
        if options.checkpointInterval > .zero && offset > walSize(1), try databaseAge() > options.checkpointInterval {
            return .passive
        }
        return nil
    }

    /// Size of a WAL holding `pages` frames.
    static func walBytes(pages: Int, pageSize: Int) -> UInt64 {
        UInt64(walHeaderSize) + UInt64(pages) * UInt64(walFrameHeaderSize + pageSize)
    }

    /// Times `min-checkpoint-page-count` after which a completed PASSIVE checkpoint also restarts the WAL.
    public static let restartFactor = 8

    /// Whether a completed checkpoint of `mode` at shadow offset `offset` should restart the WAL (`restartWAL`).
    ///
    /// Always after a forced checkpoint, and after the time-based one of an idle database (below the minimum: a
    /// restart then costs one replica object per idle period). After the size-based PASSIVE checkpoint only once
    /// the WAL holds `restartFactor` times the minimum (32 MB at 4 KiB pages by default, still below the forced
    /// checkpoint's 40 MB): a restart ends the WAL index, and the replica's next sync then uploads two objects (the
    /// old index's tail and the new one's start). Restarting at every minimum (about once a second at 1,000
    /// transactions a second) made 40 replica objects per 20,000 transactions against upstream's 25, four times
    /// the minimum 26 (five restarts where upstream made three); upstream restarts at the forced checkpoint (its
    /// guard keeps SQLite from restarting until then).
    public static func restartsWAL(after mode: CheckpointMode, offset: UInt64, pageSize: Int,
                                   options: DatabaseOptions) -> Bool {
        guard mode == .passive else { return true }
        func walSize(_ pages: Int) -> UInt64 { walBytes(pages: pages, pageSize: pageSize) }
        let minimum = options.minCheckpointPageCount
        return offset < walSize(minimum) || offset >= walSize(minimum * restartFactor)
    }
}

/// Why the current generation cannot continue (REPLICATION §5.5–§5.6), or nil when it can.
public enum ContinuityCheck {
    /// What a sync observed about the real WAL.
    public struct Observation: Sendable {
        /// Size of the real `-wal` file.
        public var walSize: UInt64
        /// Its first 32 bytes (may be fewer).
        public var headerBytes: [UInt8]
        /// The fingerprint of the frame-sized block ending at the cursor offset, if the cursor is past the header.
        public var frameBeforeCursor: WALFrameFingerprint?

        /// Creates an observation.
        public init(walSize: UInt64, headerBytes: [UInt8], frameBeforeCursor: WALFrameFingerprint?) {
            self.walSize = walSize
            self.headerBytes = headerBytes
            self.frameBeforeCursor = frameBeforeCursor
        }
    }

    /// The verdict: continue (possibly after a WAL restart) or start a new generation.
    public enum Verdict: Sendable, Equatable {
        case continueIndex
        /// The real WAL restarted exactly once after all our frames: copy the rest of the old index, open index + 1.
        case continueAfterRestart
        case newGeneration(reason: String)
    }

    /// Judges whether `cursor` still describes a prefix of the real WAL.
    ///
    /// - Parameter restartProven: true when the cursor's WAL lifetime was copied to its end while our read guard
    ///   was held, and the guard is still held (see `ReadGuard.restartProof`). Then a restart or truncation of
    ///   the WAL cannot have lost a frame, whatever the new header looks like: with the guard on a read slot > 0 no
    ///   restart is possible, and on slot 0 no frame can be checkpointed, so the only restarts possible are those
    ///   that discard frames we already hold (or none at all).
    public static func judge(cursor: ShadowCursor?, observation o: Observation, restartProven: Bool = false) -> Verdict {
        guard let c = cursor else { return .newGeneration(reason: "no generation exists") }
        if c.position.index >= maxWALIndex { return .newGeneration(reason: "max index exceeded") }
        if restartProven, o.headerBytes != c.header.bytes, (try? WALHeader(bytes: o.headerBytes)) != nil {
            return .continueAfterRestart
        }
        if c.position.offset > o.walSize { return .newGeneration(reason: "wal truncated by another process") }
        var restarted = false
        if o.headerBytes != c.header.bytes {
            guard let h = try? WALHeader(bytes: o.headerBytes) else {
                return .newGeneration(reason: "wal header unreadable")
            }
            // Without the proof above: a restart by a connection that has restarted before rewrites salt-1 as the
            // previous salt-1 plus one; any other value may mean a whole WAL lifetime passed unseen.
            guard h.salt1 == c.header.salt1 &+ 1 else { return .newGeneration(reason: "wal restarted more than once since last sync") }
            // With only a header copied there is no frame to prove the old tail intact (v0.3.13's conservative rule).
            guard c.position.offset > UInt64(walHeaderSize) else { return .newGeneration(reason: "wal header only, mismatched") }
            restarted = true
        }
        if c.position.offset > UInt64(walHeaderSize), let last = c.lastFrame, o.frameBeforeCursor != last {
            return .newGeneration(reason: "wal overwritten by another process")
        }
        return restarted ? .continueAfterRestart : .continueIndex
    }
}
