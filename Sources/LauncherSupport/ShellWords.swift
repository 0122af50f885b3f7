/// Splits an `-exec` / `exec:` command string into words with go-shellwords v1.0.12 default rules
/// (INTERFACES §1.4.2): no environment expansion, no backtick execution.
///
/// - separators are space, tab, CR and LF;
/// - `'…'` is literal (a backslash inside is literal); inside `"…"` a backslash makes the next character literal
///   (so `"\n"` is `n`, unlike POSIX sh); outside single quotes a backslash escapes the next character;
/// - `""` and `''` produce an empty word;
/// - an unquoted `;`, `&`, `|`, `<` or `>` ends parsing and the rest is dropped (a word starting with a digit just
///   before `>`, as in `2>`, is dropped too);
/// - backticks and `$( … )` are kept literally and do not split on whitespace; a bare `(` is an error, and so is
///   an unterminated quote, backtick, `$(` or trailing backslash.
public enum ShellWords {
    /// Why a command string cannot be split.
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        /// Unbalanced quote, trailing backslash, bare `(`, unterminated backtick or `$(` (go-shellwords' wording).
        case invalid
        /// The string holds no word at all (upstream crashes here).
        case empty

        /// The message shown to users.
        public var description: String {
            switch self {
            case .invalid: return "invalid command line string"
            case .empty: return "empty command"
            }
        }
    }

    /// Returns the words of `line`; throws `.invalid` for a malformed string. Zero words is not an error here.
    public static func split(_ line: String) throws(ParseError) -> [String] {
        var args: [String] = []
        var buf = String.UnicodeScalarView()
        var escaped = false, doubleQuoted = false, singleQuoted = false, backQuote = false, dollarQuote = false
        // Whether `buf` holds a word: go-shellwords' `got != argNo` (a quoted empty string counts).
        var got = false

        loop: for r in line.unicodeScalars {
            if escaped {
                buf.append(r)
                escaped = false
                got = true
                continue
            }
            if r == "\\" {
                if singleQuoted { buf.append(r) } else { escaped = true }
                continue
            }
            if isSeparator(r) {
                if singleQuoted || doubleQuoted || backQuote || dollarQuote {
                    buf.append(r)
                } else if got {
                    args.append(String(buf))
                    buf = String.UnicodeScalarView()
                    got = false
                }
                continue
            }
            switch r {
            case "`":
                if !singleQuoted && !doubleQuoted && !dollarQuote { backQuote.toggle() }
            case ")":
                if !singleQuoted && !doubleQuoted && !backQuote { dollarQuote.toggle() }
            case "(":
                if !singleQuoted && !doubleQuoted && !backQuote {
                    if !dollarQuote && buf.last == "$" {
                        dollarQuote = true
                        buf.append(r)
                        continue
                    }
                    throw .invalid
                }
            case "\"":
                if !singleQuoted && !dollarQuote {
                    if doubleQuoted { got = true }
                    doubleQuoted.toggle()
                    continue
                }
            case "'":
                if !doubleQuoted && !dollarQuote {
                    if singleQuoted { got = true }
                    singleQuoted.toggle()
                    continue
                }
            case ";", "&", "|", "<", ">":
                if !(singleQuoted || doubleQuoted || backQuote || dollarQuote) {
                    // `2>file`: the file-descriptor number before a redirection is not a word.
                    if r == ">", let first = buf.first, ("0"..."9").contains(first) { got = false }
                    break loop
                }
            default:
                break
            }
            got = true
            buf.append(r)
        }
        if got { args.append(String(buf)) }
        if escaped || singleQuoted || doubleQuoted || backQuote || dollarQuote { throw .invalid }
        return args
    }

    /// Splits `line` and requires at least one word (the program).
    public static func command(_ line: String) throws(ParseError) -> [String] {
        let words = try split(line)
        if words.isEmpty { throw .empty }
        return words
    }

    private static func isSeparator(_ r: Unicode.Scalar) -> Bool {
        r == " " || r == "\t" || r == "\r" || r == "\n"
    }
}
