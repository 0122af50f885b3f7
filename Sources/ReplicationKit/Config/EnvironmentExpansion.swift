/// Go `os.Expand`/`os.ExpandEnv` semantics for `$VAR` / `${VAR}` substitution in config text.
public enum EnvironmentExpansion {
    /// Replaces `${NAME}`, `$NAME` and `$<special>` in `text`; unknown names (lookup returns nil) expand to "".
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
                    if let value = lookup(String(decoding: name, as: UTF8.self)) {
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
