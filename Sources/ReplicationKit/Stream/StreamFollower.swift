import Foundation
import Logging

/// Keeps a local database following a primary's `/stream` (`upstream:` in the config): connect, apply every
/// record, reconnect with capped backoff.
///
/// Runs on its own thread: the HTTP transfer (libcurl) and the SQLite work block, and blocking inside the body
/// callback is what slows the primary's sending down when this side is busy. Differences from upstream: TCP
/// keep-alive and a heartbeat-based idle timeout notice a dead primary; the position sent includes the offset,
/// so a reconnect never re-applies (and never briefly rolls back) frames the database already shows.
public final class StreamFollower: HTTPStreamReceiver, @unchecked Sendable {
    // @unchecked: the parsing state below is confined to the follower thread; shared state is in locks.

    /// Local database path.
    public let path: String
    /// The primary's base URL (scheme, host, port).
    public let upstreamBase: String
    /// The database path as the primary knows it.
    public let upstreamPath: String
    /// Whether the local database holds data from the primary (an earlier run's or this run's first snapshot).
    public let isReady = Locked(false)
    /// The position of the last applied record (its end).
    public let position = Locked<WALPosition?>(nil)
    /// When the last record was applied.
    public let lastAppliedAt = Locked<Date?>(nil)
    /// The last connection or apply error, nil while the stream is healthy.
    public let lastError = Locked<String?>(nil)
    /// Snapshots applied since start (for tests and logs).
    public let snapshotsApplied = Locked(0)

    /// Seconds between heartbeats the primary is asked to send on an idle stream.
    public static let heartbeatInterval: Duration = .seconds(15)

    private let logger: Logger
    private let http: CurlHTTPClient
    private let applier: StreamApplier
    private let stopping = Locked(false)
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    // Confined to the follower thread.
    private var reader = StreamRecordReader()
    /// The record whose payload is arriving.
    private var record: StreamRecordHeader?
    private var segment: [UInt8] = []
    private var failure: (any Error)?
    private var errorBody: [UInt8]?
    private var status = 0
    private var appliedThisConnection = 0
    /// Segments appended since the last publish (made visible at the end of each network read).
    private var pendingInBatch = 0

    /// Creates a follower of `upstreamURL` (any path, query or user info in it is ignored, as upstream does).
    public init(path: String, upstreamURL: String, upstreamPath: String?, logger: Logger) throws {
        guard var c = URLComponents(string: upstreamURL), let scheme = c.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = c.host, !host.isEmpty else {
            throw ReplicationError(.config, "database \(path): upstream.url must be an http:// or https:// URL: \(upstreamURL)")
        }
        c.path = ""
        c.query = nil
        c.fragment = nil
        c.user = nil
        c.password = nil
        self.upstreamBase = c.string ?? upstreamURL
        try CurlLibrary.load(for: "database \(path): upstream \(upstreamBase)")
        self.path = path
        self.upstreamPath = upstreamPath ?? path
        var l = logger
        l[metadataKey: "db"] = "\(path)"
        self.logger = l
        var o = CurlHTTPOptions()
        o.connectTimeout = .seconds(5)
        // Three missed heartbeats: the primary (or the path to it) is gone.
        o.stallTimeout = Self.heartbeatInterval * 3
        o.tcpKeepAlive = .seconds(10)
        o.maxAttempts = 1
        self.http = CurlHTTPClient(options: o, logger: l)
        self.applier = StreamApplier(path: path, logger: l)
        DatabaseMetrics.register(path: path)
        if FileSystem.exists(path), let p = applier.storedPosition() {
            position.withLock { $0 = p }
            isReady.withLock { $0 = true }
        }
    }

    /// Starts following on a new thread.
    public func start() {
        logger.info("following upstream: url=\(upstreamBase) path=\(upstreamPath)")
        let t = Thread { [self] in
            run()
            finished.signal()
        }
        t.name = "stream-follower"
        t.start()
    }

    /// Stops following and waits (up to `timeout`) for the thread to finish its current record.
    public func stop(timeout: Duration = .seconds(5)) {
        stopping.withLock { $0 = true }
        wake.signal()
        _ = finished.wait(timeout: .now() + timeout.timeInterval)
    }

    private func run() {
        var delay: Duration = .milliseconds(250)
        while !stopping.current {
            let result = connectOnce()
            applier.abort()
            if stopping.current { break }
            if appliedThisConnection > 0 { delay = .milliseconds(250) }
            lastError.withLock { $0 = result }
            logger.warning("stream error, retrying in \(GoDuration.format(delay)): \(result)")
            _ = wake.wait(timeout: .now() + delay.timeInterval)
            delay = min(delay * 2, .seconds(15))
        }
        applier.close()
        logger.info("stopped following upstream")
    }

    /// One connection; returns why it ended.
    private func connectOnce() -> String {
        reader = StreamRecordReader()
        record = nil
        segment = []
        failure = nil
        errorBody = nil
        status = 0
        appliedThisConnection = 0
        pendingInBatch = 0
        let local = FileSystem.exists(path) ? applier.storedPosition() : nil
        let url = upstreamBase + "/stream?" + StreamRequest.query(path: upstreamPath, position: local,
                                                                heartbeat: Self.heartbeatInterval)
        do {
            let response = try http.performOnce(HTTPRequest(method: "GET", url: url, headers: []), sink: .stream(self))
            if let f = failure { return f.oneLine }
            if response.status != 200 || errorBody != nil {
                let text = String(decoding: errorBody ?? [], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                return "invalid response: code=\(response.status)\(text.isEmpty ? "" : ": \(text)") (\(upstreamBase))"
            }
            return "stream ended by the primary"
        } catch {
            if let f = failure { return f.oneLine }
            return error.oneLine
        }
    }

    public func receiveHead(status: Int, headers: [(String, String)]) -> Bool {
        self.status = status
        guard status == 200 else {
            errorBody = []
            return true
        }
        let value = headers.last { $0.0.lowercased() == "litestream-page-size" }?.1
        guard let v = value, let pageSize = Int(v), pageSize > 0 else {
            failure = ReplicationError(.corrupt, "stream page size unavailable (\(upstreamBase))")
            return false
        }
        do { try applier.prepare(pageSize: pageSize) } catch {
            failure = error
            return false
        }
        lastError.withLock { $0 = nil }
        return true
    }

    public func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if errorBody != nil {
            if errorBody!.count < 1024 { errorBody!.append(contentsOf: bytes.prefix(1024 - errorBody!.count)) }
            return true
        }
        do {
            try consume(bytes)
            // Everything this read brought becomes visible at once (one batch when the follower is behind).
            if pendingInBatch > 0 { try publishBatch() }
            return true
        } catch {
            failure = error
            return false
        }
    }

    private func publishBatch() throws {
        try applier.flush()
        appliedThisConnection += pendingInBatch
        pendingInBatch = 0
        position.withLock { $0 = applier.storedPosition() }
        lastAppliedAt.withLock { $0 = Date() }
    }

    public func shouldStop() -> Bool { stopping.current }

    /// Splits the body into records and applies each one.
    private func consume(_ bytes: UnsafeRawBufferPointer) throws {
        try reader.consume(bytes) { event in
            switch event {
            case .begin(let h): try begin(h)
            case .payload(let piece):
                if record?.kind == .snapshot {
                    try applier.snapshotData(piece)
                } else {
                    segment.append(contentsOf: piece)
                }
            case .end(let h): try complete(h)
            }
        }
    }

    /// Prepares for the payload of `h` (the reader has checked its framing).
    private func begin(_ h: StreamRecordHeader) throws {
        switch h.kind {
        case .heartbeat:
            return
        case .snapshot:
            if pendingInBatch > 0 { try publishBatch() }
            logger.info("receiving snapshot: pos=\(h.position) size=\(h.size)")
            try applier.beginSnapshot(h)
        case .walSegment:
            segment.removeAll(keepingCapacity: true)
            segment.reserveCapacity(Int(h.size))
        }
        record = h
    }

    private func complete(_ h: StreamRecordHeader) throws {
        record = nil
        switch h.kind {
        case .heartbeat:
            return
        case .snapshot:
            try applier.finishSnapshot()
            snapshotsApplied.withLock { $0 += 1 }
            isReady.withLock { $0 = true }
            logger.info("snapshot applied: pos=\(h.position)")
        case .walSegment:
            let applied = try segment.withUnsafeBytes { try applier.applySegment(h, compressed: $0, publish: false) }
            segment.removeAll(keepingCapacity: true)
            if applied {
                pendingInBatch += 1
                logger.trace("wal segment received: \(h.position)")
            }
            return
        }
        appliedThisConnection += 1
        position.withLock { $0 = applier.storedPosition() }
        lastAppliedAt.withLock { $0 = Date() }
    }
}
