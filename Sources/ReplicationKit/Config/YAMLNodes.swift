import Yams

/// A plain YAML scalar resolved with yaml.v2 (YAML 1.1) rules.
enum YAMLScalar {
    case null
    case bool(Bool)
    case int(Int64)
    case float(Double)
    case string(String)

    /// Resolves a scalar node: quoted/block or `!!str` scalars are strings; plain scalars follow yaml.v2's resolver.
    init(_ scalar: Node.Scalar) {
        let tag = scalar.tag.description
        let text = scalar.string
        switch tag {
        case "tag:yaml.org,2002:str", "!":
            self = .string(text)
            return
        case "tag:yaml.org,2002:null":
            self = .null
            return
        default:
            break
        }
        if tag.isEmpty && scalar.style != .plain && scalar.style != .any {
            self = .string(text)
            return
        }
        self = YAMLScalar.resolvePlain(text)
    }

    /// yaml.v2 plain-scalar resolution: null, YAML 1.1 booleans, Go-syntax integers, floats, else string.
    static func resolvePlain(_ text: String) -> YAMLScalar {
        switch text {
        case "", "~", "null", "Null", "NULL":
            return .null
        case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
            return .bool(true)
        case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
            return .bool(false)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
            return .float(.infinity)
        case "-.inf", "-.Inf", "-.INF":
            return .float(-.infinity)
        case ".nan", ".NaN", ".NAN":
            return .float(.nan)
        default:
            break
        }
        guard let first = text.first, "+-.0123456789".contains(first) else { return .string(text) }
        let plain = text.replacingOccurrences(of: "_", with: "")
        if let v = parseGoInt(plain) { return .int(v) }
        if isYAMLFloat(plain), let f = Double(plain) { return .float(f) }
        return .string(text)
    }

    /// Go `strconv.ParseInt(s, 0, 64)`: optional sign, then `0x`, `0o`, `0b`, leading-`0` octal or decimal.
    static func parseGoInt(_ s: String) -> Int64? {
        var body = Substring(s)
        var neg = false
        if let c = body.first, c == "+" || c == "-" {
            neg = c == "-"
            body = body.dropFirst()
        }
        guard !body.isEmpty else { return nil }
        var radix = 10
        let lower = body.lowercased()
        if lower.hasPrefix("0x") {
            radix = 16; body = body.dropFirst(2)
        } else if lower.hasPrefix("0o") {
            radix = 8; body = body.dropFirst(2)
        } else if lower.hasPrefix("0b") {
            radix = 2; body = body.dropFirst(2)
        } else if body.count > 1 && body.hasPrefix("0") {
            radix = 8; body = body.dropFirst()
        }
        guard !body.isEmpty, body.allSatisfy({ $0.isASCII && $0.isHexDigit }),
              let magnitude = UInt64(body, radix: radix) else { return nil }
        if neg {
            if magnitude == UInt64(Int64.max) + 1 { return Int64.min }
            guard magnitude <= UInt64(Int64.max) else { return nil }
            return -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    /// yaml.v2's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
    static func isYAMLFloat(_ s: String) -> Bool {
        var chars = Substring(s)
        if let c = chars.first, c == "+" || c == "-" { chars = chars.dropFirst() }
        func digits(_ t: inout Substring) -> Int {
            var n = 0
            while let c = t.first, c.isASCII, c.isNumber { t = t.dropFirst(); n += 1 }
            return n
        }
        if chars.first == "." {
            chars = chars.dropFirst()
            if digits(&chars) == 0 { return false }
        } else {
            if digits(&chars) == 0 { return false }
            if chars.first == "." {
                chars = chars.dropFirst()
                _ = digits(&chars)
            }
        }
        if let c = chars.first, c == "e" || c == "E" {
            chars = chars.dropFirst()
            if let c = chars.first, c == "+" || c == "-" { chars = chars.dropFirst() }
            if digits(&chars) == 0 { return false }
        }
        return chars.isEmpty
    }
}

/// Walks a composed YAML tree, producing one-line errors of the form `SOURCE: key.path: reason`.
struct YAMLWalker {
    /// The file name prefixed to every error.
    let source: String
    /// Merged mappings left to expand: nested merge keys over aliases grow exponentially (a YAML bomb), so the
    /// expansion has a budget instead of hanging the launcher's start.
    let mergeBudget = MergeBudget(100_000)

    /// A counter shared by copies of the walker.
    final class MergeBudget: @unchecked Sendable {
        // @unchecked: a walker is used by one thread, for one parse.
        var left: Int
        init(_ n: Int) { left = n }
    }

    /// An error naming the source and the key at fault.
    func fail(_ key: String, _ message: String) -> ReplicationError {
        ReplicationError(.config, key.isEmpty ? "\(source): \(message)" : "\(source): \(key): \(message)")
    }

    /// A human description of a node's kind for type errors (never includes the value).
    func kind(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let s):
            switch YAMLScalar(s) {
            case .null: return "null"
            case .bool: return "a boolean"
            case .int: return "an integer"
            case .float: return "a number"
            case .string: return "a string"
            }
        }
    }

    /// True when the node is a null scalar (`~`, `null`, empty).
    func isNull(_ node: Node) -> Bool {
        if case .scalar(let s) = node, case .null = YAMLScalar(s) { return true }
        return false
    }

    /// The string-keyed entries of a mapping (merge keys `<<` applied, later keys win); nil for null.
    func mapping(_ node: Node, key: String) throws -> [String: Node]? {
        if isNull(node) { return nil }
        guard case .mapping(let m) = node else {
            throw fail(key, key.isEmpty ? "expected a mapping at the top level, got \(kind(node))"
                                        : "expected a mapping, got \(kind(node))")
        }
        var result: [String: Node] = [:]
        var explicit: [String: Node] = [:]
        for (k, v) in m {
            guard case .scalar(let ks) = k else { continue }
            if ks.string == "<<" && ks.style == .plain && (ks.tag.description.isEmpty || ks.tag.description == "tag:yaml.org,2002:merge") {
                let sources: [Node]
                switch v {
                case .mapping: sources = [v]
                case .sequence(let seq): sources = Array(seq)
                default: throw fail(key, "merge key << requires a mapping or a list of mappings")
                }
                // In a list of merged mappings, earlier mappings take precedence.
                for src in sources.reversed() {
                    mergeBudget.left -= 1
                    guard mergeBudget.left >= 0 else {
                        throw fail(key, "merge keys (<<) expand to more than 100000 mappings; the file looks like a YAML bomb")
                    }
                    guard let entries = try mapping(src, key: key) else { continue }
                    for (mk, mv) in entries { result[mk] = mv }
                }
                continue
            }
            explicit[ks.string] = v
        }
        for (k, v) in explicit { result[k] = v }
        return result
    }

    /// The elements of a list; nil for null.
    func sequence(_ node: Node, key: String) throws -> [Node]? {
        if isNull(node) { return nil }
        guard case .sequence(let s) = node else {
            throw fail(key, "expected a list, got \(kind(node))")
        }
        return Array(s)
    }

    /// A string value (any non-null scalar's text, as yaml.v2 does); nil for null or "".
    func string(_ node: Node?, key: String) throws -> String? {
        guard let node else { return nil }
        guard case .scalar(let s) = node else {
            throw fail(key, "expected a string, got \(kind(node))")
        }
        if case .null = YAMLScalar(s) { return nil }
        return s.string.isEmpty ? nil : s.string
    }

    /// A duration: Go syntax strings, bare integers as nanoseconds (yaml.v2); nil for null/absent.
    func duration(_ node: Node?, key: String) throws -> Duration? {
        guard let node else { return nil }
        guard case .scalar(let s) = node else {
            throw fail(key, "expected a duration (e.g. 10s), got \(kind(node))")
        }
        switch YAMLScalar(s) {
        case .null:
            return nil
        case .int(let v):
            return .nanoseconds(v)
        case .float(let f):
            guard f.isFinite, f > -9.2e18, f < 9.2e18 else { throw fail(key, "invalid duration \(goQuote(s.string))") }
            return .nanoseconds(Int64(f))
        case .bool, .string:
            do {
                return try GoDuration.parse(s.string)
            } catch {
                throw fail(key, error.oneLine)
            }
        }
    }

    /// An integer (floats truncated as yaml.v2 does); nil for null/absent.
    func int(_ node: Node?, key: String) throws -> Int? {
        guard let node else { return nil }
        guard case .scalar(let s) = node else {
            throw fail(key, "expected an integer, got \(kind(node))")
        }
        switch YAMLScalar(s) {
        case .null:
            return nil
        case .int(let v):
            return Int(v)
        case .float(let f) where f.isFinite && f > -9.2e18 && f < 9.2e18:
            return Int(f)
        default:
            throw fail(key, "expected an integer, got \(goQuote(s.string))")
        }
    }

    /// A YAML 1.1 boolean (`true/false/yes/no/on/off/y/n`); nil for null/absent.
    func bool(_ node: Node?, key: String) throws -> Bool? {
        guard let node else { return nil }
        guard case .scalar(let s) = node else {
            throw fail(key, "expected a boolean (true/false), got \(kind(node))")
        }
        switch YAMLScalar(s) {
        case .null: return nil
        case .bool(let b): return b
        default: throw fail(key, "expected a boolean (true/false), got \(goQuote(s.string))")
        }
    }

    /// Converts a Yams syntax error into `SOURCE: yaml: line N: problem` (never echoing document text).
    func syntaxError(_ error: any Error, text: String) -> ReplicationError {
        guard let y = error as? YamlError else {
            return ReplicationError(.config, "\(source): yaml: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        func line(_ problem: String, _ mark: Mark, _ context: YamlError.Context?) -> ReplicationError {
            var msg = "\(source): yaml: line \(max(mark.line, 1)): \(problem)"
            if let context, !context.text.isEmpty {
                msg += context.mark.line == mark.line
                    ? " (\(context.text))" : " (\(context.text) at line \(max(context.mark.line, 1)))"
            }
            return ReplicationError(.config, msg)
        }
        switch y {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return line(problem, mark, context)
        case let .reader(problem, offset, _, _):
            var lineNo = 1
            if let offset {
                lineNo += text.prefix(offset).reduce(0) { $0 + ($1 == "\n" || $1 == "\r\n" ? 1 : 0) }
            }
            return ReplicationError(.config, "\(source): yaml: line \(lineNo): \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            let keys = duplicates.map { goQuote($0) }.joined(separator: ", ")
            return ReplicationError(.config, "\(source): yaml: line \(max(context.mark.line, 1)): duplicate mapping key \(keys)")
        default:
            return ReplicationError(.config, "\(source): yaml: \(String(describing: y).split(separator: "\n").first ?? "")")
        }
    }
}
