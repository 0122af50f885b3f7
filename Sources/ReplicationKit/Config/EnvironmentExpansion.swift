/// Go `os.Expand`/`os.ExpandEnv` semantics for `$VAR` / `${VAR}` substitution in config text.
public enum EnvironmentExpansion {
    /// Replaces `${NAME}`, `$NAME` and `$<special>` in `text`; unknown names (lookup returns nil) expand to "";
    /// `${NAME:-default}` gives the default when NAME is unset or empty.
    ///
    /// Mirrors Go exactly: `$$` is the variable named `$` (not an escape), `${}` is removed, an
    /// unterminated `${` loses the `${`, and a `$` before any other character (or at the end) is kept.
    public static func expand(_ text: String, lookup: (String) -> String?) -> String {
        let s = Array(text.utf8)
        var buf: [UInt8] = []
        var changed = false
        var i = 0
        var j = 0
        while j < s.count {
            if s[j] == UInt8(ascii: "$") && j + 1 < s.count {
                if !changed {
                    changed = true
                    buf.reserveCapacity(2 * s.count)
                }
                buf.append(contentsOf: s[i..<j])
                let (name, w) = shellName(s[(j + 1)...])
                if name == nil && w > 0 {
                    // Invalid syntax: eat the characters.
                } else if let name {
                    if let value = resolve(String(decoding: name, as: UTF8.self), lookup: lookup) {
                        buf.append(contentsOf: value.utf8)
                    }
                } else {
                    buf.append(s[j])
                }
                j += w
                i = j + 1
            }
            j += 1
        }
        if !changed { return text }
        buf.append(contentsOf: s[min(i, s.count)...])
        return String(decoding: buf, as: UTF8.self)
    }

    /// The value of a `${…}` body: `NAME`, or `NAME:-default` (our extension: the default when NAME is unset or
    /// empty, so a config can say that an empty value is intended).
    private static func resolve(_ name: String, lookup: (String) -> String?) -> String? {
        guard let r = name.range(of: ":-") else { return lookup(name) }
        let value = lookup(String(name[..<r.lowerBound])) ?? ""
        return value.isEmpty ? String(name[r.upperBound...]) : value
    }

    /// A reference to a variable that is not set: its name and 1-based line.
    public struct UnsetReference: Equatable, Sendable {
        public var name: String
        public var line: Int
    }

    /// The `$NAME` / `${NAME}` references in `text` whose variable is not set, outside YAML comments. Only
    /// identifier names count (`$1`, `$*` and a lone `$` are left alone: they are usually prose or passwords), and
    /// `${NAME:-default}` never does. Go would expand each of these to "", silently: a replica path becomes the
    /// current directory.
    public static func unsetReferences(_ text: String, lookup: (String) -> String?) -> [UnsetReference] {
        var out: [UnsetReference] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let bytes = Array(line.utf8)
            var quote: UInt8? = nil
            var i = 0
            scan: while i < bytes.count {
                let c = bytes[i]
                if let q = quote {
                    if c == q { quote = nil }
                } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                    quote = c
                } else if c == UInt8(ascii: "#") && (i == 0 || bytes[i - 1] == UInt8(ascii: " ") || bytes[i - 1] == UInt8(ascii: "\t")) {
                    break scan  // a comment runs to the end of the line
                }
                if c == UInt8(ascii: "$") && i + 1 < bytes.count {
                    let (name, w) = shellName(bytes[(i + 1)...])
                    if let name, let first = name.first, first == UInt8(ascii: "_") || isLetter(first) {
                        let text = String(decoding: name, as: UTF8.self)
                        let isIdentifier = name.allSatisfy(isAlphaNum)
                        if isIdentifier && lookup(text) == nil { out.append(UnsetReference(name: text, line: n + 1)) }
                    }
                    i += w + 1
                    continue
                }
                i += 1
            }
        }
        return out
    }

    private static func isLetter(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }

    private static func isSpecial(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "*"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "@"),
             UInt8(ascii: "!"), UInt8(ascii: "?"), UInt8(ascii: "-"):
            return true
        default:
            return c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")
        }
    }

    private static func isAlphaNum(_ c: UInt8) -> Bool {
        c == UInt8(ascii: "_") || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
            || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
    }

    /// Go's `getShellName`: the name (nil when none) and the number of bytes consumed after the `$`.
    private static func shellName(_ s: ArraySlice<UInt8>) -> ([UInt8]?, Int) {
        let b = s.startIndex
        if s[b] == UInt8(ascii: "{") {
            if s.count > 2 && isSpecial(s[b + 1]) && s[b + 2] == UInt8(ascii: "}") {
                return ([s[b + 1]], 3)
            }
            var k = 1
            while k < s.count {
                if s[b + k] == UInt8(ascii: "}") {
                    if k == 1 { return (nil, 2) }  // "${}"
                    return (Array(s[(b + 1)..<(b + k)]), k + 1)
                }
                k += 1
            }
            return (nil, 1)  // unterminated "${"
        }
        if isSpecial(s[b]) { return ([s[b]], 1) }
        var k = 0
        while k < s.count && isAlphaNum(s[b + k]) { k += 1 }
        return (k == 0 ? nil : Array(s[b..<(b + k)]), k)
    }
}
