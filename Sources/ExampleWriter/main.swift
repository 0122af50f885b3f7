// example-writer: a tiny app that writes to a WAL-mode SQLite database at a steady rate,
// to watch `launcher replicate` at work. Usage:
//   example-writer [DB_PATH] [-rate TX_PER_SECOND] [-count N] [-checkpoint-every N]
// Without DB_PATH it writes to $LITESTREAM_DB_PATH, which `launcher -exec` sets for its child.
import CSQLite
import Foundation

struct Options {
    var path = ""
    var rate = 10.0
    var count = 0           // 0 = run until interrupted
    var checkpointEvery = 0 // 0 = never run our own checkpoint
}

func parse() -> Options? {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "-rate": guard let v = args.popFirst().flatMap(Double.init), v > 0 else { return nil }; o.rate = v
        case "-count": guard let v = args.popFirst().flatMap(Int.init), v >= 0 else { return nil }; o.count = v
        case "-checkpoint-every": guard let v = args.popFirst().flatMap(Int.init), v >= 0 else { return nil }; o.checkpointEvery = v
        default:
            if a.hasPrefix("-") || !o.path.isEmpty { return nil }
            o.path = a
        }
    }
    if o.path.isEmpty { o.path = ProcessInfo.processInfo.environment["LITESTREAM_DB_PATH"] ?? "" }
    return o.path.isEmpty ? nil : o
}

func check(_ rc: Int32, _ db: OpaquePointer?, _ what: String) {
    if rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW {
        let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "error \(rc)"
        FileHandle.standardError.write(Data("example-writer: \(what): \(msg)\n".utf8))
        exit(1)
    }
}

guard let opts = parse() else {
    FileHandle.standardError.write(Data("usage: example-writer [DB_PATH] [-rate TX_PER_SECOND] [-count N] [-checkpoint-every N]\n(DB_PATH defaults to $LITESTREAM_DB_PATH)\n".utf8))
    exit(2)
}
var db: OpaquePointer?
check(sqlite3_open(opts.path, &db), db, "open \(opts.path)")
sqlite3_busy_timeout(db, 5000)
check(sqlite3_exec(db, "PRAGMA journal_mode=wal; CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, payload TEXT NOT NULL);", nil, nil, nil), db, "create table")
var stmt: OpaquePointer?
check(sqlite3_prepare_v2(db, "INSERT INTO events (at, payload) VALUES (?, ?)", -1, &stmt, nil), db, "prepare")
let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
let interval = 1.0 / opts.rate
let start = Date()
var written = 0
print("example-writer: writing to \(opts.path) at \(opts.rate) tx/s" + (opts.count > 0 ? ", \(opts.count) transactions" : " until interrupted"))
while opts.count == 0 || written < opts.count {
    let at = ISO8601DateFormatter().string(from: Date())
    sqlite3_bind_text(stmt, 1, at, -1, transient)
    sqlite3_bind_text(stmt, 2, "event \(written + 1) " + String(repeating: "x", count: 64), -1, transient)
    check(sqlite3_step(stmt), db, "insert")
    sqlite3_reset(stmt)
    written += 1
    if opts.checkpointEvery > 0 && written % opts.checkpointEvery == 0 {
        sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE);", nil, nil, nil)
    }
    if written % 100 == 0 { print("example-writer: \(written) transactions") }
    let next = start.addingTimeInterval(Double(written) * interval)
    let wait = next.timeIntervalSinceNow
    if wait > 0 { Thread.sleep(forTimeInterval: wait) }
}
sqlite3_finalize(stmt)
sqlite3_close(db)
print("example-writer: done, \(written) transactions")
