import ReplicationKit
/// Errors from `GoFlagSet.parse`, mirroring Go's `flag` package.
enum GoFlagError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `-h`, `-help` or `--help` was given and no flag of that name is defined (Go's `flag.ErrHelp`).
    case helpRequested
    /// A parse failure with Go's exact wording (e.g. `flag provided but not defined: -x`).
    case message(String)

    var description: String {
        switch self {
        case .helpRequested: return "flag: help requested"
        case .message(let m): return m
        }
    }
}

/// A small re-implementation of Go's `flag.FlagSet` parsing rules (INTERFACES §1.2).
struct GoFlagSet: Sendable {
    /// How a flag's value is interpreted.
    enum Kind {
        case string
        case bool
        case int
        /// A custom value: `validate` returns an error reason (e.g. "invalid hexadecimal format") or nil.
        case custom(validate: @Sendable (String) -> String?)
    }

    /// One defined flag.
    struct Flag {
        var name: String
        var usage: String
        var kind: Kind
        var defaultValue: String
    }

    /// The flag set's name (e.g. `litestream-restore`).
    let name: String
    private(set) var flags: [String: Flag] = [:]

    /// Creates an empty flag set.
    init(name: String) {
        self.name = name
    }

    /// Defines a string flag.
    mutating func string(_ name: String, default defaultValue: String = "", usage: String) {
        flags[name] = Flag(name: name, usage: usage, kind: .string, defaultValue: defaultValue)
    }

    /// Defines a boolean flag (`-b`, `-b=false`; never `-b false`).
    mutating func bool(_ name: String, default defaultValue: Bool = false, usage: String) {
        flags[name] = Flag(name: name, usage: usage, kind: .bool, defaultValue: defaultValue ? "true" : "false")
    }

    /// Defines an integer flag parsed like Go's `strconv.ParseInt(s, 0, 64)`.
    mutating func int(_ name: String, default defaultValue: Int, usage: String) {
        flags[name] = Flag(name: name, usage: usage, kind: .int, defaultValue: String(defaultValue))
    }

    /// Defines a flag whose value is checked by `validate` (returns an error reason, or nil when valid).
    mutating func custom(_ name: String, default defaultValue: String = "", usage: String,
                         validate: @escaping @Sendable (String) -> String?) {
        flags[name] = Flag(name: name, usage: usage, kind: .custom(validate: validate), defaultValue: defaultValue)
    }

    /// Defines a signed 32-bit hexadecimal flag without `0x` prefix (upstream's `-index`); bad input ⇒ "invalid hexadecimal format".
    mutating func hex32(_ name: String, usage: String) {
        custom(name, usage: usage) { GoFlagSet.parseHex32($0) == nil ? "invalid hexadecimal format" : nil }
    }

    /// Parses Go `strconv.ParseInt(s, 16, 32)`: optional sign, hex digits, no prefix, within Int32.
    static func parseHex32(_ s: String) -> Int32? {
        var body = Substring(s)
        if let c = body.first, c == "+" || c == "-" { body = body.dropFirst() }
        guard !body.isEmpty, body.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return nil }
        return Int32(s, radix: 16)
    }

    /// Parses Go `strconv.ParseInt(s, 0, 64)` syntax (sign; `0x`/`0o`/`0b`/leading-0 octal; `_` separators after a prefix).
    static func parseGoInt(_ s: String) -> (value: Int?, outOfRange: Bool) {
        var body = Substring(s)
        var neg = false
        if let c = body.first, c == "+" || c == "-" {
            neg = c == "-"
            body = body.dropFirst()
        }
        guard !body.isEmpty else { return (nil, false) }
        var radix = 10
        var prefixed = false
        let lower = body.lowercased()
        if lower.hasPrefix("0x") {
            radix = 16; body = body.dropFirst(2); prefixed = true
        } else if lower.hasPrefix("0o") {
            radix = 8; body = body.dropFirst(2); prefixed = true
        } else if lower.hasPrefix("0b") {
            radix = 2; body = body.dropFirst(2); prefixed = true
        } else if body.count > 1 && body.hasPrefix("0") {
            radix = 8; body = body.dropFirst(); prefixed = true
        }
        if body.contains("_") {
            // Go allows underscores only with base prefix, between digits.
            guard prefixed, !body.hasPrefix("_") || radix == 8, !body.hasSuffix("_"), !body.contains("__") else {
                return (nil, false)
            }
            body = Substring(body.filter { $0 != "_" })
        }
        guard !body.isEmpty, body.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return (nil, false) }
        guard body.allSatisfy({ $0.hexDigitValue! < radix }) else { return (nil, false) }
        guard let magnitude = UInt64(body, radix: radix) else { return (nil, true) }
        if neg {
            if magnitude == UInt64(Int64.max) + 1 { return (Int(Int64.min), false) }
            guard magnitude <= UInt64(Int64.max) else { return (nil, true) }
            return (-Int(magnitude), false)
        }
        guard magnitude <= UInt64(Int64.max) else { return (nil, true) }
        return (Int(magnitude), false)
    }

    /// Go's `strconv.ParseBool`.
    static func parseBool(_ s: String) -> Bool? {
        switch s {
        case "1", "t", "T", "TRUE", "true", "True": return true
        case "0", "f", "F", "FALSE", "false", "False": return false
        default: return nil
        }
    }

    /// Parses `args` (without the command name); stops at the first non-flag argument or after `--`.
    func parse(_ args: [String]) throws(GoFlagError) -> ParsedFlags {
        var result = ParsedFlags(defaults: flags.mapValues { $0.defaultValue })
        var rest = args[...]
        while let s = rest.first {
            if s.count < 2 || !s.hasPrefix("-") { break }
            var numMinuses = 1
            if s.dropFirst().hasPrefix("-") {
                numMinuses = 2
                if s.count == 2 {  // "--" terminates the flags
                    rest = rest.dropFirst()
                    break
                }
            }
            var name = String(s.dropFirst(numMinuses))
            if name.isEmpty || name.hasPrefix("-") || name.hasPrefix("=") {
                throw .message("bad flag syntax: \(s)")
            }
            rest = rest.dropFirst()
            var value: String?
            if let eq = name.dropFirst().firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let flag = flags[name] else {
                if name == "help" || name == "h" { throw .helpRequested }
                throw .message("flag provided but not defined: -\(name)")
            }
            if case .bool = flag.kind {
                let text = value ?? "true"
                guard let b = GoFlagSet.parseBool(text) else {
                    throw .message("invalid boolean value \(goQuote(text)) for -\(name): parse error")
                }
                result.values[name] = b ? "true" : "false"
                result.setFlags.insert(name)
                continue
            }
            if value == nil, let next = rest.first {
                value = next
                rest = rest.dropFirst()
            }
            guard let value else { throw .message("flag needs an argument: -\(name)") }
            switch flag.kind {
            case .int:
                let (v, outOfRange) = GoFlagSet.parseGoInt(value)
                if v == nil {
                    throw .message("invalid value \(goQuote(value)) for flag -\(name): \(outOfRange ? "value out of range" : "parse error")")
                }
            case .custom(let validate):
                if let reason = validate(value) {
                    throw .message("invalid value \(goQuote(value)) for flag -\(name): \(reason)")
                }
            case .string, .bool:
                break
            }
            result.values[name] = value
            result.setFlags.insert(name)
        }
        result.positionals = Array(rest)
        return result
    }

    /// Go's `PrintDefaults` text: flags sorted by name, `  -name type` then `    \tusage` lines, defaults appended.
    func usageText() -> String {
        var out = ""
        for flag in flags.values.sorted(by: { $0.name < $1.name }) {
            var line = "  -\(flag.name)"
            var (typeName, usage) = GoFlagSet.unquoteUsage(flag)
            if case .bool = flag.kind, typeName == "value" { typeName = "" }
            if !typeName.isEmpty { line += " " + typeName }
            if line.unicodeScalars.count <= 4 {
                line += "\t"
            } else {
                line += "\n    \t"
            }
            usage = usage.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n    \t")
            line += usage
            let isZero: Bool
            switch flag.kind {
            case .bool: isZero = flag.defaultValue == "false"
            case .int: isZero = flag.defaultValue == "0"
            case .string, .custom: isZero = flag.defaultValue.isEmpty
            }
            if !isZero {
                if case .string = flag.kind {
                    line += " (default \(goQuote(flag.defaultValue)))"
                } else {
                    line += " (default \(flag.defaultValue))"
                }
            }
            out += line + "\n"
        }
        return out
    }

    /// Go's `flag.UnquoteUsage`: a back-quoted word in the usage names the value; else a name from the kind.
    private static func unquoteUsage(_ flag: Flag) -> (String, String) {
        let usage = flag.usage
        if let open = usage.firstIndex(of: "`") {
            let after = usage.index(after: open)
            if let close = usage[after...].firstIndex(of: "`") {
                let name = String(usage[after..<close])
                let text = String(usage[..<open]) + name + String(usage[usage.index(after: close)...])
                return (name, text)
            }
        }
        switch flag.kind {
        case .bool: return ("", usage)
        case .int: return ("int", usage)
        case .string: return ("string", usage)
        case .custom: return ("value", usage)
        }
    }
}

/// The outcome of `GoFlagSet.parse`: values by flag name, which flags were given, and the positional arguments.
struct ParsedFlags: Sendable {
    /// Current value of every defined flag as text (default unless set; booleans are "true"/"false").
    var values: [String: String]
    /// Names of the flags that appeared on the command line.
    var setFlags: Set<String> = []
    /// Arguments after the flags (everything from the first non-flag, or after `--`).
    var positionals: [String] = []

    /// Starts with every flag at its default value.
    init(defaults: [String: String]) {
        values = defaults
    }

    /// The value of a string (or custom) flag.
    func string(_ name: String) -> String { values[name] ?? "" }

    /// The value of a boolean flag.
    func bool(_ name: String) -> Bool { values[name] == "true" }

    /// The value of an integer flag.
    func int(_ name: String) -> Int { values[name].flatMap { GoFlagSet.parseGoInt($0).value } ?? 0 }

    /// The value of a `hex32` flag, nil when it was not given.
    func hex32(_ name: String) -> Int32? {
        guard setFlags.contains(name), let v = values[name] else { return nil }
        return GoFlagSet.parseHex32(v)
    }

    /// True when the flag appeared on the command line.
    func isSet(_ name: String) -> Bool { setFlags.contains(name) }
}

