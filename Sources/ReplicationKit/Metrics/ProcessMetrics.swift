#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The `process_*` family of the Go Prometheus client, read from /proc at scrape time (Linux only).
///
/// Values that cannot be read are left out rather than reported as 0 (as the Go collector does on error).
struct ProcessMetrics: Sendable {
    /// User + system CPU time, seconds.
    var cpuSeconds: Double?
    /// Open file descriptors.
    var openFDs: Double?
    /// Soft limit on open file descriptors.
    var maxFDs: Double?
    /// Virtual memory size, bytes.
    var virtualMemory: Double?
    /// Soft address-space limit, bytes; 2^64-1 when unlimited, as the Go client reports it.
    var virtualMemoryMax: Double?
    /// Resident set size, bytes.
    var residentMemory: Double?
    /// Process start time, seconds since the Unix epoch.
    var startTime: Double?

    /// Reads the current values.
    static func sample() -> ProcessMetrics {
        var m = ProcessMetrics()
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let stat = readText("/proc/self/stat"), let f = parseStat(stat), ticks > 0 {
            m.cpuSeconds = (f.utime + f.stime) / ticks
            m.virtualMemory = f.vsize
            m.residentMemory = f.rss * pageSize
            if let boot = readText("/proc/stat").flatMap(parseBootTime) {
                m.startTime = boot + f.starttime / ticks
            }
        }
        m.openFDs = countOpenFDs()
        m.maxFDs = softLimit(Int32(RLIMIT_NOFILE.rawValue))
        m.virtualMemoryMax = softLimit(Int32(RLIMIT_AS.rawValue))
        return m
    }

    /// The family in text format 0.0.4, with the Go client's names, help texts and types.
    func exposition() -> String {
        var s = ""
        func add(_ name: String, _ type: String, _ help: String, _ value: Double?) {
            guard let v = value else { return }
            s += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(Self.format(v))\n"
        }
        add("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpuSeconds)
        add("process_max_fds", "gauge", "Maximum number of open file descriptors.", maxFDs)
        add("process_open_fds", "gauge", "Number of open file descriptors.", openFDs)
        add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", residentMemory)
        add("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", startTime)
        add("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", virtualMemory)
        add("process_virtual_memory_max_bytes", "gauge", "Maximum amount of virtual memory available in bytes.",
            virtualMemoryMax)
        return s
    }

    /// Integral values below 2^53 as integers, others in Swift's shortest round-trip form (e.g. `1.8446744073709552e+19`).
    static func format(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 9_007_199_254_740_992 { return String(Int64(v)) }
        return "\(v)"
    }

    /// The fields of /proc/self/stat this family needs (field numbers as in proc(5)).
    struct StatFields: Equatable {
        var utime: Double      // 14
        var stime: Double      // 15
        var starttime: Double  // 22
        var vsize: Double      // 23
        var rss: Double        // 24, pages
    }

    /// Parses /proc/<pid>/stat; the command name (field 2) may contain spaces and parentheses, so fields are
    /// counted from the last `)`.
    static func parseStat(_ text: String) -> StatFields? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // rest[0] is field 3 (state).
        func field(_ n: Int) -> Double? { n - 3 < rest.count ? Double(rest[n - 3]) : nil }
        guard let ut = field(14), let st = field(15), let start = field(22), let vs = field(23), let rss = field(24) else {
            return nil
        }
        return StatFields(utime: ut, stime: st, starttime: start, vsize: vs, rss: rss)
    }

    /// The `btime` line of /proc/stat: boot time, seconds since the epoch.
    static func parseBootTime(_ text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    private static func readText(_ path: String) -> String? {
        guard let bytes = try? FileSystem.readSmallFile(path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Entries of /proc/self/fd (the descriptor of the listing itself included, as the Go client counts it).
    private static func countOpenFDs() -> Double? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var n = 0
        while let e = readdir(dir) {
            let isDot = withUnsafeBytes(of: e.pointee.d_name) { b in
                b[0] == UInt8(ascii: ".") && (b[1] == 0 || (b[1] == UInt8(ascii: ".") && b[2] == 0))
            }
            if !isDot { n += 1 }
        }
        return Double(n)
    }

    /// The soft limit of `resource`; RLIM_INFINITY becomes 2^64-1, which is what the Go client exports.
    private static func softLimit(_ resource: Int32) -> Double? {
        var r = rlimit()
        guard getrlimit(__rlimit_resource_t(UInt32(resource)), &r) == 0 else { return nil }
        // RLIM_INFINITY is ~0 on Linux (the C macro does not import into Swift).
        return r.rlim_cur == rlim_t.max ? Double(UInt64.max) : Double(r.rlim_cur)
    }
}
