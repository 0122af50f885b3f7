#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// AWS credentials for signing S3 requests.
///
/// `description` never shows the secret or the session token (STYLE §4.3 item 5).
public struct AWSCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The access key ID (`AKIA…`).
    public var accessKeyID: String
    /// The secret access key; never logged.
    public var secretAccessKey: String
    /// The session token of temporary credentials (sent as `X-Amz-Security-Token`); never logged.
    public var sessionToken: String?
    /// Where the credentials came from (`replica config`, `environment`, `shared credentials file`).
    public var source: String

    /// Creates credentials.
    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, source: String = "static") {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.source = source
    }

    public var description: String { "AWS credentials from \(source)" }
    public var debugDescription: String { description }
}

/// AWS Signature Version 4 for S3 requests (header-based, signed payload).
///
/// Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
public struct SigV4Signer: Sendable {
    /// The signing credentials.
    public let credentials: AWSCredentials
    /// The region in the credential scope (`us-east-1`).
    public let region: String
    /// The service in the credential scope.
    public let service: String

    /// Creates a signer for `region` (service `s3`).
    public init(credentials: AWSCredentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The parts of a request that are signed.
    public struct Request: Sendable {
        /// HTTP method (`GET`, `PUT`, …).
        public var method: String
        /// The decoded absolute path (`/bucket/key with spaces`); each segment is URI-encoded once when signing.
        public var path: String
        /// Decoded query parameters; a nil value is a valueless parameter (`?delete`), canonicalised as `delete=`.
        public var query: [(String, String?)]
        /// Headers to sign and send; must include `host`.
        public var headers: [(String, String)]
        /// Lowercase hex SHA-256 of the payload.
        public var payloadSHA256: String

        /// Creates a request description.
        public init(method: String, path: String, query: [(String, String?)] = [], headers: [(String, String)],
                    payloadSHA256: String) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadSHA256 = payloadSHA256
        }
    }

    /// RFC 3986 encoding of the UTF-8 bytes of `s`: unreserved characters stay, everything else is `%XX`.
    /// - Parameters:
    ///   - s: the decoded string.
    ///   - keepSlash: whether `/` stays unencoded (path segments) or becomes `%2F` (query keys and values).
    public static func uriEncode(_ s: String, keepSlash: Bool) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                 UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: "/") where keepSlash:
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xf)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The canonical (and sent) form of a decoded path: each segment encoded once, `/` kept; empty ⇒ `/`.
    public static func canonicalURI(_ path: String) -> String {
        let p = path.hasPrefix("/") ? path : "/" + path
        return uriEncode(p, keepSlash: true)
    }

    /// The canonical (and sent) query string: encoded `key=value` pairs sorted by key, then value.
    public static func canonicalQuery(_ query: [(String, String?)]) -> String {
        query.map { (uriEncode($0.0, keepSlash: false), uriEncode($0.1 ?? "", keepSlash: false)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return pad(tm.tm_year + 1900, 4) + pad(tm.tm_mon + 1, 2) + pad(tm.tm_mday, 2) + "T" +
            pad(tm.tm_hour, 2) + pad(tm.tm_min, 2) + pad(tm.tm_sec, 2) + "Z"
    }

    /// Lowercased, trimmed, space-collapsed headers sorted by name; repeated names joined with `,`.
    static func canonicalHeaders(_ headers: [(String, String)]) -> [(String, String)] {
        var merged: [String: String] = [:]
        for (name, value) in headers {
            let n = name.lowercased()
            let v = value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                .trimmingCharacters(in: .whitespaces)
            merged[n] = merged[n].map { $0 + "," + v } ?? v
        }
        return merged.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// The canonical request of `request` once `x-amz-date`, `x-amz-content-sha256` (and the token) are added.
    public func canonicalRequest(_ request: Request, date: Date) -> String {
        canonicalParts(request, date: date).canonical
    }

    private func allHeaders(_ request: Request, amzDate: String) -> [(String, String)] {
        var h = request.headers.filter {
            let n = $0.0.lowercased()
            return n != "x-amz-date" && n != "x-amz-content-sha256" && n != "x-amz-security-token" && n != "authorization"
        }
        h.append(("x-amz-date", amzDate))
        h.append(("x-amz-content-sha256", request.payloadSHA256))
        if let token = credentials.sessionToken, !token.isEmpty { h.append(("x-amz-security-token", token)) }
        return h
    }

    private func canonicalParts(_ request: Request, date: Date)
        -> (canonical: String, signedHeaders: String, headers: [(String, String)], amzDate: String) {
        let amz = SigV4Signer.amzDate(date)
        let headers = allHeaders(request, amzDate: amz)
        let canon = SigV4Signer.canonicalHeaders(headers)
        let signed = canon.map { $0.0 }.joined(separator: ";")
        let text = [
            request.method.uppercased(),
            SigV4Signer.canonicalURI(request.path),
            SigV4Signer.canonicalQuery(request.query),
            canon.map { "\($0.0):\($0.1)\n" }.joined(),
            signed,
            request.payloadSHA256,
        ].joined(separator: "\n")
        return (text, signed, headers, amz)
    }

    /// `AWS4-HMAC-SHA256\n<amzDate>\n<scope>\n<hex sha256(canonical request)>`.
    public func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope(amzDate))\n" + Digest.hex(Digest.sha256(canonicalRequest))
    }

    private func scope(_ amzDate: String) -> String { "\(amzDate.prefix(8))/\(region)/\(service)/aws4_request" }

    /// The derived signing key `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
    func signingKey(day: String) -> [UInt8] {
        var k = Digest.hmacSHA256(key: Array(("AWS4" + credentials.secretAccessKey).utf8), data: Array(day.utf8))
        k = Digest.hmacSHA256(key: k, data: Array(region.utf8))
        k = Digest.hmacSHA256(key: k, data: Array(service.utf8))
        return Digest.hmacSHA256(key: k, data: Array("aws4_request".utf8))
    }

    /// Signs `request` at `date`.
    /// - Returns: the headers to send: the request's own plus `x-amz-date`, `x-amz-content-sha256`,
    ///   `x-amz-security-token` (when a session token is set) and `Authorization`.
    public func sign(_ request: Request, date: Date = Date()) -> [(String, String)] {
        let parts = canonicalParts(request, date: date)
        let sts = stringToSign(canonicalRequest: parts.canonical, amzDate: parts.amzDate)
        let sig = Digest.hex(Digest.hmacSHA256(key: signingKey(day: String(parts.amzDate.prefix(8))), data: Array(sts.utf8)))
        let auth = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(parts.amzDate)), " +
            "SignedHeaders=\(parts.signedHeaders), Signature=\(sig)"
        return parts.headers + [("Authorization", auth)]
    }
}
