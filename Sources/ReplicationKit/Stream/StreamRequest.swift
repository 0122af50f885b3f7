import Foundation

/// A parsed `GET /stream` query (INTERFACES §3.3), plus this project's two optional extensions.
public struct StreamRequest: Equatable, Sendable {
    /// Database path as the primary manages it.
    public var path: String
    /// The client's position; nil when it sent none (or only part of one): it then gets a snapshot.
    public var position: WALPosition?
    /// Extension: seconds between heartbeat records on an idle stream (only our client asks; upstream's never does).
    public var heartbeat: Duration?

    /// Creates a request.
    public init(path: String, position: WALPosition?, heartbeat: Duration? = nil) {
        self.path = path
        self.position = position
        self.heartbeat = heartbeat
    }

    /// Parses query parameters; the failure is the response to send (upstream's status and text).
    ///
    /// `generation` and `index` count only when both are present and non-empty; a generation that is not 16 hex
    /// digits can match nothing, so it is treated as absent. `offset` (extension, hex) refines `index`: the
    /// client already holds that index up to there, so the stream resumes mid-index without re-sending frames.
    public static func parse(_ q: [String: String]) -> Result<StreamRequest, SimpleHTTPResponse> {
        guard let path = q["path"], !path.isEmpty else { return .failure(.text(.badRequest, "Database name required")) }
        var index: UInt64?
        if let s = q["index"], !s.isEmpty {
            guard let v = Hex.parse(Substring(s)), v <= UInt64(Int64.max) else {
                return .failure(.text(.badRequest, "Invalid index query parameter"))
            }
            index = v
        }
        var offset: UInt64 = 0
        if let s = q["offset"], !s.isEmpty {
            guard let v = Hex.parse(Substring(s)), v <= UInt64(Int64.max) else {
                return .failure(.text(.badRequest, "Invalid offset query parameter"))
            }
            offset = v
        }
        var heartbeat: Duration?
        if let s = q["heartbeat"], !s.isEmpty {
            guard let v = Int(s), (1...3600).contains(v) else {
                return .failure(.text(.badRequest, "Invalid heartbeat query parameter"))
            }
            heartbeat = .seconds(v)
        }
        var position: WALPosition?
        if let g = q["generation"].flatMap({ Generation(name: $0) }), let i = index, i <= UInt64(maxWALIndex) {
            position = WALPosition(generation: g, index: UInt32(i), offset: offset)
        }
        return .success(StreamRequest(path: path, position: position, heartbeat: heartbeat))
    }

    /// The query string our client sends (parameters sorted by name, as upstream's client does).
    public static func query(path: String, position: WALPosition?, heartbeat: Duration?) -> String {
        var items: [(String, String)] = [("path", path)]
        if let p = position {
            items.append(("generation", p.generation.name))
            items.append(("index", Hex.format(p.index, width: 16)))
            items.append(("offset", Hex.format(p.offset, width: 16)))
        }
        if let h = heartbeat { items.append(("heartbeat", String(h.components.seconds))) }
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+;/?")
        return items.sorted { $0.0 < $1.0 }
            .map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }
            .joined(separator: "&")
    }
}
