import Foundation
import Logging

/// Writes one line per event to stdout: time, level, message, then `key=value` metadata.
struct StdoutLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String) {
        self.label = label
        if let env = ProcessInfo.processInfo.environment["LAUNCHER_LOG_LEVEL"], let l = Logger.Level(rawValue: env) {
            logLevel = l
        }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        var text = "\(Self.timestamp()) \(event.level.rawValue.uppercased()) \(event.message)"
        for key in all.keys.sorted() { text += " \(key)=\(all[key]!)" }
        text += "\n"
        StdoutWriter.write(text)
    }

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        return timestamp(tv)
    }

    /// `2006-01-02T15:04:05.000Z` (UTC, milliseconds) for `tv`.
    static func timestamp(_ tv: timeval) -> String {
        var t = time_t(tv.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        // Plain string building, not String(format:): Foundation's formatter costs a dynamic cast per argument, and
        // its first use (the launcher's first log line, before the app is spawned) a scan of every conformance.
        func d(_ v: Int32, _ width: Int) -> String { String(v).leftPadded(width) }
        return "\(d(tmv.tm_year + 1900, 4))-\(d(tmv.tm_mon + 1, 2))-\(d(tmv.tm_mday, 2))T\(d(tmv.tm_hour, 2)):"
            + "\(d(tmv.tm_min, 2)):\(d(tmv.tm_sec, 2)).\(d(Int32(tv.tv_usec / 1000), 3))Z"
    }
}

/// Serialises writes to stdout so lines from different threads never interleave.
enum StdoutWriter {
    private static let lock = NSLock()

    static func write(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Foundation.write(1, $0.baseAddress! + done, $0.count - done) }
            if n < 0 { if errno == EINTR { continue } else { return } }
            done += n
        }
    }
}
