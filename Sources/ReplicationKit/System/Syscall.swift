#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The one place that retries a system call on EINTR and turns errno into an error naming the path at fault.
enum Syscall {
    /// Runs `body` until it does not fail with EINTR; returns its result or throws an error for `what` on `path`.
    @discardableResult
    static func retrying<T: BinaryInteger>(_ what: String, path: String, _ body: () -> T) throws -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = errno
            if e == EINTR { continue }
            throw error(what, path: path, errno: e)
        }
    }

    /// `stat(2)` into `st`; false when nothing exists at `path`.
    static func statOrNil(_ path: String, _ st: inout stat) throws -> Bool {
        while true {
            if stat(path, &st) == 0 { return true }
            let e = errno
            if e == EINTR { continue }
            if e == ENOENT || e == ENOTDIR { return false }
            throw error("stat", path: path, errno: e)
        }
    }

    /// Builds the user-facing error for a failed system call.
    static func error(_ what: String, path: String, errno e: Int32) -> ReplicationError {
        let text = String(cString: strerror(e))
        let code: ReplicationError.Code = (e == ENOENT) ? .notFound : .io
        return ReplicationError(code, "\(what) \(path): \(text.lowercased())", cause: .errno(e))
    }

    /// The machine's name from `gethostname` (Foundation's `hostName` may resolve it through DNS).
    static func hostName() -> String {
        var host = [UInt8](repeating: 0, count: 256)
        _ = host.withUnsafeMutableBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { gethostname($0, b.count - 1) }
        }
        return String(decoding: host.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// `date` as RFC 3339 in UTC with seconds (`2026-12-06T01:02:03Z`), without Foundation's formatters: they load
    /// the time-zone database, which cost the `-exec` start about a millisecond.
    static func utcTimestamp(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday))T\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec))Z"
    }
}
