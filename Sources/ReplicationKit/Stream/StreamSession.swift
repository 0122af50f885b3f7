#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// One `/stream` response on the primary: an optional snapshot record, then every shadow segment as it appears.
///
/// Everything runs on the session's own serial lane of the `stream` I/O pool (file reads block; the pool bounds
/// the threads however many followers attach, and is separate from the replicas' pools, so a frozen store never
/// delays a follower); the event loop only writes. One write
/// is in flight at a time, so a slow client holds at most one chunk in memory and never delays the database
/// (which only posts a wake-up) or other clients. The session ends when the client goes away, on a write error,
/// when the primary starts a new generation, or when the shadow segments it needs are gone (the client then
/// reconnects and gets a snapshot).
final class StreamSession: ShadowObserver, @unchecked Sendable {
    // @unchecked: mutable state is confined to `queue`; `wakePending` is a lock.
    private let db: Database
    /// The database's shadow log: segments in, the position this session holds back out.
    private let log: ShadowLog
    private let channel: any Channel
    private let queue: SerialLane
    private let logger: Logger
    private let cache: StreamSnapshotCache
    private let request: StreamRequest
    private let wakePending = Locked(false)
    private let metrics: StreamMetrics

    // Confined to `queue`.
    private var generation: Generation?
    /// The first segment that may be sent: the client's position or the snapshot's.
    private var startAt: (index: UInt32, offset: UInt64) = (0, 0)
    /// The last segment sent (nil before the first).
    private var lastSent: (index: UInt32, offset: UInt64)?
    private var outgoing: [Piece] = []
    private var writing = false
    private var closed = false
    private var lastWrite = ContinuousClock.now
    private var heartbeatTimer: (any DispatchSourceTimer)?

    private enum Piece {
        case bytes([UInt8])
        case file(StreamSnapshotFile, offset: UInt64, end: UInt64)
        case segment(header: StreamRecordHeader, fd: FileDescriptor)
    }

    private static let chunkSize = 256 * 1024

    init(db: Database, channel: any Channel, request: StreamRequest, cache: StreamSnapshotCache, logger: Logger) {
        self.db = db
        self.log = db.shadowLog
        self.channel = channel
        self.request = request
        self.cache = cache
        self.metrics = StreamMetrics.for(path: db.path)
        self.queue = SerialLane(label: "launcher.stream.session", pool: IOPool.shared(kind: "stream"))
        var l = logger
        let peer = channel.remoteAddress
        l[metadataKey: "client"] = "\(peer?.ipAddress ?? "?"):\(peer?.port.map(String.init) ?? "?")"
        self.logger = l
    }

    /// Decides between resuming and a snapshot, writes the response head and starts sending, on the session's
    /// queue (building a snapshot takes a while and must not hold up other requests); when the database has
    /// nothing to stream yet, answers with the error instead.
    func start() {
        queue.async { [self] in
            if let failure = startOnQueue() {
                HTTPRequestHandler.write(failure, to: channel, version: .http1_1, keepAlive: false)
            }
        }
    }

    private func startOnQueue() -> SimpleHTTPResponse? {
        let pageSize = db.currentPageSize
        guard pageSize > 0, let current = log.position else {
            return .text(.serviceUnavailable, "No generation available")
        }
        // Registered before anything is listed, so no segment written meanwhile goes unnoticed.
        log.subscribe(self, retainsShadow: false)
        metrics.clients.record(log.streamCount)
        channel.closeFuture.whenComplete { [self] _ in queue.async { self.teardown(reason: "client disconnected") } }

        generation = current.generation
        var snapshot: StreamSnapshotFile?
        if let p = request.position, canResume(from: p, current: current) {
            startAt = (p.index, p.offset)
        } else {
            if let p = request.position {
                logger.info(p.generation != current.generation
                    ? "stream generation mismatch, using primary position: client.pos=\(p)"
                    : "stream position no longer available, using primary position: client.pos=\(p)")
            }
            do {
                snapshot = try cache.snapshot(of: db)
            } catch {
                teardown(reason: "snapshot failed")
                return .text(.internalServerError, "Cannot build snapshot: \(error.oneLine)")
            }
        }
        if let s = snapshot {
            generation = s.position.generation
            startAt = (s.position.index, s.position.offset)
        }
        logger.info("stream connected: pos=\(request.position.map { "\($0)" } ?? "none") snapshot=\(snapshot != nil)")

        var headers = HTTPHeaders()
        headers.add(name: "Litestream-Page-Size", value: String(pageSize))
        headers.add(name: "Content-Type", value: "application/octet-stream")
        channel.writeAndFlush(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)),
                              promise: nil)
        if let s = snapshot, let g = generation {
            let header = StreamRecordHeader(kind: .snapshot, generation: g, index: s.position.index,
                                            offset: s.position.offset, size: s.size)
            outgoing.append(.bytes(header.encoded()))
            outgoing.append(.file(s, offset: 0, end: s.size))
            metrics.snapshots.increment()
            logger.info("stream snapshot: pos=\(s.position) size=\(s.size)")
        }
        if let h = request.heartbeat { startHeartbeat(every: h) }
        drive()
        return nil
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
        if !already { queue.async { self.wakePending.withLock { $0 = false }; self.pump() } }
    }

    /// Queues every segment not sent yet (up to a bounded number of open files at a time).
    private func pump() {
        guard !closed, outgoing.isEmpty, !writing, let g = generation else { return }
        guard let current = log.position else { return }
        guard current.generation == g else {
            end(reason: "generation changed to \(current.generation.name)")
            return
        }
        var queued = 0
        do {
            var prev = lastSent
            for seg in try candidates(g, current: current) {
                if queued >= 64 { break }
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
                    let header = StreamRecordHeader(kind: .walSegment, generation: g, index: seg.index, offset: seg.offset,
                                                    size: UInt64(bytes.count))
                    outgoing.append(.bytes(header.encoded() + bytes))
                } else {
                    let fd = try FileDescriptor.openForReading(seg.path)
                    let header = StreamRecordHeader(kind: .walSegment, generation: g, index: seg.index, offset: seg.offset,
                                                    size: try fd.size())
                    outgoing.append(.segment(header: header, fd: fd))
                }
                prev = (seg.index, seg.offset)
                lastSent = prev
                queued += 1
            }
        } catch {
            return end(reason: "read shadow WAL: \(error.oneLine)")
        }
        if queued > 0 {
            // Everything before the last segment queued is consumed: its bytes need not stay in memory for us.
            if let p = lastSent { log.report(self, holds: WALPosition(generation: g, index: p.index, offset: p.offset)) }
            metrics.segments.increment(by: queued)
            drive()
            if queued >= 64 { queue.async { self.pump() } }
        }
    }

    /// Segments that may come next, in order: from the database's list of recently written segments when the
    /// last one sent (or the start) is in it, which costs no system call; else from listing the shadow WAL.
    private func candidates(_ g: Generation, current: WALPosition) throws -> [ShadowSegment] {
        let recent = log.recentSegments(generation: g)
        let anchor = lastSent ?? startAt
        if let i = recent.lastIndex(where: { $0.index == anchor.index && $0.offset == anchor.offset }) {
            return Array(recent[(lastSent == nil ? i : i + 1)...])
        }
        let shadow = ShadowWAL(meta: log.meta)
        var out: [ShadowSegment] = []
        for index in anchor.index...max(current.index, anchor.index) {
            out += try shadow.segments(g, index: index)
            if out.count > 256 { break }
        }
        return out
    }

    /// Writes the next chunk of `outgoing` unless a write is in flight; pumps for more once everything is out.
    private func drive() {
        guard !closed, !writing else { return }
        guard !outgoing.isEmpty else {
            pump()
            return
        }
        var buffer = channel.allocator.buffer(capacity: 0)
        do {
            while buffer.readableBytes < Self.chunkSize, !outgoing.isEmpty {
                switch outgoing.removeFirst() {
                case .bytes(let b):
                    buffer.writeBytes(b)
                case .file(let s, let offset, let end):
                    let n = Int(min(UInt64(Self.chunkSize), end - offset))
                    buffer.reserveCapacity(minimumWritableBytes: n)
                    let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { dst in
                        try s.read(into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<n]), at: offset)
                    }
                    guard got == n else { throw ReplicationError(.io, "stream snapshot file is shorter than expected") }
                    if offset + UInt64(n) < end { outgoing.insert(.file(s, offset: offset + UInt64(n), end: end), at: 0) }
                case .segment(let header, let fd):
                    buffer.writeBytes(header.encoded())
                    let n = Int(header.size)
                    let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { dst in
                        try fd.pread(into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<n]), at: 0)
                    }
                    try? fd.close()
                    guard got == n else { throw ReplicationError(.io, "shadow segment shrank while being sent") }
                }
            }
        } catch {
            return end(reason: error.oneLine)
        }
        writing = true
        lastWrite = .now
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer))).whenComplete { [self] result in
            queue.async {
                self.writing = false
                if case .failure(let e) = result { return self.end(reason: "write: \(e)") }
                self.drive()
            }
        }
    }

    private func startHeartbeat(every interval: Duration) {
        heartbeatTimer = queue.makeTimer(every: interval) { [weak self] in
            guard let self, !self.closed, !self.writing, self.outgoing.isEmpty,
                  ContinuousClock.now - self.lastWrite >= interval * 0.9, let g = self.generation else { return }
            let h = StreamRecordHeader(kind: .heartbeat, generation: g, index: self.lastSent?.index ?? self.startAt.index,
                                       offset: 0, size: 0)
            self.outgoing.append(.bytes(h.encoded()))
            self.drive()
        }
    }

    /// Ends the response (the client will reconnect) and releases everything.
    private func end(reason: String) {
        guard !closed else { return }
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { [channel] _ in channel.close(promise: nil) }
        teardown(reason: reason)
    }

    private func teardown(reason: String) {
        guard !closed else { return }
        closed = true
        heartbeatTimer?.cancel()
        heartbeatTimer = nil
        outgoing = []
        log.unsubscribe(self)
        metrics.clients.record(log.streamCount)
        logger.info("stream disconnected: \(reason)")
    }
}
