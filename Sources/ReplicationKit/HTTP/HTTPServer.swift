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
}

/// The HTTP/1.1 server behind `-addr`: `/stream`, `/metrics`, `/healthz`, `/readyz` (SwiftNIO, one event loop).
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
    public init(address: String, routes: any HTTPRoutes, logger: Logger) throws {
        let (host, port) = try HTTPServer.split(address)
        self.host = host
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let work = DispatchQueue(label: "launcher.http.work")
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPRequestHandler(routes: routes, work: work, logger: logger))
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
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var streaming = false

    init(routes: any HTTPRoutes, work: DispatchQueue, logger: Logger) {
        self.routes = routes
        self.work = work
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
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
        work.async {
            let response = routes.respond(method: method, path: path, query: query)
            Self.write(response, to: channel, version: version, keepAlive: keepAlive)
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
        if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
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
