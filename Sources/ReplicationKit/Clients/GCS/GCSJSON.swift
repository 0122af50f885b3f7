import Foundation

/// Percent-encoding for GCS JSON-API paths and query values.
enum GCSURL {
    /// Encodes every byte except RFC 3986 unreserved characters (`/` becomes `%2F`, as object names in JSON-API
    /// paths must be).
    static func encode(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    /// `?a=b&c=d` (encoded), or "" for no parameters.
    static func query(_ items: [(String, String)]) -> String {
        items.isEmpty ? "" : "?" + items.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }

    /// The base URL of the JSON API: `endpoint` key, else `STORAGE_EMULATOR_HOST` (with or without scheme; http
    /// when none), else Google. `emulator` is true for the first two.
    static func endpoint(configured: String?, environment: [String: String]) -> (base: String, emulator: Bool) {
        for candidate in [configured, environment["STORAGE_EMULATOR_HOST"]] {
            guard var e = candidate?.trimmingCharacters(in: .whitespaces), !e.isEmpty else { continue }
            if !e.contains("://") { e = "http://" + e }
            while e.hasSuffix("/") { e.removeLast() }
            return (e, true)
        }
        return ("https://storage.googleapis.com", false)
    }
}

/// One `objects.list` page.
struct GCSListPage: Equatable {
    struct Item: Equatable {
        var name: String
        var size: UInt64
        var created: Date
    }

    var items: [Item] = []
    var prefixes: [String] = []
    var nextPageToken: String?

    /// Parses `{"items": [{"name", "size", "timeCreated"}], "prefixes": [...], "nextPageToken": "..."}`; nil when
    /// the body is not such an object. `size` is a decimal string in the JSON API (a number is accepted too).
    static func parse(_ body: [UInt8]) -> GCSListPage? {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else { return nil }
        var page = GCSListPage()
        for raw in obj["items"] as? [[String: Any]] ?? [] {
            guard let name = raw["name"] as? String else { continue }
            let size: UInt64
            if let s = raw["size"] as? String { size = UInt64(s) ?? 0 } else { size = (raw["size"] as? NSNumber)?.uint64Value ?? 0 }
            let created = (raw["timeCreated"] as? String).flatMap(S3ReplicaClient.parseTimestamp)
                ?? (raw["updated"] as? String).flatMap(S3ReplicaClient.parseTimestamp) ?? Date(timeIntervalSince1970: 0)
            page.items.append(Item(name: name, size: size, created: created))
        }
        page.prefixes = obj["prefixes"] as? [String] ?? []
        if let t = obj["nextPageToken"] as? String, !t.isEmpty { page.nextPageToken = t }
        return page
    }
}

/// Google's JSON error body: `{"error": {"code": 404, "message": "…", "errors": [{"reason": "notFound", …}]}}`.
struct GCSErrorBody: Equatable {
    var reason: String?
    var message: String?

    /// Parses an error body (also OAuth-style `{"error": "invalid_token", "error_description": "…"}`); nil if none.
    static func parse(_ body: [UInt8]) -> GCSErrorBody? {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else { return nil }
        if let e = obj["error"] as? [String: Any] {
            let first = (e["errors"] as? [[String: Any]])?.first
            return GCSErrorBody(reason: first?["reason"] as? String ?? e["status"] as? String,
                                message: e["message"] as? String ?? first?["message"] as? String)
        }
        if let e = obj["error"] as? String { return GCSErrorBody(reason: e, message: obj["error_description"] as? String) }
        return nil
    }
}
