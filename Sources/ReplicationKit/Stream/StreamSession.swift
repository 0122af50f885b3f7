#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// One `/stream` response on the primary: an optional snapshot record, then every shadow segment as it appears.
///
/// The session's state lives on its channel's event loop. A follower that keeps up needs no disk: each publish
/// hops once onto the loop, which takes the new segments' bytes from the shadow log's memory and writes them (a
/// write's completion also arrives on the loop, so it costs no further hand-off: with many followers these
/// hand-offs were most of the primary's cost per follower). Whatever blocks (building a snapshot, listing the
/// shadow WAL, reading segment files or snapshot chunks) runs on the session's serial lane of the `stream` I/O
/// pool, which bounds the threads however many followers attach and is separate from the replicas' pools (a
/// frozen store never delays a follower), and hands its result back to the loop. One write is in flight at a
/// time, so a slow client holds at most one chunk in memory and never delays the database (which only posts a
/// wake-up) or other clients. The session ends when the client goes away, on a write error, when the primary
/// starts a new generation, or when the shadow segments it needs are gone (the client then reconnects and gets a
/// snapshot).
final class StreamSession: ShadowObserver, @unchecked Sendable {
    // @unchecked: mutable state is confined to `loop` (the lane only computes and hands results back);
    // `wakePending` is a lock.
    private let db: Database
    /// The database's shadow log: segments in, the position this session holds back out.
    private let log: ShadowLog
    private let channel: any Channel
    private let loop: any EventLoop
    private let lane: SerialLane
    private let logger: Logger
    private let cache: StreamSnapshotCache
    private let request: StreamRequest
    private let wakePending = Locked(false)
    private let metrics: StreamMetrics

    // Confined to `loop`.
    private var generation: Generation?
    /// The first segment that may be sent: the client's position or the snapshot's.
    private var startAt: (index: UInt32, offset: UInt64) = (0, 0)
    /// The last segment sent (nil before the first).
    private var lastSent: (index: UInt32, offset: UInt64)?
    private var outgoing: [Piece] = []
    private var writing = false
    /// A read on the lane is under way; its result comes back to the loop.
    private var reading = false
    private var closed = false
    private var lastWrite = ContinuousClock.now
    private var heartbeat: RepeatedTask?

    /// What is queued for the client: bytes in memory go straight into the next write; a piece on disk is read on
    /// the lane first and comes back as bytes.
    private enum Piece: Sendable {
        case memory(InMemory)
        case disk(OnDisk)
    }
    private enum InMemory: Sendable {
        case bytes([UInt8])
        /// A record whose payload is in memory: header and payload go into the buffer without joining them first.
        case record(StreamRecordHeader, [UInt8])
    }
    private enum OnDisk: Sendable {
        /// Read a chunk at a time.
        case file(StreamSnapshotFile, offset: UInt64, end: UInt64)
        /// A segment whose bytes are no longer in memory.
        case segment(Generation, index: UInt32, offset: UInt64, path: String)
    }

    private static let chunkSize = 256 * 1024
    /// Segments queued at a time.
    private static let batch = 64

    init(db: Database, channel: any Channel, request: StreamRequest, cache: StreamSnapshotCache, logger: Logger) {
        self.db = db
        self.log = db.shadowLog
        self.channel = channel
        self.loop = channel.eventLoop
        self.request = request
        self.cache = cache
        self.metrics = StreamMetrics.for(path: db.path)
        self.lane = SerialLane(label: "launcher.stream.session", pool: IOPool.shared(kind: "stream"))
        var l = logger
        let peer = channel.remoteAddress
        l[metadataKey: "client"] = "\(peer?.ipAddress ?? "?"):\(peer?.port.map(String.init) ?? "?")"
        self.logger = l
    }

    /// Decides between resuming and a snapshot on the lane (building a snapshot takes a while and must not hold
    /// up other requests), then writes the response head and starts sending on the loop; when the database has
    /// nothing to stream yet, answers with the error instead.
    func start() {
        lane.async { [self] in
            switch decide() {
            case .reject(let response):
                HTTPRequestHandler.write(response, to: channel, version: .http1_1, keepAlive: false)
            case .start(let start):
                loop.execute { self.begin(start) }
            }
        }
    }

    private enum Decision {
        case start(Start)
        case reject(SimpleHTTPResponse)
    }

    private struct Start: Sendable {
        var generation: Generation
        var at: (index: UInt32, offset: UInt64)
        var snapshot: StreamSnapshotFile?
        var pageSize: Int
    }

    /// On the lane: where the client starts.
    private func decide() -> Decision {
        let pageSize = db.currentPageSize
        guard pageSize > 0, let current = log.position else {
            return .reject(.text(.serviceUnavailable, "No generation available"))
        }
        // Registered before anything is listed, so no segment written meanwhile goes unnoticed (a wake-up that
        // arrives before `begin` finds no generation yet; `begin` pumps).
        log.subscribe(self, retainsShadow: false)
        metrics.clients.record(log.streamCount)
        channel.closeFuture.whenComplete { [self] _ in teardown(reason: "client disconnected") }

        if let p = request.position, canResume(from: p, current: current) {
            return .start(Start(generation: current.generation, at: (p.index, p.offset), snapshot: nil, pageSize: pageSize))
        }
        if let p = request.position {
            logger.info(p.generation != current.generation
                ? "stream generation mismatch, using primary position: client.pos=\(p)"
                : "stream position no longer available, using primary position: client.pos=\(p)")
        }
        do {
            let s = try cache.snapshot(of: db)
            return .start(Start(generation: s.position.generation, at: (s.position.index, s.position.offset),
                                  snapshot: s, pageSize: pageSize))
        } catch {
            loop.execute { self.teardown(reason: "snapshot failed") }
            return .reject(.text(.internalServerError, "Cannot build snapshot: \(error.oneLine)"))
        }
    }

    /// On the loop: the response head, the snapshot record if any, then the segments.
    private func begin(_ s: Start) {
        guard !closed else { return }
        generation = s.generation
        startAt = s.at
        logger.info("stream connected: pos=\(request.position.map { "\($0)" } ?? "none") snapshot=\(s.snapshot != nil)")

        var headers = HTTPHeaders()
        headers.add(name: "Litestream-Page-Size", value: String(s.pageSize))
        headers.add(name: "Content-Type", value: "application/octet-stream")
        channel.writeAndFlush(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)),
                              promise: nil)
        if let snap = s.snapshot {
            let header = StreamRecordHeader(kind: .snapshot, generation: s.generation, index: snap.position.index,
                                            offset: snap.position.offset, size: snap.size)
            outgoing.append(.memory(.bytes(header.encoded())))
            outgoing.append(.disk(.file(snap, offset: 0, end: snap.size)))
            metrics.snapshots.increment()
            logger.info("stream snapshot: pos=\(snap.position) size=\(snap.size)")
        }
        if let h = request.heartbeat { startHeartbeat(every: h) }
        drive()
    }

    /// Whether `p` can be continued from the local shadow WAL without a snapshot.
    private func canResume(from p: WALPosition, current: WALPosition) -> Bool {
        guard let order = p.compare(current), order != .orderedDescending else { return false }
        let shadow = ShadowWAL(meta: log.meta)
        guard let segments = try? shadow.segments(p.generation, index: p.index), !segments.isEmpty else {
            // Nothing of that index left locally, unless it is the current one and still empty.
            return p.index == current.index && p.offset == 0 && current.offset == 0
        }
        if p.offset == 0 { return segments[0].offset == 0 }
        // Mid-index: the client's position must be a segment boundary: the start of a segment, or the end of the
        // last one (nothing newer in that index yet, or the index is finished).
        if segments.contains(where: { $0.offset == p.offset }) { return true }
        return !segments.contains { $0.offset > p.offset } && segments[0].offset == 0
            && (p.index < current.index || p.offset == current.offset)
    }

    func shadowDidChange() {
        let already = wakePending.withLock { w in defer { w = true }; return w }
        if !already { loop.execute { self.wakePending.withLock { $0 = false }; self.pump() } }
    }

    /// On the loop: queues every segment not sent yet (at most `batch` at a time), from the shadow log's memory when
    /// the last one sent (or the start) is among its recent segments, which costs no system call; else from a
    /// listing of the shadow WAL made on the lane.
    private func pump() {
        guard !closed, !reading, outgoing.isEmpty, !writing, let g = generation else { return }
        guard let current = log.position else { return }
        guard current.generation == g else {
            end(reason: "generation changed to \(current.generation.name)")
            return
        }
        let anchor = lastSent ?? startAt
        if let next = log.recentSegments(generation: g, after: anchor, including: lastSent == nil, limit: Self.batch) {
            return enqueue(next[...], generation: g)
        }
        read({ [self] in try listSegments(g, from: anchor, current: current) }) { [self] listed in
            switch listed {
            case .success(let segments): enqueue(segments[...], generation: g)
            case .failure(let error): end(reason: "read shadow WAL: \(error.oneLine)")
            }
        }
    }

    /// On the loop: runs `work` (which blocks) on the lane, then `then` with its result back on the loop unless the
    /// session ended meanwhile. `reading` is set meanwhile, so nothing else is started.
    private func read<T: Sendable>(_ work: @escaping @Sendable () throws -> T,
                                   then: @escaping @Sendable (Result<T, any Error>) -> Void) {
        reading = true
        lane.async { [self] in
            let result = Result { try work() }
            loop.execute { [self] in
                reading = false
                guard !closed else { return }
                then(result)
            }
        }
    }

    /// On the lane: the segments of generation `g` from the anchor's index on (a bounded number).
    private func listSegments(_ g: Generation, from anchor: (index: UInt32, offset: UInt64),
                              current: WALPosition) throws -> [ShadowSegment] {
        let shadow = ShadowWAL(meta: log.meta)
        var out: [ShadowSegment] = []
        for index in anchor.index...max(current.index, anchor.index) {
            out += try shadow.segments(g, index: index)
            if out.count > 256 { break }
        }
        return out
    }

    /// On the loop: queues the candidates that come next, checking that they continue what was sent without a gap.
    private func enqueue(_ candidates: ArraySlice<ShadowSegment>, generation g: Generation) {
        guard !closed, generation == g else { return }
        var queued = 0
        var prev = lastSent
        for seg in candidates {
            if queued >= Self.batch { break }
            if let p = prev {
                if seg.index < p.index || (seg.index == p.index && seg.offset <= p.offset) { continue }
                // Segments of one index are contiguous; a new index must follow directly and start at 0.
                guard seg.index == p.index || (seg.index == p.index + 1 && seg.offset == 0) else {
                    return end(reason: "shadow WAL index \(Hex.format(p.index + 1, width: 16)) is not available")
                }
            } else {
                if seg.index < startAt.index || (seg.index == startAt.index && seg.offset < startAt.offset) { continue }
                // The first segment sent starts exactly where the client (or its snapshot) ends.
                guard (seg.index == startAt.index && seg.offset == startAt.offset)
                        || (seg.index == startAt.index + 1 && seg.offset == 0) else {
                    return end(reason: "no shadow segment at \(g.name)/\(Hex.format(startAt.index, width: 16)):\(Hex.format(startAt.offset, width: 16))")
                }
            }
            if let bytes = seg.compressed {
                outgoing.append(.memory(.record(StreamRecordHeader(kind: .walSegment, generation: g, index: seg.index,
                                                                   offset: seg.offset, size: UInt64(bytes.count)), bytes)))
            } else {
                outgoing.append(.disk(.segment(g, index: seg.index, offset: seg.offset, path: seg.path)))
            }
            prev = (seg.index, seg.offset)
            lastSent = prev
            queued += 1
        }
        guard queued > 0 else { return }
        // Everything before the last segment queued is consumed: its bytes need not stay in memory for us.
        if let p = lastSent { log.report(self, holds: WALPosition(generation: g, index: p.index, offset: p.offset)) }
        metrics.segments.increment(by: queued)
        drive()
    }

    /// On the loop: writes the next chunk of `outgoing` unless a write or a read is in flight; a piece that needs
    /// the disk is read on the lane first. Pumps for more once everything is out.
    private func drive() {
        guard !closed, !writing, !reading else { return }
        guard let first = outgoing.first else { return pump() }
        if case .disk(let piece) = first {
            outgoing.removeFirst()
            read({ [self] in try readFromDisk(piece) }) { [self] read in
                switch read {
                case .success(let (bytes, rest)):
                    if let rest { outgoing.insert(.disk(rest), at: 0) }
                    outgoing.insert(.memory(.bytes(bytes)), at: 0)
                    drive()
                case .failure(let error):
                    end(reason: error.oneLine)
                }
            }
            return
        }
        var buffer = channel.allocator.buffer(capacity: 0)
        while buffer.readableBytes < Self.chunkSize, case .memory(let next) = outgoing.first {
            outgoing.removeFirst()
            switch next {
            case .bytes(let b):
                buffer.writeBytes(b)
            case .record(let header, let payload):
                buffer.writeBytes(header.encoded())
                buffer.writeBytes(payload)
            }
        }
        writing = true
        lastWrite = .now
        // The completion runs on the loop: no hand-off to continue.
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer))).whenComplete { [self] result in
            writing = false
            if case .failure(let e) = result { return end(reason: "write: \(e)") }
            drive()
        }
    }

    /// On the lane: the bytes of a piece that needs the disk (a whole record for a segment; a chunk for a snapshot
    /// file, with what remains of it).
    private func readFromDisk(_ piece: OnDisk) throws -> ([UInt8], OnDisk?) {
        switch piece {
        case .file(let s, let offset, let end):
            let n = Int(min(UInt64(Self.chunkSize), end - offset))
            let bytes = try [UInt8](unsafeUninitializedCapacity: n) { dst, count in
                count = try s.read(into: UnsafeMutableRawBufferPointer(dst), at: offset)
            }
            guard bytes.count == n else { throw ReplicationError(.io, "stream snapshot file is shorter than expected") }
            return (bytes, offset + UInt64(n) < end ? .file(s, offset: offset + UInt64(n), end: end) : nil)
        case .segment(let g, let index, let offset, let path):
            let fd = try FileDescriptor.openForReading(path)
            defer { try? fd.close() }
            let size = try fd.size()
            let header = StreamRecordHeader(kind: .walSegment, generation: g, index: index, offset: offset, size: size)
            var bytes = header.encoded()
            let headerCount = bytes.count
            bytes += [UInt8](repeating: 0, count: Int(size))
            let got = try bytes.withUnsafeMutableBytes { all in
                try fd.pread(into: UnsafeMutableRawBufferPointer(rebasing: all[headerCount...]), at: 0)
            }
            guard got == Int(size) else { throw ReplicationError(.io, "shadow segment shrank while being sent: \(path)") }
            return (bytes, nil)
        }
    }

    private func startHeartbeat(every interval: Duration) {
        let amount = TimeAmount.nanoseconds(Int64(interval.components.seconds) * 1_000_000_000
                                            + interval.components.attoseconds / 1_000_000_000)
        heartbeat = loop.scheduleRepeatedTask(initialDelay: amount, delay: amount) { [weak self] _ in
            guard let self, !self.closed, !self.writing, !self.reading, self.outgoing.isEmpty,
                  ContinuousClock.now - self.lastWrite >= interval * 0.9, let g = self.generation else { return }
            let h = StreamRecordHeader(kind: .heartbeat, generation: g, index: self.lastSent?.index ?? self.startAt.index,
                                       offset: 0, size: 0)
            self.outgoing.append(.memory(.bytes(h.encoded())))
            self.drive()
        }
    }

    /// Ends the response (the client will reconnect) and releases everything.
    private func end(reason: String) {
        guard !closed else { return }
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { [channel] _ in channel.close(promise: nil) }
        teardown(reason: reason)
    }

    /// On the loop.
    private func teardown(reason: String) {
        guard !closed else { return }
        closed = true
        heartbeat?.cancel()
        heartbeat = nil
        outgoing = []
        log.unsubscribe(self)
        metrics.clients.record(log.streamCount)
        logger.info("stream disconnected: \(reason)")
    }
}
