import Foundation

/// Everything a replica holds for one generation: its snapshots and WAL segments (any layout).
public struct GenerationListing: Sendable, Equatable {
    /// The generation listed.
    public var generation: Generation
    /// Its snapshots, in any order.
    public var snapshots: [SnapshotInfo]
    /// Its WAL segments, in any order.
    public var segments: [WALSegmentInfo]

    /// Creates a listing.
    public init(generation: Generation, snapshots: [SnapshotInfo], segments: [WALSegmentInfo]) {
        self.generation = generation
        self.snapshots = snapshots
        self.segments = segments
    }
}

/// The time span covered by a generation, from backend timestamps.
public struct GenerationBounds: Sendable, Equatable {
    /// CreatedAt of the earliest snapshot.
    public var start: Date
    /// Latest CreatedAt among snapshots and WAL segments ("updated at").
    public var end: Date

    /// Creates bounds.
    public init(start: Date, end: Date) {
        self.start = start
        self.end = end
    }

    /// Whether `date` lies in `[start, end]`.
    public func contains(_ date: Date) -> Bool { start <= date && date <= end }
}

/// The segments of one WAL index to download, concatenate and apply.
public struct PlannedWALIndex: Sendable, Equatable {
    /// The WAL index.
    public var index: UInt32
    /// Its segments in increasing offset order (contiguity is checked while downloading).
    public var segments: [WALSegmentInfo]

    /// Creates a planned index.
    public init(index: UInt32, segments: [WALSegmentInfo]) {
        self.index = index
        self.segments = segments
    }
}

/// What a restore will do: one snapshot, then whole WAL indexes in increasing order.
public struct RestorePlan: Sendable, Equatable {
    /// The generation restored from.
    public var generation: Generation
    /// The snapshot to start from.
    public var snapshot: SnapshotInfo
    /// The last WAL index the restore reaches (inclusive).
    public var targetIndex: UInt32
    /// The WAL indexes `snapshot.index … targetIndex` to apply; empty for a snapshot-only restore.
    public var walIndexes: [PlannedWALIndex]

    /// Creates a plan.
    public init(generation: Generation, snapshot: SnapshotInfo, targetIndex: UInt32, walIndexes: [PlannedWALIndex]) {
        self.generation = generation
        self.snapshot = snapshot
        self.targetIndex = targetIndex
        self.walIndexes = walIndexes
    }

    /// Whether only the snapshot is restored (no WAL to replay).
    public var isSnapshotOnly: Bool { walIndexes.isEmpty }
}

/// Pure selection and planning over replica listings (no I/O); the rules of Litestream v0.4 restore, plus v0.3 point in time.
public enum RestorePlanner {
    /// The message of the error raised when nothing matches; callers compare with it for `-if-replica-exists`.
    public static let noMatchingBackups = "no matching backups found"

    /// Whether `error` means "no backup to restore from" (`no matching backups found`).
    public static func isNoMatchingBackups(_ error: any Error) -> Bool {
        (error as? ReplicationError)?.message == noMatchingBackups
    }

    /// Time bounds of a generation: start = earliest snapshot, end = latest snapshot or segment; throws `no snapshots available`.
    public static func bounds(of listing: GenerationListing) throws -> GenerationBounds {
        guard var start = listing.snapshots.first?.createdAt else {
            throw ReplicationError(.notFound, "no snapshots available")
        }
        var end = start
        for s in listing.snapshots {
            start = min(start, s.createdAt)
            end = max(end, s.createdAt)
        }
        for s in listing.segments { end = max(end, s.createdAt) }
        return GenerationBounds(start: start, end: end)
    }

    /// A generation's "updated at" (its bounds' end), or nil when it has no snapshot and so cannot be restored.
    public static func updatedAt(of listing: GenerationListing) -> Date? {
        (try? bounds(of: listing))?.end
    }

    /// A replica's "updated at": the latest updated-at over its restorable generations; nil when it has none.
    public static func replicaUpdatedAt(_ listings: [GenerationListing]) -> Date? {
        listings.compactMap { updatedAt(of: $0) }.max()
    }

    /// The generation to restore: greatest updated-at (first wins ties), skipping generations without snapshots;
    /// with `timestamp`, only generations whose bounds contain it qualify.
    public static func latestGeneration(_ listings: [GenerationListing], containing timestamp: Date? = nil) -> GenerationListing? {
        var best: (GenerationListing, Date)?
        for l in listings {
            guard let b = try? bounds(of: l) else { continue }
            if let t = timestamp, !b.contains(t) { continue }
            if best == nil || b.end > best!.1 { best = (l, b.end) }
        }
        return best?.0
    }

    /// The replica to restore from: position in `replicas` of the one whose best generation is latest (first wins ties);
    /// replicas without a usable generation are skipped; nil when none qualifies.
    public static func latestReplica(_ replicas: [[GenerationListing]], containing timestamp: Date? = nil) -> Int? {
        var best: (Int, Date)?
        for (i, listings) in replicas.enumerated() {
            guard let g = latestGeneration(listings, containing: timestamp), let end = updatedAt(of: g) else { continue }
            if best == nil || end > best!.1 { best = (i, end) }
        }
        return best?.0
    }

    /// Every restorable (replica, generation) in the order a restore tries them: first each replica's latest
    /// generation, newest data first (the same choice as `latestReplica` + `latestGeneration` makes, so the first
    /// candidate is unchanged), then the older generations, newest first. Ties keep configuration order.
    public static func candidates(_ replicas: [[GenerationListing]], containing timestamp: Date? = nil)
        -> [(replica: Int, listing: GenerationListing)] {
        var latest: [(Int, GenerationListing, Date)] = []
        var older: [(Int, GenerationListing, Date)] = []
        for (i, listings) in replicas.enumerated() {
            let best = latestGeneration(listings, containing: timestamp)
            for l in listings {
                guard let b = try? bounds(of: l) else { continue }
                if let t = timestamp, !b.contains(t) { continue }
                if l.generation == best?.generation { latest.append((i, l, b.end)) } else { older.append((i, l, b.end)) }
            }
        }
        func ordered(_ xs: [(Int, GenerationListing, Date)]) -> [(replica: Int, listing: GenerationListing)] {
            xs.enumerated().sorted { a, b in a.element.2 != b.element.2 ? a.element.2 > b.element.2 : a.offset < b.offset }
                .map { (replica: $0.element.0, listing: $0.element.1) }
        }
        return ordered(latest) + ordered(older)
    }

    /// The last index to restore: `index` when given, else max(highest snapshot index, highest WAL index).
    public static func targetIndex(of listing: GenerationListing, index: UInt32? = nil) throws -> UInt32 {
        guard let maxSnapshot = listing.snapshots.map(\.index).max() else {
            throw ReplicationError(.notFound, "no snapshots available")
        }
        if let index { return index }
        return max(maxSnapshot, listing.segments.map(\.index).max() ?? 0)
    }

    /// The snapshot with the highest index ≤ `index` (the v0.4 layout wins a tie between layouts).
    public static func snapshot(of listing: GenerationListing, atOrBefore index: UInt32) throws -> SnapshotInfo {
        guard !listing.snapshots.isEmpty else { throw ReplicationError(.notFound, "no snapshots available") }
        var best: SnapshotInfo?
        for s in listing.snapshots where s.index <= index {
            if let b = best, (b.index, rank(b.layout)) > (s.index, rank(s.layout)) { continue }
            best = s
        }
        guard let best else {
            throw ReplicationError(.notFound, "no snapshots available at or before index \(Hex.format(index, width: 16))")
        }
        return best
    }

    /// The snapshot with the greatest CreatedAt ≤ `timestamp` (higher index wins a tie).
    public static func snapshot(of listing: GenerationListing, at timestamp: Date) throws -> SnapshotInfo {
        guard !listing.snapshots.isEmpty else { throw ReplicationError(.notFound, "no snapshots available") }
        var best: SnapshotInfo?
        for s in listing.snapshots where s.createdAt <= timestamp {
            if let b = best, (b.createdAt, b.index, rank(b.layout)) > (s.createdAt, s.index, rank(s.layout)) { continue }
            best = s
        }
        guard let best else { throw ReplicationError(.notFound, "no snapshots available at or before \(timestamp)") }
        return best
    }

    private static func rank(_ l: ReplicaLayout) -> Int { l == .v04 ? 1 : 0 }

    /// Groups `segments` (already filtered) by index for `from … through`; throws `wal not found` for a missing index,
    /// except that a snapshot-only plan (from == through, no segment at all) yields no index.
    public static func walIndexes(generation: Generation, segments: [WALSegmentInfo],
                                  from: UInt32, through: UInt32) throws -> [PlannedWALIndex] {
        var byIndex: [UInt32: [WALSegmentInfo]] = [:]
        for s in segments where s.index >= from && s.index <= through { byIndex[s.index, default: []].append(s) }
        if from > through || (from == through && byIndex.isEmpty) { return [] }
        var out: [PlannedWALIndex] = []
        out.reserveCapacity(Int(through - from) + 1)
        var i = from
        while true {
            guard let segs = byIndex[i], !segs.isEmpty else {
                throw ReplicationError(.notFound,
                                       "wal not found: generation=\(generation.name) index=\(Hex.format(i, width: 16))")
            }
            out.append(PlannedWALIndex(index: i, segments: segs.sorted { $0.offset < $1.offset }))
            if i == through { break }
            i += 1
        }
        return out
    }

    /// Plans a restore of one generation, to `index` (inclusive) or to the point in time `timestamp`, or to the end.
    ///
    /// Errors carry the upstream CLI context: `cannot determine latest index in generation "G": …`,
    /// `cannot find snapshot index: …`, `cannot download WAL: wal not found: …`, `cannot specify index & timestamp to restore`.
    public static func plan(_ listing: GenerationListing, index: UInt32? = nil, timestamp: Date? = nil) throws -> RestorePlan {
        let g = listing.generation
        if let timestamp {
            if index != nil { throw ReplicationError(.invalidInput, "cannot specify index & timestamp to restore") }
            return try planAt(listing, timestamp: timestamp)
        }
        let target: UInt32
        do { target = try targetIndex(of: listing, index: index) } catch let e as ReplicationError {
            throw e.wrapped("cannot determine latest index in generation \"\(g.name)\"")
        }
        let snap: SnapshotInfo
        do { snap = try snapshot(of: listing, atOrBefore: target) } catch let e as ReplicationError {
            throw e.wrapped("cannot find snapshot index")
        }
        do {
            let wal = try walIndexes(generation: g, segments: listing.segments, from: snap.index, through: target)
            return RestorePlan(generation: g, snapshot: snap, targetIndex: target, walIndexes: wal)
        } catch let e as ReplicationError {
            throw e.wrapped("cannot download WAL")
        }
    }

    /// Point-in-time plan (v0.3.13 rules): the latest snapshot created at or before `timestamp`, then segments in
    /// (index, offset) order from its index, stopping at the first one created after `timestamp`.
    private static func planAt(_ listing: GenerationListing, timestamp: Date) throws -> RestorePlan {
        let g = listing.generation
        let b: GenerationBounds
        do { b = try bounds(of: listing) } catch let e as ReplicationError {
            throw e.wrapped("cannot determine latest index in generation \"\(g.name)\"")
        }
        guard b.contains(timestamp) else { throw ReplicationError(.notFound, noMatchingBackups) }
        let snap: SnapshotInfo
        do { snap = try snapshot(of: listing, at: timestamp) } catch let e as ReplicationError {
            throw e.wrapped("cannot find snapshot index")
        }
        let ordered = listing.segments.filter { $0.index >= snap.index }
            .sorted { ($0.index, $0.offset) < ($1.index, $1.offset) }
        var taken: [WALSegmentInfo] = []
        for s in ordered {
            if s.createdAt > timestamp { break }
            taken.append(s)
        }
        let target = taken.last?.index ?? snap.index
        do {
            let wal = try walIndexes(generation: g, segments: taken, from: snap.index, through: target)
            return RestorePlan(generation: g, snapshot: snap, targetIndex: target, walIndexes: wal)
        } catch let e as ReplicationError {
            throw e.wrapped("cannot download WAL")
        }
    }
}
