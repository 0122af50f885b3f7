#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Azure Storage SharedKey signing (https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key):
/// HMAC-SHA256, under the base64-decoded account key, of the verb, the standard headers, the canonicalised
/// `x-ms-*` headers and the canonicalised resource.
struct AzureSharedKeySigner: Sendable {
    /// The storage account name (the first element of the canonicalised resource).
    let account: String
    /// The decoded account key; never logged.
    private let key: [UInt8]

    /// Standard headers in string-to-sign order (the `Range` slot stays empty: we send `x-ms-range` when needed).
    static let standardHeaders = ["content-encoding", "content-language", "content-length", "content-md5",
                                  "content-type", "date", "if-modified-since", "if-match", "if-none-match",
                                  "if-unmodified-since", "range"]

    /// Creates a signer.
    /// - Throws: `ReplicationError(.config)` when `base64Key` is not base64 (the key itself is not shown).
    init(account: String, base64Key: String) throws {
        guard let data = Data(base64Encoded: base64Key.trimmingCharacters(in: .whitespacesAndNewlines)), !data.isEmpty else {
            throw ReplicationError(.config, "abs replica: account-key for account \"\(account)\" is not valid base64")
        }
        self.account = account
        key = Array(data)
    }

    /// The string to sign.
    /// - Parameters:
    ///   - method: HTTP verb.
    ///   - encodedPath: the request path exactly as sent (percent-encoded), e.g. `/devstoreaccount1/c/b`.
    ///   - query: decoded query parameters (names and values unescaped).
    ///   - headers: every header that is sent (names in any case); `Content-Length` of 0 counts as empty.
    static func stringToSign(account: String, method: String, encodedPath: String, query: [(String, String)],
                             headers: [(String, String)]) -> String {
        var standard: [String: String] = [:]
        var msHeaders: [(String, String)] = []
        for (name, value) in headers {
            let n = name.lowercased()
            if n.hasPrefix("x-ms-") { msHeaders.append((n, value.trimmingCharacters(in: .whitespaces))) } else { standard[n] = value }
        }
        if standard["content-length"] == "0" { standard["content-length"] = nil }
        var s = method.uppercased() + "\n"
        for h in standardHeaders { s += (standard[h] ?? "") + "\n" }
        for (n, v) in msHeaders.sorted(by: { $0.0 < $1.0 }) { s += n + ":" + v + "\n" }
        s += "/" + account + (encodedPath.isEmpty ? "/" : encodedPath)
        // Parameters sorted by lowercased name; repeated names joined with "," (values sorted), values unescaped.
        var grouped: [String: [String]] = [:]
        for (n, v) in query { grouped[n.lowercased(), default: []].append(v) }
        for n in grouped.keys.sorted() { s += "\n" + n + ":" + grouped[n]!.sorted().joined(separator: ",") }
        return s
    }

    /// The `Authorization` header value for a string to sign.
    func authorization(stringToSign: String) -> String {
        let mac = Digest.hmacSHA256(key: key, data: Array(stringToSign.utf8))
        return "SharedKey \(account):" + Digest.base64(mac)
    }
}

/// RFC 1123 dates as Azure uses them (`x-ms-date`, `Last-Modified`, `Creation-Time`).
enum AzureDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `Thu, 26 Nov 2026 19:10:00 GMT`.
    static func format(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) " +
            "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }

    /// Parses `Thu, 26 Nov 2026 19:10:00 GMT` (the weekday is optional); nil when malformed.
    static func parse(_ s: String) -> Date? {
        var parts = s.split(separator: " ").map(String.init)
        if parts.first?.hasSuffix(",") == true { parts.removeFirst() }
        guard parts.count >= 4, let d = Int32(parts[0]), let mi = months.firstIndex(of: parts[1]), let y = Int32(parts[2])
        else { return nil }
        let hms = parts[3].split(separator: ":").compactMap { Int32($0) }
        guard hms.count == 3 else { return nil }
        var t = tm()
        t.tm_year = y - 1900; t.tm_mon = Int32(mi); t.tm_mday = d
        t.tm_hour = hms[0]; t.tm_min = hms[1]; t.tm_sec = hms[2]
        return Date(timeIntervalSince1970: Double(timegm(&t)))
    }
}

/// Removal of secrets from text that may reach a log or an error: the account key, SAS signatures (`sig=…` in any
/// URL or token, whatever its value), bearer tokens.
enum AzureRedaction {
    /// `text` on one line, with every `secret` and every `sig=` value replaced by `[redacted]`.
    static func scrub(_ text: String, secrets: [String]) -> String {
        var t = text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        for s in secrets where s.count >= 4 { t = t.replacingOccurrences(of: s, with: "[redacted]") }
        return redactSig(t)
    }

    /// Replaces the value after every `sig=` (case-insensitive) up to `&`, whitespace or a quote.
    static func redactSig(_ text: String) -> String {
        let u = Array(text.utf8)
        guard u.count >= 4 else { return text }
        var out = [UInt8]()
        out.reserveCapacity(u.count)
        var i = 0
        func lower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b + 32 : b }
        while i < u.count {
            if i + 4 <= u.count, lower(u[i]) == UInt8(ascii: "s"), lower(u[i + 1]) == UInt8(ascii: "i"),
               lower(u[i + 2]) == UInt8(ascii: "g"), u[i + 3] == UInt8(ascii: "="),
               i == 0 || !(u[i - 1].isASCIILetterOrDigit) {
                out += Array("sig=[redacted]".utf8)
                i += 4
                let stops: Set<UInt8> = [UInt8(ascii: "&"), UInt8(ascii: " "), UInt8(ascii: "\""), UInt8(ascii: "'"),
                                         UInt8(ascii: "\t"), UInt8(ascii: ")"), UInt8(ascii: ">"), UInt8(ascii: "<")]
                while i < u.count, !stops.contains(u[i]) { i += 1 }
                continue
            }
            out.append(u[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}

private extension UInt8 {
    var isASCIILetterOrDigit: Bool {
        (self >= 48 && self <= 57) || (self >= 65 && self <= 90) || (self >= 97 && self <= 122)
    }
}
