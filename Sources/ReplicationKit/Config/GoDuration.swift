/// Go `time.Duration` text compatibility: parsing (`time.ParseDuration`) and formatting (`Duration.String`).
public enum GoDuration {
    private static let unitMap: [String: UInt64] = [
        "ns": 1,
        "us": 1_000,
        "\u{00B5}s": 1_000,  // micro sign
        "\u{03BC}s": 1_000,  // Greek mu
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60_000_000_000,
        "h": 3_600_000_000_000,
    ]

    /// Parses Go duration syntax (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`); throws `invalid duration "S"` on failure.
    public static func parse(_ s: String) throws -> Duration {
        Duration.nanoseconds(try parseNanoseconds(s))
    }

    /// Parses Go duration syntax into a signed nanosecond count.
    static func parseNanoseconds(_ orig: String) throws -> Int64 {
        func invalid(_ detail: String? = nil) -> ReplicationError {
            let quoted = goQuote(orig)
            if let detail { return ReplicationError(.invalidInput, "invalid duration \(quoted): \(detail)") }
            return ReplicationError(.invalidInput, "invalid duration \(quoted)")
        }
        var s = Array(orig.utf8)[...]
        var neg = false
        if let c = s.first, c == UInt8(ascii: "-") || c == UInt8(ascii: "+") {
            neg = c == UInt8(ascii: "-")
            s = s.dropFirst()
        }
        if s.count == 1 && s.first == UInt8(ascii: "0") { return 0 }
        if s.isEmpty { throw invalid() }
        let limit: UInt64 = 1 << 63
        var d: UInt64 = 0
        while !s.isEmpty {
            var v: UInt64 = 0
            var f: UInt64 = 0
            var scale: Double = 1
            let c0 = s.first!
            guard c0 == UInt8(ascii: ".") || isDigit(c0) else { throw invalid() }
            // leading int
            var consumedPre = false
            while let c = s.first, isDigit(c) {
                if v > limit / 10 { throw invalid() }
                v = v * 10 + UInt64(c - UInt8(ascii: "0"))
                if v > limit { throw invalid() }
                s = s.dropFirst()
                consumedPre = true
            }
            var consumedPost = false
            if s.first == UInt8(ascii: ".") {
                s = s.dropFirst()
                var overflow = false
                while let c = s.first, isDigit(c) {
                    s = s.dropFirst()
                    consumedPost = true
                    if overflow { continue }
                    if f > (limit - 1) / 10 { overflow = true; continue }
                    let y = f * 10 + UInt64(c - UInt8(ascii: "0"))
                    if y > limit { overflow = true; continue }
                    f = y
                    scale *= 10
                }
            }
            if !consumedPre && !consumedPost { throw invalid() }
            // unit
            var unitBytes: [UInt8] = []
            while let c = s.first, c != UInt8(ascii: "."), !isDigit(c) {
                unitBytes.append(c)
                s = s.dropFirst()
            }
            if unitBytes.isEmpty { throw invalid("missing unit (valid units: ns, us, ms, s, m, h)") }
            let unitText = String(decoding: unitBytes, as: UTF8.self)
            guard let unit = unitMap[unitText] else {
                throw invalid("unknown unit \(goQuote(unitText)) (valid units: ns, us, ms, s, m, h)")
            }
            if v > limit / unit { throw invalid() }
            v *= unit
            if f > 0 {
                v += UInt64(Double(f) * (Double(unit) / scale))
                if v > limit { throw invalid() }
            }
            d += v
            if d > limit { throw invalid() }
        }
        if neg {
            return d == limit ? Int64.min : -Int64(d)
        }
        if d > limit - 1 { throw invalid() }
        return Int64(d)
    }

    /// Formats like Go's `time.Duration.String()`: `0s`, `500ms`, `1.5s`, `2m3s`, `48h0m0s`, `12µs`, `-1m2s`.
    public static func format(_ d: Duration) -> String {
        formatNanoseconds(nanoseconds(d))
    }

    /// Formats a signed nanosecond count like Go's `time.Duration.String()`.
    static func formatNanoseconds(_ d: Int64) -> String {
        var u = d.magnitude
        let neg = d < 0
        var out: [UInt8] = []  // built in reverse
        func putInt(_ value: UInt64) {
            var v = value
            if v == 0 { out.append(UInt8(ascii: "0")); return }
            while v > 0 {
                out.append(UInt8(ascii: "0") + UInt8(v % 10))
                v /= 10
            }
        }
        // Appends the fraction v/10^prec (trailing zeros omitted) and returns v/10^prec.
        func putFrac(_ value: UInt64, _ prec: Int) -> UInt64 {
            var v = value
            var printed = false
            for _ in 0..<prec {
                let digit = v % 10
                printed = printed || digit != 0
                if printed { out.append(UInt8(ascii: "0") + UInt8(digit)) }
                v /= 10
            }
            if printed { out.append(UInt8(ascii: ".")) }
            return v
        }
        if u < 1_000_000_000 {
            if u == 0 { return "0s" }
            out.append(UInt8(ascii: "s"))
            let prec: Int
            if u < 1_000 {
                prec = 0
                out.append(UInt8(ascii: "n"))
            } else if u < 1_000_000 {
                prec = 3
                out.append(0xB5)
                out.append(0xC2)  // "µ" (U+00B5) reversed
            } else {
                prec = 6
                out.append(UInt8(ascii: "m"))
            }
            u = putFrac(u, prec)
            putInt(u)
        } else {
            out.append(UInt8(ascii: "s"))
            u = putFrac(u, 9)
            putInt(u % 60)
            u /= 60
            if u > 0 {
                out.append(UInt8(ascii: "m"))
                putInt(u % 60)
                u /= 60
                if u > 0 {
                    out.append(UInt8(ascii: "h"))
                    putInt(u)
                }
            }
        }
        if neg { out.append(UInt8(ascii: "-")) }
        return String(decoding: out.reversed(), as: UTF8.self)
    }

    /// Truncates like upstream's lag display (|d| > 10 s ⇒ 1 s, > 1 s ⇒ 0.1 s, > 1 ms ⇒ 1 ms, > 1 µs ⇒ 1 µs) and formats.
    public static func formatLag(_ d: Duration) -> String {
        formatNanoseconds(truncateLag(nanoseconds(d)))
    }

    /// The lag truncation rule of INTERFACES §1.11 on a nanosecond count (truncation toward zero).
    static func truncateLag(_ d: Int64) -> Int64 {
        let second: Int64 = 1_000_000_000
        let m: Int64
        let a = d.magnitude
        if a > UInt64(10 * second) {
            m = second
        } else if a > UInt64(second) {
            m = second / 10
        } else if a > 1_000_000 {
            m = 1_000_000
        } else if a > 1_000 {
            m = 1_000
        } else {
            return d
        }
        return d - d % m
    }

    /// Converts a Swift `Duration` to whole nanoseconds (truncating sub-nanoseconds, saturating at Int64 bounds).
    public static func nanoseconds(_ d: Duration) -> Int64 {
        let (secs, attos) = d.components
        let (a, o1) = secs.multipliedReportingOverflow(by: 1_000_000_000)
        if o1 { return secs < 0 ? Int64.min : Int64.max }
        let (b, o2) = a.addingReportingOverflow(attos / 1_000_000_000)
        if o2 { return secs < 0 ? Int64.min : Int64.max }
        return b
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}

/// Quotes a string like Go's `%q` for printable text (escapes `"`, `\` and control characters).
public func goQuote(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                out += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
