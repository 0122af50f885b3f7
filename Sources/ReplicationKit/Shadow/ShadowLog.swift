import Foundation

/// The one-way seam between a database and the consumers of its shadow WAL (replicas and live stream sessions).
///
/// Data flows one way: `WAL change → Database → ShadowLog → consumer → replica object or stream record`.
/// - The database is the only producer. It appends every segment it writes (`append`), publishes the position
///   its copy reached (`publish`), and, when it cleans, reads what its consumers still hold (`heldIndexes`).
/// - Consumers never call into the database. They read immutable values from here (`position`, `segments`,
///   `recentSegments`), open a segment's bytes (`open`), and report back one thing: the position they hold
///   (`report`). That report is what keeps shadow indexes on disk and segment bytes in memory for them.
///
/// Thread-safe: the database appends and publishes on its queue; consumers read from their own threads.
public final class ShadowLog: Sendable {
    /// Paths of the database's metadata directory (where the segment files are).
    public let meta: MetaDirectory

    /// Segment bytes kept in memory for consumers, newest first, at most this many bytes in all.
    static let keptBytesLimit = 4 << 20
    /// Recent segments remembered (paths and positions), trimmed to `recentKeep` when exceeded.
    static let recentLimit = 1024
    static let recentKeep = 768

    private struct Consumer {
        let observer: any ShadowObserver
        /// Whether the shadow indexes it has not consumed must stay on disk (a replica); a stream session falls
        /// back to a snapshot instead.
        let retainsShadow: Bool
        /// The position it holds (everything before it is consumed); nil while unknown.
        var holds: WALPosition?
    }

    private struct State {
        var position: WALPosition?
        var generation: Generation?
        /// The segments this process wrote most recently, in order and without gaps, of `generation`.
        var recent: [ShadowSegment] = []
        /// Entries of `recent` before this one hold no bytes any more (a release need not look at them again).
        var keptFrom = 0
        var consumers: [ObjectIdentifier: Consumer] = [:]

        /// Forgets in-memory bytes of segments that every consumer holds a position past (consumers that do not
        /// know their position keep everything; the byte limit bounds the rest).
        mutating func releaseConsumedBytes() {
            guard let g = generation, !consumers.isEmpty else { return }
            var oldest: WALPosition?
            for c in consumers.values {
                guard let p = c.holds, p.generation == g else { return }
                if oldest == nil || p.index < oldest!.index || (p.index == oldest!.index && p.offset < oldest!.offset) { oldest = p }
            }
            guard let keep = oldest else { return }
            var i = keptFrom
            while i < recent.count, recent[i].index < keep.index || (recent[i].index == keep.index && recent[i].offset < keep.offset) {
                if recent[i].compressed != nil { recent[i].compressed = nil }
                i += 1
            }
            keptFrom = i
        }
    }

    private let state = Locked(State())

    /// Creates the log of the database whose metadata directory is `meta`.
    public init(meta: MetaDirectory) { self.meta = meta }

    // MARK: Producer side (the database, on its queue)

    /// Records a segment just written, in write order. Its in-memory bytes (`compressed`), if any, stay until
    /// every consumer holds a position past it, within `keptBytesLimit` for all segments together.
    func append(_ s: ShadowSegment, generation g: Generation) {
        state.withLock { st in
            if st.generation != g { (st.generation, st.recent, st.keptFrom) = (g, [], 0) }
            st.recent.append(s)
            if st.recent.count > Self.recentLimit {
                let dropped = st.recent.count - Self.recentKeep
                st.recent.removeFirst(dropped)
                st.keptFrom = max(0, st.keptFrom - dropped)
            }
            var kept = 0
            for i in st.recent.indices.reversed() {
                guard let c = st.recent[i].compressed else { continue }
                if kept + c.count > Self.keptBytesLimit { st.recent[i].compressed = nil } else { kept += c.count }
            }
        }
    }

    /// Publishes the end of the copied data (nil: unknown, e.g. after a failed sync) and wakes the consumers.
    func publish(_ position: WALPosition?, notify: Bool = true) {
        let observers = state.withLock { st -> [any ShadowObserver] in
            st.position = position
            return notify ? st.consumers.values.map(\.observer) : []
        }
        for o in observers { o.shadowDidChange() }
    }

    /// The shadow index each shadow-retaining consumer holds (nil: unknown, so it needs everything).
    var heldIndexes: [UInt32?] {
        state.withLock { st in st.consumers.values.filter(\.retainsShadow).map { $0.holds?.index } }
    }

    /// Live stream sessions attached.
    public var streamCount: Int { state.withLock { st in st.consumers.values.count { !$0.retainsShadow } } }

    // MARK: Consumer side

    /// The end of the data in the shadow WAL, or nil before the first sync.
    public var position: WALPosition? { state.withLock { $0.position } }

    /// Registers a consumer; it is told of every publish (`shadowDidChange`) until `unsubscribe`.
    public func subscribe(_ o: any ShadowObserver, retainsShadow: Bool) {
        state.withLock { $0.consumers[ObjectIdentifier(o)] = Consumer(observer: o, retainsShadow: retainsShadow) }
    }

    /// Unregisters a consumer.
    public func unsubscribe(_ o: any ShadowObserver) {
        state.withLock { st in
            st.consumers.removeValue(forKey: ObjectIdentifier(o))
            st.releaseConsumedBytes()
        }
    }

    /// The one report a consumer makes: the position it holds (everything before it consumed), or nil when it no
    /// longer knows (after a failure: the shadow is then kept whole for it).
    public func report(_ o: any ShadowObserver, holds position: WALPosition?) {
        state.withLock { st in
            st.consumers[ObjectIdentifier(o)]?.holds = position
            st.releaseConsumedBytes()
        }
    }

    /// The last segments (at most `recentLimit`) this process wrote in generation `g`, in order and without gaps;
    /// stream sessions find their next segment here instead of listing directories.
    public func recentSegments(generation g: Generation) -> [ShadowSegment] {
        state.withLock { $0.generation == g ? $0.recent : [] }
    }

    /// The recent segments that follow `anchor` (or start at it, with `including`), at most `limit` of them; nil when
    /// `anchor` is not among the recent segments of generation `g`. A small copy: a caller holding on to the whole
    /// list would make every release of bytes copy it.
    public func recentSegments(generation g: Generation, after anchor: (index: UInt32, offset: UInt64), including: Bool,
                               limit: Int) -> [ShadowSegment]? {
        state.withLock { st in
            guard st.generation == g,
                  let i = st.recent.lastIndex(where: { $0.index == anchor.index && $0.offset == anchor.offset }) else { return nil }
            let from = including ? i : i + 1
            return Array(st.recent[from..<min(st.recent.count, from + limit)])
        }
    }

    /// Shadow segments of generation `g` from index `fromIndex` on, grouped by index in ascending order, each with
    /// its bytes when they are still in memory.
    ///
    /// Listed from disk: the database never removes an index a shadow-retaining consumer holds or needs (see
    /// `Database.clean`), and writes segments under a temporary name, so the listing needs no lock.
    public func segments(generation g: Generation, fromIndex: UInt32) throws -> [(index: UInt32, segments: [ShadowSegment])] {
        let shadow = ShadowWAL(meta: meta)
        let listed = try shadow.indexes(g).filter { $0 >= fromIndex }.map { (index: $0, segments: try shadow.segments(g, index: $0)) }
        return state.withLock { st in
            guard st.generation == g else { return listed }
            return listed.map { group in
                (group.index, group.segments.map { s in
                    guard let kept = st.recent.last(where: { $0.index == s.index && $0.offset == s.offset }) else { return s }
                    var copy = s
                    copy.compressed = kept.compressed
                    copy.length = kept.length
                    return copy
                })
            }
        }
    }

    /// Opens a segment's decompressed bytes; with `durable`, the file is flushed to stable storage first.
    public func open(_ s: ShadowSegment, durable: Bool = false) throws -> LZ4FrameDecoder {
        try ShadowWAL(meta: meta).openSegment(s, durable: durable)
    }

    /// Appends a segment's LZ4 blocks as they are to `encoder` and returns its WAL byte count; nil when they
    /// cannot be copied (see `ShadowWAL.copyBlocks`).
    public func copyBlocks(of s: ShadowSegment, durable: Bool, to encoder: LZ4FrameEncoder) throws -> UInt64? {
        try ShadowWAL(meta: meta).copyBlocks(of: s, durable: durable, to: encoder)
    }

    /// Flushes the directories of the given segments to stable storage (before they are uploaded).
    public func syncDirectories(of segments: [ShadowSegment]) throws {
        try ShadowWAL(meta: meta).syncDirectories(of: segments)
    }
}
