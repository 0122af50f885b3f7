/// Replica URL helpers (`s3://bucket/path`, `file:///dir`, …).
public enum ReplicaURL {
    /// True when `s` matches `^\w+://` (ASCII word characters), i.e. is treated as a replica URL.
    public static func isURL(_ s: String) -> Bool {
        var sawWord = false
        var it = s.utf8.makeIterator()
        while let c = it.next() {
            let isWord = c == UInt8(ascii: "_") || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            if isWord { sawWord = true; continue }
            guard sawWord, c == UInt8(ascii: ":") else { return false }
            return it.next() == UInt8(ascii: "/") && it.next() == UInt8(ascii: "/")
        }
        return false
    }

    /// Replaces the password of `scheme://user:password@host…` (or of a scheme-less `//user:password@host…`, which
    /// `GoURL.parse` reads the same way) with `xxxxx` so the text can be shown to users.
    public static func redacted(_ s: String) -> String {
        let authorityStart: String.Index
        if s.hasPrefix("//") {
            authorityStart = s.index(s.startIndex, offsetBy: 2)
        } else if let schemeEnd = s.range(of: "://") {
            authorityStart = schemeEnd.upperBound
        } else {
            return s
        }
        let rest = s[authorityStart...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? s.endIndex
        let authority = s[authorityStart..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return s }
        let userinfo = authority[..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return s }
        return String(s[..<s.index(after: colon)]) + "xxxxx" + String(s[at...])
    }
}

/// The subset of Go's `net/url.Parse` that replica URLs need.
package struct GoURL {
    /// Lowercased scheme ("" when absent).
    package var scheme = ""
    /// What follows `scheme:` when it does not start with `/`.
    package var opaque = ""
    /// Decoded user name of the userinfo, if any.
    package var user: String?
    /// Decoded password of the userinfo, if any (never log it).
    package var password: String?
    /// Host, with any `:port`.
    package var host = ""
    /// Decoded path.
    package var path = ""
    /// Query text after `?`, undecoded.
    package var rawQuery = ""

    /// Parses `raw` like Go's `url.Parse` (scheme lowercased, userinfo and path percent-decoded).
    package static func parse(_ raw: String) throws -> GoURL {
        func fail(_ reason: String) -> ReplicationError {
            ReplicationError(.invalidInput, "parse \(goQuote(ReplicaURL.redacted(raw))): \(reason)")
        }
        if raw.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw fail("net/url: invalid control character in URL")
        }
        var u = GoURL()
        var rest = Substring(raw)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        // Scheme.
        var i = rest.startIndex
        schemeLoop: while i < rest.endIndex {
            let c = rest[i]
            if c.isASCII && c.isLetter {
                // continue
            } else if c.isASCII && (c.isNumber || c == "+" || c == "-" || c == ".") {
                if i == rest.startIndex { break schemeLoop }
            } else if c == ":" {
                if i == rest.startIndex { throw fail("missing protocol scheme") }
                u.scheme = rest[..<i].lowercased()
                rest = rest[rest.index(after: i)...]
                break schemeLoop
            } else {
                break schemeLoop
            }
            i = rest.index(after: i)
        }
        if let q = rest.firstIndex(of: "?") {
            u.rawQuery = String(rest[rest.index(after: q)...])
            rest = rest[..<q]
        }
        if !rest.hasPrefix("/") && !u.scheme.isEmpty {
            u.opaque = String(rest)
            return u
        }
        if u.scheme.isEmpty, let colon = rest.firstIndex(of: ":"),
           rest.firstIndex(of: "/").map({ colon < $0 }) ?? true {
            throw fail("first path segment in URL cannot contain colon")
        }
        if rest.hasPrefix("//") && (!u.scheme.isEmpty || !rest.hasPrefix("///")) {
            let afterSlashes = rest.dropFirst(2)
            let end = afterSlashes.firstIndex(of: "/") ?? afterSlashes.endIndex
            var authority = afterSlashes[..<end]
            rest = afterSlashes[end...]
            if let at = authority.lastIndex(of: "@") {
                let userinfo = authority[..<at]
                authority = authority[authority.index(after: at)...]
                if let colon = userinfo.firstIndex(of: ":") {
                    guard let name = percentDecode(userinfo[..<colon]),
                          let pass = percentDecode(userinfo[userinfo.index(after: colon)...]) else {
                        throw fail("invalid userinfo")
                    }
                    u.user = name
                    u.password = pass
                } else {
                    guard let name = percentDecode(userinfo) else { throw fail("invalid userinfo") }
                    u.user = name
                }
            }
            // Bracketed (IPv6) hosts must be closed (Go: `missing ']' in host`).
            if authority.hasPrefix("[") && !authority.contains("]") {
                throw fail("missing ']' in host")
            }
            // Percent escapes in a host must be valid (Go: `invalid URL escape "%zz"`).
            if let pct = authority.firstIndex(of: "%"), percentDecode(authority) == nil {
                throw fail("invalid URL escape \(goQuote(String(authority[pct...].prefix(3))))")
            }
            // Port validation (Go: `invalid port ":x" after host`).
            if !authority.hasPrefix("["), let colon = authority.lastIndex(of: ":") {
                let port = authority[authority.index(after: colon)...]
                if !port.allSatisfy({ $0.isASCII && $0.isNumber }) {
                    throw fail("invalid port \(goQuote(String(authority[colon...]))) after host")
                }
            }
            if authority.contains(where: { $0 == " " || $0 == "<" || $0 == ">" || $0 == "\"" || $0 == "{" || $0 == "}" || $0 == "|" || $0 == "\\" || $0 == "^" || $0 == "`" }) {
                throw fail("invalid character in host name")
            }
            u.host = String(authority)
        }
        guard let path = percentDecode(rest) else {
            throw fail("invalid URL escape in path")
        }
        u.path = path
        return u
    }

    /// Decodes `%XX` escapes; nil for a malformed escape or invalid UTF-8.
    static func percentDecode(_ s: Substring) -> String? {
        guard s.contains("%") else { return String(s) }
        var out: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%") {
                guard i + 2 < bytes.count, let h = hexValue(bytes[i + 1]), let l = hexValue(bytes[i + 2]) else { return nil }
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Upstream `ParseReplicaURL`: scheme, host and the derived path of a replica URL.
struct ParsedReplicaURL {
    var scheme: String
    var host: String
    var path: String
    var url: GoURL

    /// Parses a replica URL; a URL without a scheme throws `replica url scheme required: URL`.
    static func parse(_ s: String) throws -> ParsedReplicaURL {
        let u = try GoURL.parse(s)
        switch u.scheme {
        case "":
            throw ReplicationError(.invalidInput, "replica url scheme required: \(ReplicaURL.redacted(s))")
        case "file":
            // Upstream clears the scheme and cleans what remains, folding any host into the path.
            var text: String
            if !u.opaque.isEmpty {
                text = u.opaque
            } else if !u.host.isEmpty || u.user != nil {
                text = "//" + u.host + u.path
            } else {
                text = u.path
            }
            if !u.rawQuery.isEmpty { text += "?" + u.rawQuery }
            return ParsedReplicaURL(scheme: "file", host: "", path: GoPath.clean(text), url: u)
        default:
            return ParsedReplicaURL(scheme: u.scheme, host: u.host, path: trimLeadingSlash(GoPath.clean(u.path)), url: u)
        }
    }

    /// Removes one leading "/" (Go `strings.TrimPrefix(p, "/")`).
    static func trimLeadingSlash(_ p: String) -> String {
        p.hasPrefix("/") ? String(p.dropFirst()) : p
    }
}

/// Upstream `s3.ParseHost`: bucket, region, endpoint and path-style derived from an `s3://HOST` host.
package struct S3Host: Equatable {
    /// Bucket name ("" when the host names none).
    package var bucket: String
    /// Region implied by the provider host, if any.
    package var region: String?
    /// Endpoint URL for a non-AWS provider, if any.
    package var endpoint: String?
    /// Whether requests use path-style addressing.
    package var forcePathStyle: Bool

    /// Interprets a host (optionally with `:port`) per the provider table of INTERFACES §2.8, Scaleway included.
    package static func parse(_ s: String) -> S3Host {
        let (host, port) = splitHostPort(s)
        var scheme = "https"
        var endpoint: String?
        var bucket: String
        var region: String?
        var pathStyle = true
        if let b = matchPrefix(host, suffix: "localhost") {
            bucket = b
            region = "us-east-1"
            scheme = "http"
            endpoint = "localhost"
        } else if let (b, r) = matchRegion(host, before: "s3", suffix: ".backblazeb2.com") {
            bucket = b
            region = r
            endpoint = "s3.\(r).backblazeb2.com"
        } else if let b = matchPrefix(host, suffix: "s3.filebase.com") {
            bucket = b
            endpoint = "s3.filebase.com"
        } else if let (b, r) = matchRegion(host, before: nil, suffix: ".digitaloceanspaces.com") {
            bucket = b
            region = r
            endpoint = "\(r).digitaloceanspaces.com"
        } else if let (b, r) = matchRegion(host, before: nil, suffix: ".linodeobjects.com") {
            bucket = b
            region = r
            endpoint = "\(r).linodeobjects.com"
        } else if let (b, r) = matchRegion(host, before: "s3", suffix: ".scw.cloud") {
            bucket = b
            region = r
            endpoint = "s3.\(r).scw.cloud"
        } else {
            bucket = host
            pathStyle = false
        }
        if var e = endpoint {
            if let port, !port.isEmpty {
                e = e.contains(":") ? "[\(e)]:\(port)" : "\(e):\(port)"
            }
            endpoint = scheme + "://" + e
        }
        return S3Host(bucket: bucket, region: region, endpoint: endpoint, forcePathStyle: pathStyle)
    }

    /// `^(?:(.+)\.)?SUFFIX$` → the bucket ("" when absent), or nil when the host does not match.
    private static func matchPrefix(_ host: String, suffix: String) -> String? {
        if host == suffix { return "" }
        guard host.hasSuffix("." + suffix) else { return nil }
        let b = String(host.dropLast(suffix.count + 1))
        return b.isEmpty ? nil : b
    }

    /// `^(?:(.+)\.)?[BEFORE.]([^.]+)SUFFIX$` → (bucket, region), or nil when the host does not match.
    private static func matchRegion(_ host: String, before: String?, suffix: String) -> (String, String)? {
        guard host.hasSuffix(suffix) else { return nil }
        let head = String(host.dropLast(suffix.count))
        let region: String
        let rest: String?
        if let dot = head.lastIndex(of: ".") {
            region = String(head[head.index(after: dot)...])
            rest = String(head[..<dot])
        } else {
            region = head
            rest = nil
        }
        guard !region.isEmpty else { return nil }
        if let before {
            guard let rest else { return nil }
            guard let b = matchPrefix(rest, suffix: before) else { return nil }
            return (b, region)
        }
        guard let rest else { return ("", region) }
        return rest.isEmpty ? nil : (rest, region)
    }

    /// Go `net.SplitHostPort`, falling back to (whole string, nil) when there is no valid port part.
    package static func splitHostPort(_ s: String) -> (String, String?) {
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return (s, nil) }
            let after = s[s.index(after: close)...]
            guard after.hasPrefix(":"), !after.dropFirst().contains(":") else { return (s, nil) }
            return (String(s[s.index(after: s.startIndex)..<close]), String(after.dropFirst()))
        }
        guard let colon = s.firstIndex(of: ":"), s.lastIndex(of: ":") == colon else { return (s, nil) }
        return (String(s[..<colon]), String(s[s.index(after: colon)...]))
    }
}
