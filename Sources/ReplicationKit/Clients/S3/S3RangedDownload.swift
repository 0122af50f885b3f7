import Foundation

extension S3ReplicaClient {
    /// Size of one ranged GET of a snapshot download (with `downloadConnections`, 16 MiB of ranges in memory).
    static let downloadRangeSize = 4 << 20
    /// Ranged GETs of one snapshot in flight at once (each holds one range in memory).
    static let downloadConnections = 4

    /// Opens a snapshot as parallel ranged GETs (`downloadConnections` at a time, `downloadRangeSize` each)
    /// handed out in order as they arrive, so decoding starts with the first bytes and nothing is staged on disk. A range whose
    /// connection drops is fetched again (the client's retry policy, fresh credentials at every attempt).
    /// Nil when the listing gave no size; `openSnapshot` then downloads the object in one GET.
    public func openSnapshotRanged(_ snapshot: SnapshotInfo) throws -> (any ByteSource)? {
        guard snapshot.size > 0 else { return nil }
        return S3RangedSource(client: self, key: key(objectName(snapshot: snapshot)), size: snapshot.size,
                              rangeSize: Self.downloadRangeSize, connections: Self.downloadConnections)
    }
}

/// Receives one range into a preallocated buffer and publishes how much of it is there, so the reader can start
/// on a range before it is complete. A retried attempt (the connection dropped) starts over at the range's start
/// but only appends past what earlier attempts delivered, so bytes already handed out are never rewritten. A
/// non-2xx body is kept (up to 64 KiB) for the error message.
final class S3RangeReceiver: HTTPStreamReceiver, @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer
    /// Bytes of the range in `buffer` (the most any attempt delivered).
    private(set) var available = 0
    private(set) var status = 0
    private(set) var overflow = false
    private(set) var errorBody: [UInt8] = []
    private var attemptBytes = 0
    private let publish: @Sendable (Int) -> Void
    private let stop: @Sendable () -> Bool

    init(buffer: UnsafeMutableRawBufferPointer, publish: @escaping @Sendable (Int) -> Void,
         stop: @escaping @Sendable () -> Bool) {
        self.buffer = buffer
        self.publish = publish
        self.stop = stop
    }

    func receiveHead(status: Int, headers: [(String, String)]) -> Bool {
        self.status = status
        attemptBytes = 0
        errorBody = []
        return true
    }

    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard (200..<300).contains(status) else {
            errorBody.append(contentsOf: bytes.prefix(max(0, (64 << 10) - errorBody.count)))
            return true
        }
        let end = attemptBytes + bytes.count
        guard end <= buffer.count else {
            overflow = true
            return false
        }
        if end > available {
            let from = max(attemptBytes, available)
            (buffer.baseAddress! + from).copyMemory(from: bytes.baseAddress! + (from - attemptBytes), byteCount: end - from)
            available = end
            publish(end)
        }
        attemptBytes = end
        return true
    }

    func shouldStop() -> Bool { stop() }
}

/// An S3 object read as consecutive ranges fetched by a few threads ahead of the reader; the reader consumes a
/// range while it arrives.
///
/// At most `connections` ranges are in memory (being fetched, or being read). The error of a range is delivered
/// when the reader reaches it. `close()` stops and joins the fetchers. A fetcher wakes the reader only when it
/// sleeps on the range that fetcher fills and what it asked for (up to `wakeStep`) has arrived; progress on ranges
/// further ahead is seen when the reader gets there.
final class S3RangedSource: ByteSource, @unchecked Sendable {
    private struct Slot {
        var buffer: UnsafeMutableRawBufferPointer
        var available = 0
        /// nil while the range is being fetched; then its length, or its error.
        var result: Result<Int, ReplicationError>?
    }

    private let client: S3ReplicaClient
    private let key: String
    private let size: UInt64
    private let rangeSize: Int
    private let rangeCount: Int

    private let cond = NSCondition()
    private var free: [UnsafeMutableRawBufferPointer] = []
    private var slots: [Int: Slot] = [:]
    private var nextFetch = 0
    private var running = 0
    private var cancelled = false
    private var nextRead = 0
    private var position = 0
    private var failure: ReplicationError?
    /// The reader sleeps until the range it reads (`nextRead`) holds `wakeAt` bytes or ends: only then does a
    /// fetcher wake it.
    private var readerWaiting = false
    private var wakeAt = 1
    /// The most a sleeping reader waits for before it is woken (it asked for fewer bytes, or the range ends, sooner).
    static let wakeStep = 1 << 20

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
        cond.lock()
        while true {
            if let failure { cond.unlock(); throw failure }
            if cancelled {
                cond.unlock()
                throw ReplicationError(.cancelled, "s3: GET \(client.s3.bucket)/\(key): download cancelled")
            }
            guard nextRead < rangeCount, buffer.count > 0 else { cond.unlock(); return 0 }
            guard let slot = slots[nextRead] else { waitAsReader(until: 1); continue }
            if position < slot.available {
                // Bytes below `available` are never written again: copy them without the lock.
                let n = min(buffer.count, slot.available - position)
                let from = slot.buffer.baseAddress! + position
                position += n
                cond.unlock()
                buffer.baseAddress!.copyMemory(from: from, byteCount: n)
                return n
            }
            switch slot.result {
            case nil:
                waitAsReader(until: position + min(buffer.count, Self.wakeStep))
            case .failure(let e)?:
                failure = e
                cancelled = true
                cond.broadcast()
                cond.unlock()
                throw e
            case .success?:
                free.append(slot.buffer)
                slots.removeValue(forKey: nextRead)
                nextRead += 1
                position = 0
                cond.broadcast()
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
        for slot in slots.values { slot.buffer.deallocate() }
        slots.removeAll()
        cond.unlock()
    }

    /// Waits (lock held) until range `nextRead` holds `available` bytes, or it ends, or anything else changes.
    private func waitAsReader(until available: Int) {
        wakeAt = available
        readerWaiting = true
        cond.wait()
        readerWaiting = false
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
            slots[k] = Slot(buffer: buffer)
            cond.unlock()
            let result = fetch(k, into: buffer)
            cond.lock()
            slots[k]?.result = result
            cond.broadcast()
        }
        running -= 1
        cond.broadcast()
        cond.unlock()
    }

    private func fetch(_ k: Int, into buffer: UnsafeMutableRawBufferPointer) -> Result<Int, ReplicationError> {
        let start = UInt64(k) * UInt64(rangeSize)
        let length = Int(min(UInt64(rangeSize), size - start))
        let last = start + UInt64(length) - 1
        let what = "GET \(client.s3.bucket)/\(key) bytes \(start)-\(last)"
        let receiver = S3RangeReceiver(buffer: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]),
                                       publish: { [weak self] n in self?.publish(k, n) },
                                       stop: { [weak self] in self?.isCancelled ?? true })
        do {
            let resp = try client.send("GET", key: key, headers: [("Range", "bytes=\(start)-\(last)")],
                                       sink: .stream(receiver), what: what)
            guard resp.status == 206 || (resp.status == 200 && start == 0 && UInt64(length) == size) else {
                throw ReplicationError(.io, "s3: \(what): HTTP \(resp.status) instead of 206 (the store ignored the Range header)")
            }
            guard receiver.available == length else {
                throw ReplicationError(.io, "s3: \(what): received \(receiver.available) of \(length) bytes " +
                    "(the object is shorter than its listed size \(size))")
            }
            client.recordGet(bytes: UInt64(length))
            return .success(length)
        } catch {
            if receiver.overflow {
                return .failure(ReplicationError(.io, "s3: \(what): more bytes than asked for " +
                    "(the object is larger than its listed size \(size), or the store ignored the Range header)"))
            }
            if let e = error as? ReplicationError { return .failure(e) }
            return .failure(ReplicationError(.io, "s3: \(what): \(error.oneLine)"))
        }
    }

    private func publish(_ k: Int, _ available: Int) {
        cond.lock()
        slots[k]?.available = available
        // Fetchers only wait for a free buffer, never for each other's progress: wake nobody unless the reader
        // sleeps on this very range and what it waits for is there (a wake-up per curl write callback cost more
        // CPU than the copies). The end of a range always wakes it (`fetchLoop`).
        if k == nextRead && readerWaiting && available >= wakeAt { cond.broadcast() }
        cond.unlock()
    }
}
