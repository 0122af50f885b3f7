import CCurl
import Foundation

/// The client side of a running launcher's HTTP server (`launcher status -addr`, `launcher sync`).
public struct LauncherClient: Sendable {
    /// The address as given (`host:port`, `:port`), for messages.
    public let address: String
    /// `http://host:port` to connect to.
    public let baseURL: String

    /// A client of the launcher listening on `address` (its `-addr`): an empty host or a wildcard one
    /// (`0.0.0.0`, `[::]`) is reached on the loopback.
    /// - Throws: `.invalidInput` when `address` is not `host:port`.
    public init(address: String) throws {
        self.address = address
        if address.hasPrefix("http://") || address.hasPrefix("https://") {
            baseURL = String(address.reversed().drop { $0 == "/" }.reversed())
            return
        }
        let (host, port): (String, Int)
        do { (host, port) = try HTTPServer.split(address) } catch {
            throw ReplicationError(.invalidInput, "-addr \(goQuote(address)): expected host:port (or :port) of the running launcher's -addr")
        }
        guard port > 0 else { throw ReplicationError(.invalidInput, "-addr \(address): port 0 is not the address of a running launcher; give the port it bound") }
        switch host {
        case "", "0.0.0.0": baseURL = "http://127.0.0.1:\(port)"
        case "::": baseURL = "http://[::1]:\(port)"
        default: baseURL = host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
        }
    }

    /// Sends one request (no retry) and returns the status and body.
    /// - Throws: `.io` naming the address and `-addr` when nothing answers there, or naming the URL for other failures.
    public func request(_ method: String, _ pathAndQuery: String, timeout: Duration) throws -> (status: Int, body: [UInt8]) {
        var options = CurlHTTPOptions()
        options.maxAttempts = 1
        options.connectTimeout = .seconds(5)
        options.requestTimeout = timeout
        let client = CurlHTTPClient(options: options)
        let url = baseURL + pathAndQuery
        try CurlLibrary.load(for: "\(method) \(url)")
        do {
            let r = try client.performOnce(HTTPRequest(method: method, url: url, headers: [("Content-Length", "0")]),
                                           sink: .memory(limit: 64 << 20))
            return (r.status, r.body)
        } catch {
            if error.code == .transport, error.curlCode == CURLE_COULDNT_CONNECT || error.curlCode == CURLE_COULDNT_RESOLVE_HOST {
                throw ReplicationError(.io, "no launcher answers at \(address) (\(baseURL)): \(error.message); "
                    + "-addr must match the -addr (or addr:) of the running launcher")
            }
            if error.code == .transport, error.curlCode == CURLE_OPERATION_TIMEDOUT {
                throw ReplicationError(.io, "\(method) \(url): no answer within \(GoDuration.format(timeout)): \(error.message)")
            }
            throw ReplicationError(.io, "\(method) \(url): \(error.message)")
        }
    }
}
