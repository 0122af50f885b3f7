import Foundation
import Testing

/// Helpers shared by UpstreamInteropTests, IdleTests and BadInputTests (black-box tests of the built binaries).
/// Everything lives under `Interop` so the names cannot clash with other test files of the target.
enum Interop {
    // MARK: - Waiting without blocking the test runner's threads

    // Swift Testing runs suites concurrently on the cooperative pool (2 threads on a 2-core machine); the
    // synchronous helpers of TestSupport block a pool thread while they wait. Long waits here suspend instead.

    /// Checks `condition` every `interval` until it is true or `timeout` seconds pass; returns the last result.
    static func eventually(timeout: TimeInterval, interval: Duration = .milliseconds(50),
                           _ condition: () throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            try await Task.sleep(for: interval)
        }
        return try condition()
    }

    /// Waits up to `timeout` seconds for `p` to exit; returns its status, or nil on timeout.
    static func exitStatus(_ p: RunningProcess, timeout: TimeInterval) async throws -> Int32? {
        guard try await eventually(timeout: timeout, { !p.process.isRunning }) else { return nil }
        return p.process.terminationStatus
    }

    /// Like `runCommand`, but suspends while the command runs; output goes to `scratch/<logName>`.
    static func run(_ scratch: TestSandbox, _ executable: String, _ arguments: [String], logName: String,
                    timeout: TimeInterval = 120) async throws -> (status: Int32, output: String) {
        let p = try scratch.start(executable, arguments, log: logName)
        guard let status = try await exitStatus(p, timeout: timeout) else {
            p.signal(SIGKILL)
            _ = try await exitStatus(p, timeout: 10)
            throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)s:\n\(p.output)")
        }
        return (status, p.output)
    }

    // MARK: - Databases

    /// Creates a WAL-mode database with the `events` table (the schema example-writer uses) and `rows` rows.
    static func makeDatabase(_ path: String, rows: Int = 0) throws {
        var sql = "PRAGMA journal_mode=wal; CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, payload TEXT NOT NULL);"
        if rows > 0 {
            sql += "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(rows)) "
            sql += "INSERT INTO events (at, payload) SELECT datetime('now'), 'seed ' || i || ' ' || hex(randomblob(32)) FROM n;"
        }
        _ = try sqlite(path, sql)
    }

    /// Inserts `count` rows, one transaction each.
    static func insertRows(_ db: String, count: Int, tag: String) throws {
        var sql = "PRAGMA busy_timeout=10000;"
        for i in 0..<count {
            sql += "INSERT INTO events (at, payload) VALUES (datetime('now'), '\(tag) \(i) ' || hex(randomblob(40)));"
        }
        _ = try sqlite(db, sql)
    }

    /// Every row of `events`, in id order, one line per row (for exact comparison of two databases).
    static func eventRows(_ db: String) throws -> String {
        try sqlite(db, "SELECT id || '|' || at || '|' || payload FROM events ORDER BY id;")
    }

    static func rowCount(_ db: String) throws -> Int {
        Int(try sqlite(db, "SELECT count(*) FROM events;")) ?? -1
    }

    static func integrityCheck(_ db: String) throws -> String {
        try sqlite(db, "PRAGMA integrity_check;")
    }

    /// Runs `launcher restore -o OUT REPLICA_URL` and compares OUT with `source`. Returns nil when equal, else a
    /// description of the difference. OUT is removed afterwards unless `keep`.
    static func restoreAndCompare(replicaURL: String, source: String, out: String, keep: Bool = false) throws -> String? {
        for f in [out, out + "-wal", out + "-shm"] { try? FileManager.default.removeItem(atPath: f) }
        defer {
            if !keep { for f in [out, out + "-wal", out + "-shm"] { try? FileManager.default.removeItem(atPath: f) } }
        }
        let r = try runCommand(TestSupport.launcher, ["restore", "-o", out, replicaURL], timeout: 120)
        guard r.status == 0 else { return "restore exited \(r.status):\n\(r.output)" }
        let ic = try integrityCheck(out)
        guard ic == "ok" else { return "integrity_check of restored db: \(ic)" }
        let want = try eventRows(source)
        let got = try eventRows(out)
        if want != got {
            let w = want.split(separator: "\n").count, g = got.split(separator: "\n").count
            return "restored rows differ from source: source has \(w) rows, restore has \(g)"
        }
        return nil
    }

    // MARK: - Replica directories

    /// A fingerprint of a directory tree: relative path → kind, mode, size, FNV-1a of the content.
    static func treeFingerprint(_ root: String) -> [String: String] {
        var result: [String: String] = [:]
        guard let e = FileManager.default.enumerator(atPath: root) else { return result }
        while let rel = e.nextObject() as? String {
            let full = (root as NSString).appendingPathComponent(rel)
            var st = stat()
            guard lstat(full, &st) == 0 else { result[rel] = "unstatable"; continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                result[rel] = "dir mode=\(String(st.st_mode & 0o7777, radix: 8))"
            } else {
                let data = FileManager.default.contents(atPath: full) ?? Data()
                result[rel] = "file mode=\(String(st.st_mode & 0o7777, radix: 8)) size=\(data.count) fnv=\(fnv1a(data))"
            }
        }
        return result
    }

    static func fnv1a(_ data: Data) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in data {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return String(h, radix: 16)
    }

    /// Regular files below `root`, as paths relative to it, sorted.
    static func files(under root: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: (root as NSString).appendingPathComponent(rel), isDirectory: &isDir),
               !isDir.boolValue {
                out.append(rel)
            }
        }
        return out.sorted()
    }

    /// Generation directories under `root/generations`.
    static func generations(under root: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: (root as NSString).appendingPathComponent("generations"))) ?? [])
            .sorted()
    }

    /// Builds a small replica with the launcher itself: `db` gets seed rows, `launcher replicate` writes the
    /// snapshot, a few more transactions go out as WAL segments, then SIGTERM. Returns the replica's files.
    static func makeLauncherReplica(scratch: TestSandbox, db: String, replicaDir: String) async throws -> [String] {
        try makeDatabase(db, rows: 50)
        let p = try scratch.start(TestSupport.launcher, ["replicate", db, "file://" + replicaDir],
                                  log: "fixture-replicate.log")
        guard try await eventually(timeout: 60, { p.output.contains("snapshot written") }) else {
            throw TestFailure("fixture: no snapshot written within 60s:\n\(p.output)")
        }
        try insertRows(db, count: 20, tag: "fixture")
        // The launcher pushes every 1 s; wait until a WAL segment past the start of the index is on the replica.
        let gotSegment = try await eventually(timeout: 60) {
            files(under: replicaDir).contains { $0.contains("/wal/") && !$0.hasSuffix("0000000000000000.wal.lz4") }
        }
        p.signal(SIGTERM)
        let status = try await exitStatus(p, timeout: 60)
        guard gotSegment, status == 0 else {
            throw TestFailure("fixture: replicate did not push WAL or exit cleanly (status \(String(describing: status))):\n\(p.output)")
        }
        return files(under: replicaDir)
    }

    // MARK: - Output inspection

    /// Non-blank lines of `output`.
    static func nonBlankLines(_ output: String) -> [String] {
        output.split(whereSeparator: \.isNewline).map(String.init)
            .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    }

    /// Non-blank lines that are not informational log lines (startup banner, progress): a line is informational
    /// when it starts with a timestamp (ISO 8601 or Go `2006/01/02 15:04:05`) and carries no error/warning level.
    static func errorLines(_ output: String) -> [String] {
        nonBlankLines(output).filter { !isInformationalLogLine($0) }
    }

    static func isInformationalLogLine(_ line: String) -> Bool {
        let iso = #/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?\s/#
        let go = #/^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?\s/#
        guard line.prefixMatch(of: iso) != nil || line.prefixMatch(of: go) != nil else { return false }
        let upper = line.uppercased()
        return !(upper.contains(" ERROR") || upper.contains(" WARN") || upper.contains("LEVEL=ERROR")
                 || upper.contains("LEVEL=WARN"))
    }

    // MARK: - /proc

    struct IOCounters: Equatable, CustomStringConvertible {
        var rchar: UInt64 = 0, wchar: UInt64 = 0, syscr: UInt64 = 0, syscw: UInt64 = 0
        var description: String { "rchar=\(rchar) wchar=\(wchar) syscr=\(syscr) syscw=\(syscw)" }
    }

    /// `/proc/PID/io` (whole thread group).
    static func io(_ pid: Int32) throws -> IOCounters {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8) else {
            throw TestFailure("cannot read /proc/\(pid)/io")
        }
        var c = IOCounters()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let v = UInt64(parts[1]) else { continue }
            switch parts[0] {
            case "rchar": c.rchar = v
            case "wchar": c.wchar = v
            case "syscr": c.syscr = v
            case "syscw": c.syscw = v
            default: break
            }
        }
        return c
    }

    /// utime + stime of the whole process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
    static func cpuTicks(_ pid: Int32) throws -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else {
            throw TestFailure("cannot read /proc/\(pid)/stat")
        }
        // Fields after "comm)": state is field 3, so utime (14) is index 11 and stime (15) index 12.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let u = UInt64(fields[11]), let s = UInt64(fields[12]) else {
            throw TestFailure("cannot parse /proc/\(pid)/stat: \(text)")
        }
        return u + s
    }

    /// Context switches (voluntary + involuntary) per live thread of `pid`.
    static func contextSwitches(_ pid: Int32) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        for t in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/status", encoding: .utf8) else { continue }
            var n: UInt64 = 0
            for line in text.split(separator: "\n") where line.contains("ctxt_switches:") {
                n += UInt64(line.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "") ?? 0
            }
            out[t] = n
        }
        return out
    }

    /// Wake-ups between two samples: growth of threads alive in both plus all switches of new threads.
    static func wakeups(before: [String: UInt64], after: [String: UInt64]) -> UInt64 {
        after.reduce(0) { sum, kv in
            let (tid, n) = kv
            return sum + (n - min(n, before[tid] ?? 0))
        }
    }

    // MARK: - Tools

    /// Whether `path` is an executable file.
    static func isExecutable(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }

    /// Looks `name` up in `$PATH`.
    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if isExecutable(candidate) { return candidate }
        }
        return nil
    }
}
