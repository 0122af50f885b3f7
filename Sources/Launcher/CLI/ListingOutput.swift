import Foundation
import ReplicationKit

/// One item of a listing: its cells in the table and its object in the `-json` array.
struct ListingRow {
    let cells: [String]
    let json: [String: Any]
}

/// Writes a listing as the aligned table of upstream, or with `-json` as one JSON array of objects with the
/// snake_case fields documented in the README (times RFC 3339 UTC with milliseconds, sizes and positions integers).
struct ListingOutput {
    let json: Bool

    /// The `-json` flag of the listing commands.
    static func addFlag(to fs: inout GoFlagSet) {
        fs.bool("json", usage: "Writes the listing to stdout as one JSON array of objects (fields in the README).")
    }

    /// Writes the header and rows as a table, or the rows' objects as a JSON array.
    func write(header: [String], rows: [ListingRow]) {
        guard json else {
            StdoutWriter.write(TabWriter.render([header] + rows.map(\.cells)))
            return
        }
        let data = (try? JSONSerialization.data(withJSONObject: rows.map(\.json),
                                                options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("[]".utf8)
        StdoutWriter.write(String(decoding: data, as: UTF8.self) + "\n")
    }

    /// Reports a replica that could not be listed: on stdout as upstream does, but on stderr with `-json` so stdout
    /// stays one JSON document.
    func failure(_ line: String) {
        if json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { say(line) }
    }

    /// A time as RFC 3339 UTC with milliseconds, e.g. `2026-12-05T21:04:05.123Z`.
    static func time(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: d)
    }
}
