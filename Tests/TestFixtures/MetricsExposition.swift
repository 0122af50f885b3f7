import Foundation
import ReplicationKit

/// One parsed Prometheus exposition: samples keyed by `name{labels}` exactly as emitted, plus the `# TYPE` of each family.
public struct MetricsExposition {
    public var samples: [String: Double] = [:]
    public var types: [String: String] = [:]
    public var helps: [String: String] = [:]
    public var malformed: [String] = []

    /// The process's metrics now.
    public static func scrape() -> MetricsExposition { MetricsExposition(ReplicationMetrics.exposition()) }

    public init(_ bytes: [UInt8]) {
        let sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { continue }
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ", maxSplits: 1)
                guard parts.count == 2 else { malformed.append(String(line)); continue }
                if line.hasPrefix("# TYPE ") { types[String(parts[0])] = String(parts[1]) } else { helps[String(parts[0])] = String(parts[1]) }
            } else if let m = line.wholeMatch(of: sample), let v = Double(m.2) {
                samples[String(m.1)] = v
            } else {
                malformed.append(String(line))
            }
        }
    }

    /// The value of `name{db="<db>"[,extra]}`.
    public func value(_ name: String, db: String, _ extra: String = "") -> Double? {
        samples["\(name){db=\"\(db)\"\(extra.isEmpty ? "" : "," + extra)}"]
    }
}
