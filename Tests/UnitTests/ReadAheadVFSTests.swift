import Foundation
import Testing
@testable import ReplicationKit

/// The read-ahead VFS the restore's `quick_check` reads through (CSQLite's shim): the same answers as the
/// default VFS, corruption anywhere in the file still found, and no stale window after a write.
@Suite("Read-ahead VFS")
struct ReadAheadVFSTests {
    /// A WAL-mode database of about 6 MB (a table and an index, so quick_check walks pages out of file order),
    /// checkpointed; its size is not a multiple of the 64 KiB window.
    static func makeDatabase() throws -> (dir: String, path: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rkvfs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/db"
        let c = try SQLiteConnection(path: path, create: true)
        try c.exec("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT);
            CREATE INDEX t_k ON t(k);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
            INSERT INTO t SELECT i, hex(randomblob(8)), 'row ' || i || ' ' || hex(randomblob(100)) FROM n;
            INSERT INTO t(k, v) VALUES ('tail', 'x');
            PRAGMA wal_checkpoint(TRUNCATE);
            """)
        // The page count depends on the random keys: grow the file until its last 64 KiB window is partial.
        while try FileSystem.info(path)!.size % 65536 == 0 {
            try c.exec("INSERT INTO t(k, v) VALUES (hex(randomblob(8)), hex(randomblob(2000))); PRAGMA wal_checkpoint(TRUNCATE);")
        }
        c.close()
        return (dir, path)
    }

    /// Runs `body` with a fresh database and a connection to it through the read-ahead VFS (small page cache,
    /// after `pragmas`); removes the database afterwards.
    static func withReader(_ pragmas: String, _ body: (_ path: String, _ ahead: SQLiteConnection) throws -> Void) throws {
        let (dir, path) = try makeDatabase()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let vfs: String = try #require(SQLiteConnection.readAheadVFS)
        let ahead = try SQLiteConnection(path: path, vfs: vfs)
        defer { ahead.close() }
        try ahead.exec(pragmas + " PRAGMA cache_size = -64;")
        try body(path, ahead)
    }

    static func summary(_ c: SQLiteConnection) throws -> [[String?]] {
        try c.queryRows("SELECT count(*), sum(length(v)), sum(unicode(substr(k, 1)) * id), max(k) FROM t")
    }

    @Test func answersAsTheDefaultVFSAndQuickChecksOK() throws {
        try Self.withReader("PRAGMA mmap_size = 0;") { path, ahead in
            let size = try #require(try FileSystem.info(path)?.size)
            #expect(size > 32 * 65536 && size % 65536 != 0, "size \(size)")
            let plain = try SQLiteConnection(path: path)
            defer { plain.close() }
            #expect(try Self.summary(ahead) == Self.summary(plain))
            #expect(try ahead.queryRows("PRAGMA quick_check") == [["ok"]])
            #expect(try ahead.queryRows("SELECT v FROM t WHERE k = 'tail'") == [["x"]])
        }
    }

    @Test func corruptionPastTheCachedWindowsIsFound() throws {
        try Self.withReader("PRAGMA mmap_size = 0;") { path, ahead in
            // A b-tree page near the end of the file (beyond 16 windows of 64 KiB) gets an invalid page type
            // (nothing has been read through the connection yet).
            let size = try #require(try FileSystem.info(path)?.size)
            let page = Int(size / 4096) - 3
            let fd = try FileDescriptor.open(path, flags: O_RDWR)
            defer { try? fd.close() }
            let type = try fd.pread(count: 1, at: UInt64(page * 4096))
            #expect([2, 5, 10, 13].contains(type.first ?? 0), "page \(page + 1) type \(type)")
            try [UInt8(0x07)].withUnsafeBytes { try fd.pwriteAll($0, at: UInt64(page * 4096)) }
            // Found either as rows naming the damage or as SQLITE_CORRUPT, as with the default VFS.
            do {
                let rows = try ahead.queryRows("PRAGMA quick_check")
                #expect(rows != [["ok"]] && !rows.isEmpty, "\(rows)")
            } catch let e as ReplicationError {
                #expect(e.message.contains("malformed"), "\(e.message)")
            }
        }
    }

    @Test func walModeReadsSeeAnotherConnectionsCheckpoint() throws {
        // The reader keeps its file lock between transactions in WAL mode; a checkpoint elsewhere rewrites pages.
        try Self.withReader("") { path, ahead in
            #expect(try ahead.queryRows("SELECT v FROM t WHERE id = 9") != [["moved"]])
            let other = try SQLiteConnection(path: path)
            defer { other.close() }
            try other.exec("UPDATE t SET v = 'moved' WHERE id = 9; UPDATE t SET v = 'too' WHERE id = 19000;")
            _ = try other.queryRows("PRAGMA wal_checkpoint(TRUNCATE)")
            #expect(try ahead.queryRows("SELECT v FROM t WHERE id IN (9, 19000) ORDER BY id") == [["moved"], ["too"]])
            #expect(try ahead.queryRows("PRAGMA quick_check") == [["ok"]])
        }
    }

    @Test func writesAreSeenByLaterReads() throws {
        try Self.withReader("PRAGMA journal_mode=DELETE;") { path, ahead in
            #expect(try ahead.queryRows("SELECT v FROM t WHERE id = 7") != [["changed"]])
            // Through this connection (its own writes), then through another one while this one holds no lock.
            try ahead.exec("UPDATE t SET v = 'changed' WHERE id = 7")
            #expect(try ahead.queryRows("SELECT v FROM t WHERE id = 7") == [["changed"]])
            let other = try SQLiteConnection(path: path)
            try other.exec("UPDATE t SET v = 'again' WHERE id = 7; DELETE FROM t WHERE id > 15000;")
            other.close()
            #expect(try ahead.queryRows("SELECT v FROM t WHERE id = 7") == [["again"]])
            #expect(try ahead.queryInt("SELECT count(*) FROM t") == 15000)
            #expect(try ahead.queryRows("PRAGMA quick_check") == [["ok"]])
        }
    }
}
