#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Foundation
import Logging

/// A request body: nothing, a small in-memory buffer, or a byte range of an open file (streamed with
/// `CURLOPT_READFUNCTION`, never loaded into memory).
public enum HTTPBody: Sendable {
    case empty
    case bytes([UInt8])
    /// `length` bytes of the open descriptor `fd` starting at `offset`; the caller owns the descriptor.
    case file(fd: Int32, offset: UInt64, length: UInt64)

    var length: UInt64 {
        switch self {
        case .empty: return 0
        case .bytes(let b): return UInt64(b.count)
        case .file(_, _, let n): return n
        }
    }
}

/// Receives a response body as it arrives, on the thread running `performOnce` (it may block: that is the
/// backpressure). Used by the live-stream client.
public protocol HTTPStreamReceiver: AnyObject, Sendable {
    /// Called before the first body byte with the final status and headers; false aborts the transfer.
    func receiveHead(status: Int, headers: [(String, String)]) -> Bool
    /// Called with each piece of the body; false aborts the transfer (the receiver keeps its own error).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool
    /// Polled at least once a second while the transfer runs; true aborts it.
    func shouldStop() -> Bool
}

/// Where a response body goes.
public enum HTTPResponseSink: Sendable {
    /// Handed to a receiver piece by piece, never collected.
    case stream(any HTTPStreamReceiver)
    /// Kept in memory; more than `limit` bytes fails with `.responseTooLarge`.
    case memory(limit: Int)
    /// Written to the open descriptor `fd` from its start (it is truncated before every attempt).
    case file(fd: Int32)
}

/// One HTTP request, fully prepared (headers already signed).
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: HTTPBody

    /// Creates a request.
    public init(method: String, url: String, headers: [(String, String)], body: HTTPBody = .empty) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// A received response.
public struct HTTPResponse: Sendable {
    /// The HTTP status of the final response.
    public var status: Int
    /// Response headers in order (names as sent by the server).
    public var headers: [(String, String)]
    /// The body for a `.memory` sink (empty for `.file`).
    public var body: [UInt8]
    /// Body bytes received.
    public var bodyLength: UInt64

    /// The first header named `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.0.lowercased() == n }?.1
    }
}

/// Timeouts and retry policy of a `CurlHTTPClient`.
public struct CurlHTTPOptions: Sendable {
    /// `CURLOPT_CONNECTTIMEOUT_MS`.
    public var connectTimeout: Duration = .seconds(10)
    /// A transfer slower than 1 byte/s for this long is aborted (`CURLOPT_LOW_SPEED_TIME`).
    public var stallTimeout: Duration = .seconds(30)
    /// Whole-request limit (`CURLOPT_TIMEOUT_MS`); nil = none (large objects may take long).
    public var requestTimeout: Duration? = nil
    /// Disables TLS certificate and host name verification.
    public var skipVerify = false
    /// TCP keep-alive probes after this much idle time (nil: off), so a vanished peer is noticed.
    public var tcpKeepAlive: Duration? = nil
    /// Attempts per request, including the first.
    public var maxAttempts = 4
    /// Backoff before retry n (1-based) is uniformly random in `0 ... min(maxDelay, baseDelay * 2^(n-1))`.
    public var baseDelay: Duration = .milliseconds(200)
    /// Upper bound of one backoff.
    public var maxDelay: Duration = .seconds(5)

    /// Default options.
    public init() {}
}

/// A blocking HTTP client over libcurl easy handles.
///
/// Every call runs on the caller's thread (ReplicaClient methods run on dedicated dispatch queues, never the
/// cooperative pool). Idle easy handles are pooled, so a thread that makes several requests reuses one handle
/// and its keep-alive connection; concurrent callers each take their own handle.
public final class CurlHTTPClient: Sendable {
    /// Timeouts and retry policy.
    public let options: CurlHTTPOptions
    private let logger: Logger
    private let idle = Locked<[EasyHandle]>([])

    /// Creates a client. libcurl is loaded by the first transfer (`CurlLibrary.load`) if nothing loaded it before.
    public init(options: CurlHTTPOptions = CurlHTTPOptions(), logger: Logger = Logger(label: "replicationkit.http")) {
        self.options = options
        self.logger = logger
    }

    deinit {
        for h in idle.withLock({ $0 }) { rk_curl_easy_cleanup(h.raw) }
    }

    private func checkout() -> EasyHandle {
        if let h = idle.withLock({ $0.popLast() }) { return h }
        guard let raw = rk_curl_easy_init() else { fatalError("curl_easy_init failed: out of memory") }
        return EasyHandle(raw: raw)
    }

    private func checkin(_ h: EasyHandle) { idle.withLock { $0.append(h) } }

    /// Performs a request with retries: `make` is called before every attempt (so signatures are fresh) and the
    /// attempt is retried with jittered exponential backoff on connection errors, timeouts, 5xx and 429.
    ///
    /// - Parameters:
    ///   - sink: where the response body goes.
    ///   - make: builds the request for one attempt.
    /// - Returns: the final response, whatever its status (a 5xx/429 after the last attempt is returned, not thrown).
    /// - Throws: `CurlError` for transport failures after the last attempt, or local I/O errors.
    public func perform(sink: HTTPResponseSink, _ make: () throws -> HTTPRequest) throws -> HTTPResponse {
        var attempt = 1
        while true {
            let request = try make()
            let result: Result<HTTPResponse, CurlError>
            do {
                result = .success(try performOnce(request, sink: sink))
            } catch {
                result = .failure(error)
            }
            let retryable: String?
            switch result {
            case .success(let r) where r.status >= 500 || r.status == 429:
                retryable = "HTTP \(r.status)"
            case .success(let r):
                return r
            case .failure(let e):
                retryable = e.isRetryable ? e.message : nil
            }
            guard let reason = retryable, attempt < options.maxAttempts else { return try result.get() }
            let delay = backoff(attempt: attempt)
            logger.debug("http retry", metadata: [
                "http.method": "\(request.method)", "http.url": "\(request.url)", "http.attempt": "\(attempt)",
                "http.reason": "\(reason)", "http.delay_ms": "\(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)",
            ])
            sleep(delay)
            attempt += 1
        }
    }

    private func backoff(attempt: Int) -> Duration {
        let cap = min(options.maxDelay, options.baseDelay * (1 << min(attempt - 1, 20)))
        let capNanos = cap.components.seconds * 1_000_000_000 + cap.components.attoseconds / 1_000_000_000
        return .nanoseconds(capNanos > 0 ? Int64.random(in: 0...capNanos) : 0)
    }

    private func sleep(_ d: Duration) {
        var ts = timespec(tv_sec: Int(d.components.seconds), tv_nsec: Int(d.components.attoseconds / 1_000_000_000))
        var rest = timespec()
        while nanosleep(&ts, &rest) == -1 && errno == EINTR { ts = rest }
    }

    /// Performs one attempt (no retry).
    /// - Throws: `CurlError` (`.transport`, `.responseTooLarge`, `.io`).
    public func performOnce(_ request: HTTPRequest, sink: HTTPResponseSink) throws(CurlError) -> HTTPResponse {
        do { try CurlLibrary.load() } catch {
            throw CurlError(.transport, "\(request.method) \(request.url): \(error.message)", curlCode: CURLE_FAILED_INIT)
        }
        let handle = checkout()
        defer { checkin(handle) }
        let h = handle.raw
        rk_curl_easy_reset(h)

        let ctx = TransferContext(body: request.body, sink: sink)
        ctx.handle = h
        if case .file(let fd) = sink {
            if ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) < 0 {
                throw CurlError(.io, "\(request.method) \(request.url): truncate response file: \(String(cString: strerror(errno)))")
            }
        }
        var list: UnsafeMutablePointer<curl_slist>? = nil
        defer { rk_curl_slist_free_all(list) }
        for (name, value) in request.headers {
            list = rk_curl_slist_append(list, "\(name): \(value)")
        }
        // Without this curl waits up to 1 s for `100 Continue` before sending a body.
        list = rk_curl_slist_append(list, "Expect:")
        let unmanaged = Unmanaged.passRetained(ctx)
        defer { unmanaged.release() }
        let ud = unmanaged.toOpaque()

        var ok = true
        func set(_ r: CURLcode) { if r != CURLE_OK { ok = false } }
        set(rk_curl_setopt_string(h, CURLOPT_URL, request.url))
        set(rk_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
        set(rk_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Self.millis(options.connectTimeout)))
        set(rk_curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1))
        set(rk_curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(1, Self.millis(options.stallTimeout) / 1000)))
        if let t = options.requestTimeout { set(rk_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, Self.millis(t))) }
        if let k = options.tcpKeepAlive {
            let seconds = max(1, Self.millis(k) / 1000)
            set(rk_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1))
            set(rk_curl_setopt_long(h, CURLOPT_TCP_KEEPIDLE, seconds))
            set(rk_curl_setopt_long(h, CURLOPT_TCP_KEEPINTVL, max(1, seconds / 2)))
        }
        // Every transfer polls for an abort (`TransferAbort`, and a stream receiver's `shouldStop`).
        set(rk_curl_setopt_long(h, CURLOPT_NOPROGRESS, 0))
        set(rk_curl_setopt_xferinfo_function(h, curlProgressCallback))
        set(rk_curl_setopt_pointer(h, CURLOPT_XFERINFODATA, ud))
        if case .stream = sink {
            // Body bytes reach the receiver as soon as they arrive.
            set(rk_curl_setopt_long(h, CURLOPT_BUFFERSIZE, 256 * 1024))
        }
        if case .file = sink {
            // Downloads (restore) arrive in pieces of this size: one write(2) per 1 MiB instead of per 16 KiB.
            set(rk_curl_setopt_long(h, CURLOPT_BUFFERSIZE, 1 << 20))
        }
        if options.skipVerify {
            set(rk_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 0))
            set(rk_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 0))
        }
        set(rk_curl_setopt_slist(h, CURLOPT_HTTPHEADER, list))
        set(rk_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, ctx.errorBuffer))
        set(rk_curl_setopt_write_function(h, curlWriteCallback))
        set(rk_curl_setopt_pointer(h, CURLOPT_WRITEDATA, ud))
        set(rk_curl_setopt_header_function(h, curlHeaderCallback))
        set(rk_curl_setopt_pointer(h, CURLOPT_HEADERDATA, ud))
        let method = request.method.uppercased()
        switch (method, request.body) {
        case ("GET", .empty):
            break
        case ("HEAD", _):
            set(rk_curl_setopt_long(h, CURLOPT_NOBODY, 1))
        case (_, .empty) where method != "PUT" && method != "POST":
            set(rk_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method))
        default:
            // PUT/POST (and bodies of other methods) go through the upload path so the body is streamed.
            set(rk_curl_setopt_long(h, CURLOPT_UPLOAD, 1))
            set(rk_curl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.length)))
            set(rk_curl_setopt_read_function(h, curlReadCallback))
            set(rk_curl_setopt_pointer(h, CURLOPT_READDATA, ud))
            if method != "PUT" { set(rk_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)) }
        }
        // A rejected option is a programming error (misuse crashes, IO throws).
        precondition(ok, "curl_easy_setopt rejected an option")

        let rc = rk_curl_easy_perform(h)
        // The error buffer belongs to the context; detach it before the context goes away.
        _ = rk_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, nil)
        if let e = ctx.failure { throw CurlError(e.0, "\(request.method) \(request.url): \(e.1)") }
        guard rc == CURLE_OK else {
            let detail = ctx.errorText.isEmpty ? String(cString: rk_curl_easy_strerror(rc)) : ctx.errorText
            throw CurlError(.transport, "\(request.method) \(request.url): \(detail) (curl error \(rc.rawValue))",
                            curlCode: rc)
        }
        var status = 0
        _ = rk_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: ctx.headers, body: ctx.memory, bodyLength: ctx.received)
    }

    private static func millis(_ d: Duration) -> Int {
        Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }
}

/// An owned `CURL *` easy handle.
// @unchecked: a handle is used by one thread at a time (checked out of the pool under its lock).
private struct EasyHandle: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
}

/// Per-transfer state shared with the C callbacks through `CURLOPT_*DATA`.
private final class TransferContext {
    let body: HTTPBody
    let sink: HTTPResponseSink
    var bodySent: UInt64 = 0
    var memory: [UInt8] = []
    var received: UInt64 = 0
    var headers: [(String, String)] = []
    var failure: (CurlError.Code, String)?
    var headDelivered = false
    /// The easy handle, for `curl_easy_getinfo` inside callbacks.
    var handle: UnsafeMutableRawPointer?
    let errorBuffer: UnsafeMutablePointer<CChar>

    init(body: HTTPBody, sink: HTTPResponseSink) {
        self.body = body
        self.sink = sink
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit { errorBuffer.deallocate() }

    var errorText: String { String(cString: errorBuffer) }
}

private func curlWriteCallback(_ ptr: UnsafeMutablePointer<CChar>, _ size: Int, _ n: Int,
                               _ ud: UnsafeMutableRawPointer?) -> Int {
    let ctx = Unmanaged<TransferContext>.fromOpaque(ud!).takeUnretainedValue()
    let count = size * n
    switch ctx.sink {
    case .memory(let limit):
        guard ctx.memory.count + count <= limit else {
            ctx.failure = (.responseTooLarge, "response body larger than \(limit) bytes")
            return 0
        }
        ctx.memory.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: count))
    case .stream(let receiver):
        if !ctx.headDelivered {
            ctx.headDelivered = true
            var status = 0
            _ = rk_curl_getinfo_long(ctx.handle!, CURLINFO_RESPONSE_CODE, &status)
            guard receiver.receiveHead(status: status, headers: ctx.headers) else {
                ctx.failure = (.aborted, "response rejected")
                return 0
            }
        }
        guard receiver.receive(UnsafeRawBufferPointer(start: ptr, count: count)) else {
            ctx.failure = (.aborted, "body rejected")
            return 0
        }
    case .file(let fd):
        var done = 0
        while done < count {
            let w = write(fd, ptr + done, count - done)
            if w < 0 {
                if errno == EINTR { continue }
                ctx.failure = (.io, "write response file: \(String(cString: strerror(errno)))")
                return 0
            }
            done += w
        }
    }
    ctx.received += UInt64(count)
    return count
}

private func curlHeaderCallback(_ ptr: UnsafeMutablePointer<CChar>, _ size: Int, _ n: Int,
                                _ ud: UnsafeMutableRawPointer?) -> Int {
    let ctx = Unmanaged<TransferContext>.fromOpaque(ud!).takeUnretainedValue()
    let count = size * n
    let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: count), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    if line.hasPrefix("HTTP/") {
        ctx.headers = []  // a new response (after 100 Continue or a redirect) starts
    } else if let colon = line.firstIndex(of: ":") {
        ctx.headers.append((String(line[..<colon]),
                            line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
    }
    return count
}

private func curlReadCallback(_ ptr: UnsafeMutablePointer<CChar>, _ size: Int, _ n: Int,
                              _ ud: UnsafeMutableRawPointer?) -> Int {
    let ctx = Unmanaged<TransferContext>.fromOpaque(ud!).takeUnretainedValue()
    let want = size * n
    let remaining = ctx.body.length - ctx.bodySent
    let count = Int(min(UInt64(want), remaining))
    guard count > 0 else { return 0 }
    switch ctx.body {
    case .empty:
        return 0
    case .bytes(let b):
        b.withUnsafeBytes { src in
            UnsafeMutableRawPointer(ptr).copyMemory(from: src.baseAddress! + Int(ctx.bodySent), byteCount: count)
        }
    case .file(let fd, let offset, _):
        var r: Int
        repeat { r = pread(fd, ptr, count, off_t(offset + ctx.bodySent)) } while r < 0 && errno == EINTR
        if r <= 0 {
            ctx.failure = (.io, r < 0 ? "read request body: \(String(cString: strerror(errno)))"
                                      : "read request body: file shorter than expected")
            return Int(CURL_READFUNC_ABORT)
        }
        ctx.bodySent += UInt64(r)
        return r
    }
    ctx.bodySent += UInt64(count)
    return count
}

private func curlProgressCallback(_ ud: UnsafeMutableRawPointer?, _ dlTotal: curl_off_t, _ dlNow: curl_off_t,
                                  _ ulTotal: curl_off_t, _ ulNow: curl_off_t) -> Int32 {
    let ctx = Unmanaged<TransferContext>.fromOpaque(ud!).takeUnretainedValue()
    if let reason = TransferAbort.reasonToStop() {
        ctx.failure = (.aborted, "aborted: \(reason)")
        return 1
    }
    if case .stream(let receiver) = ctx.sink, receiver.shouldStop() {
        ctx.failure = (.aborted, "stopped")
        return 1
    }
    return 0
}
