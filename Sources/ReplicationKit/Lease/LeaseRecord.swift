import Foundation

/// The content of `lease.json`: who holds the lease and until when, as JSON that operators can read.
///
/// The holder's clock writes `acquiredAt`/`expiresAt`; other launchers do not trust it alone (see `ReplicaLease`).
public struct LeaseRecord: Codable, Sendable, Equatable {
    /// `hostname:pid` of the holding launcher.
    public var owner: String
    /// A random id of the holding launcher process (distinguishes a restarted process with the same pid).
    public var instance: String
    /// When the holder took the lease (holder's clock).
    public var acquiredAt: Date
    /// When the lease ends unless renewed (holder's clock).
    public var expiresAt: Date
    /// The holder's ttl in seconds: a waiting launcher waits at least this long after the last change it saw.
    public var ttlSeconds: Double
    /// The generation the holder writes, when it has one.
    public var generation: String?
    /// The database the lease protects (the holder's path).
    public var database: String
    /// Renewals so far (makes every write of the object distinct).
    public var renewals: UInt64

    enum CodingKeys: String, CodingKey {
        case owner, instance, generation, database, renewals
        case acquiredAt = "acquired_at"
        case expiresAt = "expires_at"
        case ttlSeconds = "ttl_seconds"
    }

    /// Encodes as pretty JSON with RFC 3339 times.
    public func encoded() -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(LeaseRecord.format(date))
        }
        // Encoding plain strings, numbers and dates cannot fail.
        return Array((try? e.encode(self)) ?? Data()) + [UInt8(ascii: "\n")]
    }

    /// Decodes `lease.json`.
    /// - Throws: `.corrupt` naming `location` when the bytes are not a lease record.
    public static func decode(_ data: [UInt8], location: String) throws -> LeaseRecord {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let s = try decoder.singleValueContainer().decode(String.self)
            guard let date = parse(s) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an RFC 3339 time: \(s)"))
            }
            return date
        }
        do {
            return try d.decode(LeaseRecord.self, from: Data(data))
        } catch {
            let why: String
            switch error {
            case DecodingError.keyNotFound(let k, _): why = "no \(goQuote(k.stringValue)) field"
            case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c), DecodingError.dataCorrupted(let c):
                why = c.codingPath.isEmpty ? "not JSON" : "bad \(goQuote(c.codingPath.map(\.stringValue).joined(separator: "."))) field"
            default: why = "not JSON"
            }
            throw ReplicationError(.corrupt, "lease object \(location) is unreadable (\(why), \(data.count) bytes): it was not "
                + "written by this launcher; if no launcher runs for this replica, delete it and start again")
        }
    }

    /// `2026-12-05T20:41:07.123Z`
    static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    static func parse(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }
}
