import Foundation

extension S3ReplicaClient {
    /// Size of one ranged GET of a snapshot download.
    static let downloadRangeSize = 8 << 20
    /// Ranged GETs of one snapshot in flight at once (each holds one range in memory).
    static let downloadConnections = 4

    /// Opens a snapshot as parallel ranged GETs (`downloadConnections` at a time, `downloadRangeSize` each)
    /// handed out in order, so decoding starts with the first range and nothing is staged on disk. A range whose
    /// connection drops is fetched again (the client's retry policy, fresh credentials at every attempt).
    /// Nil when the listing gave no size; `openSnapshot` then downloads the object in one GET.
    public func openSnapshotRanged(_ snapshot: SnapshotInfo) throws -> (any ByteSource)? {
        guard snapshot.size > 0 else { return nil }
        return S3RangedSource(client: self, key: key(objectName(snapshot: snapshot)), size: snapshot.size,
                              rangeSize: Self.downloadRangeSize, connections: Self.downloadConnections)
    }
}

/// Receives one range into a preallocated buffer; a non-2xx body is kept (up to 64 KiB) for the error message.
final class S3RangeReceiver: HTTPStreamReceiver, @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var count = 0
    private(set) var status = 0
    private(set) var overflow = false
    private(set) var errorBody: [UInt8] = []
    private let stop: @Sendable () -> Bool

    init(buffer: UnsafeMutableRawBufferPointer, stop: @escaping @Sendable () -> Bool) {
        self.buffer = buffer
        self.stop = stop
    }

    func receiveHead(status: Int, headers: [(String, String)]) -> Bool {
        // Called at every attempt: a retried range starts over.
        self.status = status
        count = 0
        overflow = false
        errorBody = []
        return true
    }

    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard (200..<300).contains(status) else {
            errorBody.append(contentsOf: bytes.prefix(max(0, (64 << 10) - errorBody.count)))
            return true
        }
        guard count + bytes.count <= buffer.count else {
            overflow = true
            return false
        }
        (buffer.baseAddress! + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
        return true
    }

    func shouldStop() -> Bool { stop() }
}

/// An S3 object read as consecutive ranges fetched by a few threads ahead of the reader.
///
/// At most `connections` ranges are in memory (being fetched, waiting, or being read). The error of a range is
/// delivered when the reader reaches it. `close()` stops and joins the fetchers.
final class S3RangedSource: ByteSource, @unchecked Sendable {
    private let client: S3ReplicaClient
    private let key: String
    private let size: UInt64
    private let rangeSize: Int
    private let rangeCount: Int

    private let cond = NSCondition()
    private var free: [UnsafeMutableRawBufferPointer] = []
    private var ready: [Int: Result<(UnsafeMutableRawBufferPointer, Int), ReplicationError>] = [:]
    private var nextFetch = 0
    private var running = 0
    private var cancelled = false
    /// The range being read: its buffer, length and read position.
    private var current: (buffer: UnsafeMutableRawBufferPointer, count: Int, position: Int)?
    private var nextRead = 0
    private var failure: ReplicationError?

    init(client: S3ReplicaClient, key: String, size: UInt64, rangeSize: Int, connections: Int) {
        self.client = client
        self.key = key
        self.size = size
        self.rangeSize = rangeSize
        rangeCount = Int((size + UInt64(rangeSize) - 1) / UInt64(rangeSize))
        let fetchers = max(1, min(connections, rangeCount))
        for _ in 0..<fetchers {
            free.append(.allocate(byteCount: Int(min(UInt64(rangeSize), size)), alignment: 16))
        }
        running = fetchers
        for n in 0..<fetchers {
            let t = Thread { [self] in self.fetchLoop() }
            t.name = "restore-s3-range-\(n)"
            t.start()
        }
    }

    deinit { close() }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            if var c = current {
                let n = min(buffer.count, c.count - c.position)
                buffer.baseAddress!.copyMemory(from: c.buffer.baseAddress! + c.position, byteCount: n)
                c.position += n
                if c.position == c.count {
                    cond.lock()
                    free.append(c.buffer)
                    current = nil
                    cond.broadcast()
                    cond.unlock()
                } else {
                    current = c
                }
                if n > 0 || buffer.count == 0 { return n }
                continue
            }
            cond.lock()
            defer { cond.unlock() }
            if let failure { throw failure }
            guard nextRead < rangeCount else { return 0 }
            while ready[nextRead] == nil && !cancelled { cond.wait() }
            if cancelled { throw ReplicationError(.cancelled, "s3: GET \(client.s3.bucket)/\(key): download cancelled") }
            switch ready.removeValue(forKey: nextRead)! {
            case .success(let (b, n)):
                current = (b, n, 0)
                nextRead += 1
            case .failure(let e):
                failure = e
                cancelled = true
                cond.broadcast()
                throw e
            }
        }
    }

    func close() {
        cond.lock()
        cancelled = true
        cond.broadcast()
        while running > 0 { cond.wait() }
        for b in free { b.deallocate() }
        free.removeAll()
        for case .success(let (b, _)) in ready.values { b.deallocate() }
        ready.removeAll()
        if let c = current { c.buffer.deallocate() }
        current = nil
        cond.unlock()
    }

    private var isCancelled: Bool {
        cond.lock()
        defer { cond.unlock() }
        return cancelled
    }

    private func fetchLoop() {
        cond.lock()
        while true {
            while !cancelled && nextFetch < rangeCount && free.isEmpty { cond.wait() }
            if cancelled || nextFetch >= rangeCount { break }
            let k = nextFetch
            nextFetch += 1
            let buffer = free.removeLast()
            cond.unlock()
            let result = fetch(k, into: buffer)
            cond.lock()
            if case .failure = result { free.append(buffer) }
            ready[k] = result
            cond.broadcast()
        }
        running -= 1
        cond.broadcast()
        cond.unlock()
    }

    private func fetch(_ k: Int, into buffer: UnsafeMutableRawBufferPointer) -> Result<(UnsafeMutableRawBufferPointer, Int), ReplicationError> {
        let start = UInt64(k) * UInt64(rangeSize)
        let length = Int(min(UInt64(rangeSize), size - start))
        let last = start + UInt64(length) - 1
        let what = "GET \(client.s3.bucket)/\(key) bytes \(start)-\(last)"
        let receiver = S3RangeReceiver(buffer: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])) { [weak self] in
            self?.isCancelled ?? true
        }
        do {
            let resp = try client.send("GET", key: key, headers: [("Range", "bytes=\(start)-\(last)")],
                                       sink: .stream(receiver), what: what)
            guard resp.status == 206 || (resp.status == 200 && start == 0 && UInt64(length) == size) else {
                throw ReplicationError(.io, "s3: \(what): HTTP \(resp.status) instead of 206 (the store ignored the Range header)")
            }
            guard receiver.count == length else {
                throw ReplicationError(.io, "s3: \(what): received \(receiver.count) of \(length) bytes " +
                    "(the object is shorter than its listed size \(size))")
            }
            client.recordGet(bytes: UInt64(length))
            return .success((buffer, length))
        } catch {
            if receiver.overflow {
                return .failure(ReplicationError(.io, "s3: \(what): more bytes than asked for " +
                    "(the object is larger than its listed size \(size), or the store ignored the Range header)"))
            }
            if let e = error as? ReplicationError { return .failure(e) }
            return .failure(ReplicationError(.io, "s3: \(what): \(error.oneLine)"))
        }
    }
}
