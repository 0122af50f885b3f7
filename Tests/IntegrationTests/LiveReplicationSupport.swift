import CSQLite
import Foundation
import Testing

/// Helpers for the live read replication tests: primary and follower launchers, HTTP requests, a polling reader.
enum LiveHarness {
    typealias H = ReplicationHarness

    /// Starts a primary `launcher replicate -addr 127.0.0.1:PORT` for `db` (port 0: any) and returns it with its URL.
    static func startPrimary(_ sb: H.Sandbox, db: String, port: Int = 0, log: String,
                             extraConfig: String = "") throws -> (RunningProcess, String) {
        let config = sb.path("primary-\(log).yml")
        try """
        addr: "127.0.0.1:\(port)"
        dbs:
          - path: "\(db)"
        \(extraConfig)
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let p = try H.startReplicate(sb, ["-config", config], log: log)
        guard let url = serverURL(p) else { throw TestFailure("no serving line in the primary log:\n\(H.tail(p.output))") }
        return (p, url)
    }

    /// Config text of a follower of `primaryDB` on `url`.
    static func followerConfig(_ sb: H.Sandbox, local: String, url: String, primaryDB: String, name: String,
                               addr: String? = nil) throws -> String {
        let config = sb.path("\(name).yml")
        try """
        \(addr.map { "addr: \"\($0)\"" } ?? "")
        dbs:
          - path: "\(local)"
            upstream:
              url: "\(url)"
              path: "\(primaryDB)"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    /// Starts a follower launcher (no child).
    static func startFollower(_ sb: H.Sandbox, local: String, url: String, primaryDB: String, name: String) throws -> RunningProcess {
        let config = try followerConfig(sb, local: local, url: url, primaryDB: primaryDB, name: name)
        return try H.startReplicate(sb, ["-config", config], log: "\(name).log")
    }

    /// `http://127.0.0.1:PORT` from the launcher's serving line.
    static func serverURL(_ p: RunningProcess) -> String? {
        guard poll(timeout: 30, { p.output.contains("serving metrics") }) else { return nil }
        for line in p.output.split(separator: "\n") where line.contains("serving metrics") {
            if let r = line.range(of: "http://") {
                return String(line[r.lowerBound...].prefix { $0 != " " })
            }
        }
        return nil
    }

    /// One HTTP request with curl: (status, body).
    static func http(_ url: String, method: String = "GET", maxTime: Int = 10) throws -> (status: Int, body: String) {
        let r = try runCommand("/usr/bin/curl", ["-s", "-X", method, "-m", String(maxTime), "-w", "\n%{http_code}", url],
                               timeout: TimeInterval(maxTime + 10))
        var lines = r.output.components(separatedBy: "\n")
        let code = Int(lines.popLast() ?? "") ?? -1
        // The body's own final newline (Go's http.Error ends messages with one) is not part of the message.
        var body = lines.joined(separator: "\n")
        if body.hasSuffix("\n") { body.removeLast() }
        return (code, body)
    }

    /// Rows of `events` as text, or nil while the database cannot be read yet.
    static func rows(_ db: String) -> [String]? {
        guard FileManager.default.fileExists(atPath: db) else { return nil }
        return try? H.eventRows(db)
    }

    /// Waits until `replica` holds exactly the rows of `primary`; nil on success, else a description.
    static func converge(_ replica: String, to primary: String, timeout: TimeInterval = 90) -> String? {
        guard let want = rows(primary) else { return "primary \(primary) unreadable" }
        var last: [String]?
        if poll(timeout: timeout, { last = rows(replica); return last == want }) { return nil }
        return "replica \(replica) has \(last?.count ?? -1) rows, primary \(want.count): "
            + (H.difference(expected: want, actual: last ?? []) ?? "")
    }

    /// Number of occurrences of `text` in `p`'s output.
    static func count(_ text: String, in p: RunningProcess) -> Int {
        p.output.components(separatedBy: text).count - 1
    }
}

/// Polls a replica database from its own connection on its own thread, the way a read-only app does, and records
/// anything a reader must never see: the row count going down, a torn row, or a SQLite error other than BUSY.
final class ReplicaReader: @unchecked Sendable {
    // @unchecked: the counters are written by the reader thread and read after `stop()` joined it.
    private let path: String
    private let stopFlag = NSLock()
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    private(set) var reads = 0
    private(set) var maxCount = 0
    private(set) var problems: [String] = []

    init(path: String) {
        self.path = path
        Thread.detachNewThread { [self] in run(); done.signal() }
    }

    private var shouldStop: Bool { stopFlag.lock(); defer { stopFlag.unlock() }; return stopping }

    private func run() {
        var db: OpaquePointer?
        while !shouldStop {
            if db == nil {
                if FileManager.default.fileExists(atPath: path),
                   sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK {
                    sqlite3_busy_timeout(db, 2000)
                } else {
                    sqlite3_close(db)
                    db = nil
                    usleep(5_000)
                    continue
                }
            }
            // One read transaction: the count, the id range and the well-formedness of every row must agree.
            let sql = """
            SELECT count(*), coalesce(max(id), 0), coalesce(min(id), 1),
                   sum(payload NOT GLOB 'event [0-9]* xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'
                       OR length(at) < 20)
            FROM events
            """
            var stmt: OpaquePointer?
            var rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
            if rc == SQLITE_OK { rc = sqlite3_step(stmt) }
            if rc == SQLITE_ROW {
                let count = Int(sqlite3_column_int64(stmt, 0)), maxID = Int(sqlite3_column_int64(stmt, 1))
                let minID = Int(sqlite3_column_int64(stmt, 2)), bad = Int(sqlite3_column_int64(stmt, 3))
                reads += 1
                if count < maxCount { problems.append("row count went down from \(maxCount) to \(count)") }
                if count > 0 && maxID - minID + 1 != count { problems.append("ids \(minID)...\(maxID) but \(count) rows") }
                if bad > 0 { problems.append("\(bad) malformed rows at count \(count)") }
                maxCount = max(maxCount, count)
            } else if rc != SQLITE_BUSY && rc != SQLITE_LOCKED {
                let msg = String(cString: sqlite3_errmsg(db))
                // Before the first snapshot the table does not exist yet.
                if !(maxCount == 0 && msg.contains("no such table")) { problems.append("sqlite error \(rc): \(msg)") }
            }
            sqlite3_finalize(stmt)
            if problems.count > 20 { break }
            usleep(2_000)
        }
        sqlite3_close(db)
    }

    /// Stops the reader and waits for it.
    func stop() {
        stopFlag.lock()
        stopping = true
        stopFlag.unlock()
        done.wait()
    }
}
