import CCurl

/// A failed HTTP exchange: a libcurl transport error (CURLcode plus `CURLOPT_ERRORBUFFER` text), an HTTP status
/// with the provider's error code, or a local I/O failure of a body file.
///
/// Messages name the method and URL (never credentials: requests are signed in headers, which are never shown).
public struct CurlError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure.
    public enum Code: Sendable, Equatable {
        /// libcurl failed (connect, TLS, timeout, reset, …).
        case transport
        /// The server answered with a non-success HTTP status.
        case http
        /// The response body exceeded the in-memory bound.
        case responseTooLarge
        /// Reading the request body or writing the response file failed.
        case io
        /// A stream receiver rejected the response or asked to stop.
        case aborted
    }

    /// What went wrong.
    public let code: Code
    /// One line for the user, without secrets.
    public let message: String
    /// The libcurl result for `.transport`.
    public let curlCode: CURLcode?
    /// The HTTP status for `.http`.
    public let httpStatus: Int?
    /// Where the error was created.
    public let file: String
    /// Where the error was created.
    public let line: Int

    /// Creates an error.
    public init(_ code: Code, _ message: String, curlCode: CURLcode? = nil, httpStatus: Int? = nil,
                file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.curlCode = curlCode
        self.httpStatus = httpStatus
        self.file = file
        self.line = line
    }

    public var description: String { message }

    /// Whether another attempt may succeed: connection errors, timeouts, 5xx and 429.
    public var isRetryable: Bool {
        switch code {
        case .transport:
            guard let c = curlCode else { return false }
            return CurlError.retryableCodes.contains(c.rawValue)
        case .http:
            guard let s = httpStatus else { return false }
            return s >= 500 || s == 429
        case .responseTooLarge, .io, .aborted:
            return false
        }
    }

    static let retryableCodes: Set<UInt32> = [
        CURLE_COULDNT_RESOLVE_HOST.rawValue, CURLE_COULDNT_CONNECT.rawValue, CURLE_OPERATION_TIMEDOUT.rawValue,
        CURLE_SEND_ERROR.rawValue, CURLE_RECV_ERROR.rawValue, CURLE_GOT_NOTHING.rawValue,
        CURLE_PARTIAL_FILE.rawValue, CURLE_SSL_CONNECT_ERROR.rawValue, CURLE_HTTP2.rawValue,
        CURLE_HTTP2_STREAM.rawValue, CURLE_WEIRD_SERVER_REPLY.rawValue,
    ]
}
