import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A response to a plain (non-streaming) request.
public struct SimpleHTTPResponse: Error, Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: [UInt8]

    /// Creates a response.
    public init(status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// A plain-text error in Go's `http.Error` shape: `<message>\n`, text/plain, nosniff.
    public static func text(_ status: HTTPResponseStatus, _ message: String) -> SimpleHTTPResponse {
        SimpleHTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array((message + "\n").utf8))
    }
}

/// What the server does with each request; everything here runs off the event loop.
public protocol HTTPRoutes: Sendable {
    /// Answers a request that is not a `/stream` request (metrics, health, 404s). May block.
    func respond(method: HTTPMethod, path: String, query: [String: String]) -> SimpleHTTPResponse
    /// Takes over a `/stream` request on `channel` (the response is written by the returned session).
    func stream(query: [String: String], channel: any Channel) -> SimpleHTTPResponse?
    /// Answers a request now or later: `complete` is called exactly once, from any thread (`POST /sync -wait`
    /// answers when the replicas caught up, without holding a thread meanwhile). The default calls `respond`.
    func respond(method: HTTPMethod, path: String, query: [String: String],
                 complete: @escaping @Sendable (SimpleHTTPResponse) -> Void)
}

extension HTTPRoutes {
    public func respond(method: HTTPMethod, path: String, query: [String: String],
                        complete: @escaping @Sendable (SimpleHTTPResponse) -> Void) {
        complete(respond(method: method, path: path, query: query))
    }
}

/// Bounds on what clients of the HTTP server may hold, so the port can never take the descriptors or threads
/// that replication needs (idle sockets, request headers never finished, a flood of connections).
public struct HTTPServerLimits: Sendable {
    /// Connections open at once; more are closed as soon as they are accepted. `/stream` sessions count too.
    public var maxConnections = 256
    /// Time from the connection's start to a complete request head (slow or never-finished headers are closed).
    public var headerTimeout: Duration = .seconds(10)
    /// Time a kept-alive connection may wait for its next request.
    public var idleTimeout: Duration = .seconds(60)

    /// Default limits.
    public init() {}
}

/// The HTTP/1.1 server behind `-addr`: `/stream`, `/metrics`, `/healthz`, `/readyz`, `/status`, `/sync` (SwiftNIO, one
/// event loop).
///
/// The event loop only parses and writes; anything that reads files or SQLite runs on `work`, a serial
/// dispatch queue, or on the stream sessions' own queues.
public final class HTTPServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    /// The address actually bound (port 0 resolved).
    public let boundPort: Int
    /// The host part of the address as given (empty for all interfaces).
    public let host: String

    /// Binds `address` (`host:port`, `:port`); throws the listen error in Go's wording.
    public init(address: String, routes: any HTTPRoutes, limits: HTTPServerLimits = HTTPServerLimits(),
                logger: Logger) throws {
        let (host, port) = try HTTPServer.split(address)
        self.host = host
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let work = DispatchQueue(label: "launcher.http.work")
        let registry = ConnectionRegistry(max: limits.maxConnections)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPRequestHandler(routes: routes, work: work, limits: limits, registry: registry,
                                           logger: logger))
                }
            }
        do {
            channel = try bootstrap.bind(host: host.isEmpty ? "0.0.0.0" : host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            // Go's wording: `listen tcp 127.0.0.1:9090: bind: address already in use`.
            let cause = (error as? IOError).map { "bind: " + String(cString: strerror($0.errnoCode)).lowercased() }
                ?? "\(error)"
            throw ReplicationError(.io, "cannot start http server: listen tcp \(address): \(cause)")
        }
        self.group = group
        self.boundPort = channel.localAddress?.port ?? port
    }

    /// `http://host:port` as logged (empty host shows as `localhost`).
    public var url: String { "http://\(host.isEmpty ? "localhost" : host):\(boundPort)" }

    /// Closes the listener and every connection.
    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// Splits `host:port` as Go's `net.Listen` needs it; a missing port is an error.
    static func split(_ address: String) throws -> (String, Int) {
        var host = Substring(address), portText = Substring("")
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            host = address[address.index(after: address.startIndex)..<close]
            let rest = address[address.index(after: close)...]
            guard rest.hasPrefix(":") else {
                throw ReplicationError(.invalidInput, "cannot start http server: listen tcp: address \(address): missing port in address")
            }
            portText = rest.dropFirst()
        } else {
            guard let colon = address.lastIndex(of: ":") else {
                throw ReplicationError(.invalidInput, "cannot start http server: listen tcp: address \(address): missing port in address")
            }
            host = address[..<colon]
            portText = address[address.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ReplicationError(.invalidInput, "cannot start http server: listen tcp: address \(address): invalid port")
        }
        return (String(host), port)
    }
}

/// Parses each request and hands it to the routes; one instance per connection, used on its event loop.
final class HTTPRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let routes: any HTTPRoutes
    private let work: DispatchQueue
    private let limits: HTTPServerLimits
    private let registry: ConnectionRegistry
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var streaming = false
    /// Closes the connection unless a request head arrives in time (armed while waiting for one).
    private var deadline: Scheduled<Void>?

    init(routes: any HTTPRoutes, work: DispatchQueue, limits: HTTPServerLimits, registry: ConnectionRegistry,
         logger: Logger) {
        self.routes = routes
        self.work = work
        self.limits = limits
        self.registry = registry
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        guard registry.admit(context.channel) else {
            logger.debug("http: \(registry.max) connections busy; closing a new one")
            context.close(promise: nil)
            return
        }
        arm(context, limits.headerTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        registry.remove(context.channel)
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    /// Waits `timeout` for the next request head, then closes the connection.
    private func arm(_ context: ChannelHandlerContext, _ timeout: Duration) {
        deadline?.cancel()
        registry.setIdle(context.channel, true)
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.timeInterval * 1e9))) {
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // A response was written completely: the connection now waits for its next request, idle-bounded.
        if event is ResponseCompleted, !streaming {
            arm(context, limits.idleTimeout)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            deadline?.cancel()
            deadline = nil
            registry.setIdle(context.channel, false)
            head = h
        case .body:
            break
        case .end:
            guard let h = head, !streaming else { return }
            head = nil
            handle(h, channel: context.channel)
        }
    }

    private func handle(_ h: HTTPRequestHead, channel: any Channel) {
        let (path, query) = Self.parseURI(h.uri)
        let keepAlive = h.isKeepAlive
        let version = h.version
        if path == "/stream" {
            guard h.method == .GET else {
                Self.write(.text(.methodNotAllowed, "Method not allowed"), to: channel, version: version, keepAlive: keepAlive)
                return
            }
            // From here on the session owns the response; further input on this connection is ignored.
            streaming = true
            let routes = self.routes
            work.async {
                if let failure = routes.stream(query: query, channel: channel) {
                    Self.write(failure, to: channel, version: version, keepAlive: false)
                }
            }
            return
        }
        let routes = self.routes
        let method = h.method
        // The answer comes back through a promise of the connection's event loop, which also writes it.
        let answer = channel.eventLoop.makePromise(of: SimpleHTTPResponse.self)
        answer.futureResult.whenSuccess { Self.write($0, to: channel, version: version, keepAlive: keepAlive) }
        work.async {
            routes.respond(method: method, path: path, query: query) { answer.succeed($0) }
        }
    }

    /// Writes a whole response; closes the connection afterwards unless it is kept alive.
    static func write(_ r: SimpleHTTPResponse, to channel: any Channel, version: HTTPVersion, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: r.contentType)
        headers.add(name: "Content-Length", value: String(r.body.count))
        if r.contentType.hasPrefix("text/plain") { headers.add(name: "X-Content-Type-Options", value: "nosniff") }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        var buffer = channel.allocator.buffer(capacity: r.body.count)
        buffer.writeBytes(r.body)
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: r.status, headers: headers)),
                      promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
        let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if keepAlive {
            done.whenSuccess { channel.pipeline.fireUserInboundEventTriggered(ResponseCompleted()) }
        } else {
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// Splits a request target into its path and decoded query parameters (the last value of a repeated name wins).
    static func parseURI(_ uri: String) -> (String, [String: String]) {
        guard let c = URLComponents(string: uri) else {
            let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
            return (path, [:])
        }
        var query: [String: String] = [:]
        for item in c.queryItems ?? [] { query[item.name] = item.value ?? "" }
        return (c.path, query)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("http connection error: \(error)")
        context.close(promise: nil)
    }
}

/// Told to the request handler when a response has been written completely.
struct ResponseCompleted: Sendable {}

/// The server's open connections, in order of when each last became idle (waiting for a request head).
///
/// At the cap a new connection evicts the connection idle the longest, so idle or slow clients can never lock
/// out a health check (which sends its request at once); only when every connection is busy (a `/stream`
/// session, a request being answered) is the new one refused.
final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        /// Idle connections, oldest first.
        var idle: [ObjectIdentifier] = []
    }
    private let state = Locked(State())
    let max: Int

    init(max: Int) { self.max = max }

    /// Admits `channel`; false when it must be closed. An evicted idle connection is closed here.
    func admit(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let (ok, evicted): (Bool, (any Channel)?) = state.withLock { s in
            var evicted: (any Channel)?
            if s.channels.count >= max {
                guard !s.idle.isEmpty else { return (false, nil) }
                let old = s.idle.removeFirst()
                evicted = s.channels.removeValue(forKey: old)
            }
            s.channels[id] = channel
            s.idle.append(id)
            return (true, evicted)
        }
        evicted?.close(promise: nil)
        return ok
    }

    /// Marks a connection idle (waiting for a request) or busy.
    func setIdle(_ channel: any Channel, _ idle: Bool) {
        let id = ObjectIdentifier(channel)
        state.withLock { s in
            guard s.channels[id] != nil else { return }
            s.idle.removeAll { $0 == id }
            if idle { s.idle.append(id) }
        }
    }

    /// Forgets a closed connection.
    func remove(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        state.withLock { s in
            s.channels.removeValue(forKey: id)
            s.idle.removeAll { $0 == id }
        }
    }

    /// Connections currently open (for tests).
    var count: Int { state.withLock { $0.channels.count } }
}
