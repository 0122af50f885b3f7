import Foundation
import Testing

extension ExecTests {
    /// Startup order (restore, then open, then spawn) and the final sync on every exit path.
    @Suite struct ExecReplicationTests {
        /// SQL inserting `n` rows into `t` (created if missing).
        static func insertSQL(_ n: Int) -> String {
            "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT); "
                + "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < \(n)) "
                + "INSERT INTO t(v) SELECT 'row-' || i FROM c;"
        }

        @Test("restore, then exec: the child's first action sees the N rows of the replica")
        func restoreThenExec() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let n = 250
            // Put N rows on the replica with plain `replicate`, then lose the local database.
            _ = try sqlite(sb.db, "PRAGMA journal_mode=wal; " + Self.insertSQL(n))
            let rep = try sb.launch(["replicate", sb.db, "file://" + sb.replica], log: "seed.log")
            try #require(rep.waitForOutput("snapshot written", timeout: 30), "\(rep.output)")
            rep.signal(SIGTERM)
            try #require(rep.wait(timeout: 30) == 0, "\(rep.output)")
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sb.db + suffix) }
            try? FileManager.default.removeItem(atPath: sb.db + "-litestream")

            let config = try sb.writeConfig()
            let count = sb.path("count")
            let r = try sb.run(["-config", config, "-exec",
                                "sh -c 'sqlite3 \"$LITESTREAM_DB_PATH\" \"SELECT count(*) FROM t\" > \(count)'"])
            #expect(r.status == 0, "\(r.output)")
            #expect(sb.read("count") == String(n), "\(r.output)")
            #expect(r.output.contains("restored \(sb.db) from replica"), "\(r.output)")
            // Restore happens before the databases are held (read guard), which happens before the spawn; the rest
            // of the open follows while the app starts.
            let restored = r.output.range(of: "restored \(sb.db)")
            let held = r.output.range(of: "holding db: \(sb.db)")
            let started = r.output.range(of: "exec process started")
            if let restored, let held, let started {
                #expect(restored.lowerBound < held.lowerBound && held.lowerBound < started.lowerBound, "\(r.output)")
            } else {
                Issue.record("missing startup lines:\n\(r.output)")
            }
            #expect(r.output.contains("initialized db: \(sb.db)"), "\(r.output)")
        }

        @Test("the app starts before the shadow generation exists; a launcher killed right then loses nothing")
        func appStartsBeforeTheFirstSyncAndACrashThenLosesNothing() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            // 48 MB of incompressible frames kept in the WAL (persistent WAL): the first sync copies and compresses
            // all of it, which takes far longer than the app's first command.
            let seed = "PRAGMA journal_mode=wal;\n.filectrl persist_wal 1\nCREATE TABLE b(x BLOB);\n"
                + "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 768) "
                + "INSERT INTO b SELECT randomblob(65536) FROM c;\n"
            try seed.write(toFile: sb.path("seed.sql"), atomically: true, encoding: .utf8)
            _ = try shell("sqlite3 '\(sb.db)' < '\(sb.path("seed.sql"))'")
            let walSize = (try? FileManager.default.attributesOfItem(atPath: sb.db + "-wal")[.size] as? Int) ?? 0
            try #require(walSize > 40_000_000, "the seed left no WAL: \(walSize) bytes")
            let config = try sb.writeConfig()
            let generation = sb.db + "-litestream/generation"
            // The app looks for the shadow generation first, then kills the launcher (as a crash would, with the
            // first sync in flight), then writes.
            let app = try sb.writeScript("app.sh", """
                if [ -e '\(generation)' ]; then echo present > '\(sb.path("seen"))'; else echo absent > '\(sb.path("seen"))'; fi
                kill -KILL $PPID
                sqlite3 "$LITESTREAM_DB_PATH" "\(Self.insertSQL(300))"
                touch '\(sb.path("done"))'
                """)
            let r = try sb.run(["-config", config, "-exec", app], timeout: 60)
            #expect(r.status != 0, "the launcher was not killed:\n\(r.output)")
            #expect(sb.waitForFile("done", timeout: 30), "the app did not finish")
            #expect(sb.read("seen") == "absent", "the shadow generation existed before the app started:\n\(r.output)")
            // The next start carries on from whatever the killed one left; nothing the app wrote is lost.
            let again = try sb.run(["-config", config, "-exec", "sqlite3 \(sb.db) \"\(Self.insertSQL(200))\""], timeout: 120,
                                   log: "again.log")
            #expect(again.status == 0, "\(again.output)")
            #expect(try sb.restoredRowCount() == 500)
            #expect(try sqlite(sb.path("restored.db"), "SELECT count(*) FROM b") == "768")
            #expect(try sqlite(sb.path("restored.db"), "PRAGMA integrity_check") == "ok")
        }

        @Test("no backup anywhere and no database: the child starts on a new database; the log says first boot")
        func firstBoot() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let app = try sb.writeScript("app.sh", """
                sqlite3 "$LITESTREAM_DB_PATH" "PRAGMA journal_mode; SELECT count(*) FROM sqlite_master WHERE substr(name, 1, 11) <> '_litestream'" > "$1"
                """)
            let r = try sb.run(["-config", config, "-exec", "\(app) \(sb.path("seen"))"])
            #expect(r.status == 0, "\(r.output)")
            #expect(sb.read("seen") == "wal\n0", "\(r.output)")
            #expect(r.output.contains("first boot: no backup of \(sb.db)"), "\(r.output)")
        }

        @Test("-no-restore: a missing database is not restored even though the replica has one")
        func noRestore() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            var r = try sb.run(["-config", config, "-exec", "sqlite3 \(sb.db) \"\(Self.insertSQL(5))\""], log: "seed.log")
            try #require(r.status == 0, "\(r.output)")
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: sb.db + suffix) }
            let app = try sb.writeScript("app.sh", """
                sqlite3 "$LITESTREAM_DB_PATH" "SELECT count(*) FROM sqlite_master WHERE name = 't'" > "$1"
                """)
            r = try sb.run(["-config", config, "-no-restore", "-exec", "\(app) \(sb.path("seen"))"])
            #expect(r.status == 0, "\(r.output)")
            #expect(sb.read("seen") == "0", "\(r.output)")
            #expect(r.output.contains("restore disabled by -no-restore"), "\(r.output)")
        }

        @Test("final sync: K rows written just before the child exits are all on the replica")
        func finalSyncAfterChildExit() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let k = 1000
            // sync-interval 1h: only the final sync can upload the rows.
            let config = try sb.writeConfig(syncInterval: "1h")
            let r = try sb.run(["-config", config, "-exec", "sqlite3 \(sb.db) \"\(Self.insertSQL(k))\""])
            #expect(r.status == 0, "\(r.output)")
            #expect(try sb.restoredRowCount() == k)
        }

        @Test("final sync also when the child exits non-zero after a relayed TERM")
        func finalSyncAfterTerm() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let k = 700
            let config = try sb.writeConfig(syncInterval: "1h")
            let app = try sb.writeScript("app.sh", """
                on_term() { sqlite3 "$LITESTREAM_DB_PATH" "\(Self.insertSQL(k))"; exit 3; }
                trap on_term TERM
                touch "$1"
                while :; do sleep 1 & wait $!; done
                """)
            let p = try sb.launch(["-config", config, "-exec", "\(app) \(sb.path("ready"))"])
            try #require(sb.waitForFile("ready"), "\(p.output)")
            p.signal(SIGTERM)
            #expect(p.wait(timeout: 30) == 3, "\(p.output)")
            #expect(try sb.restoredRowCount() == k)
        }

        @Test("final sync failure: replica unwritable → non-zero exit within the timeout, unsynced position logged")
        func finalSyncFailure() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig(syncInterval: "1h")
            // We run as root, so permissions do not stop writes: a regular file where the directory was does.
            let app = try sb.writeScript("app.sh", """
                sqlite3 "$LITESTREAM_DB_PATH" "\(Self.insertSQL(100))"
                # The replica may be uploading its first snapshot right now (recreating directories as rm
                # deletes them): retry until a regular file stands where the directory was.
                for i in $(seq 100); do
                  { rm -rf '\(sb.replica)' && echo not-a-directory > '\(sb.replica)'; } 2>/dev/null && break
                  sleep 0.05
                done
                """)
            let start = Date()
            let r = try sb.run(["-config", config, "-shutdown-timeout", "5s", "-exec", app])
            let elapsed = Date().timeIntervalSince(start)
            #expect(r.status == 1, "\(r.output)")
            #expect(elapsed < 5 + 3, "took \(elapsed)s")
            #expect(r.output.contains("final sync of \(sb.db) to replica \"file\""), "\(r.output)")
            #expect(r.output.contains("local position "), "\(r.output)")
            #expect(r.output.contains("exiting with status 1"), "\(r.output)")
        }

        @Test("during the final sync a first TERM only earns a hint, a second one cuts the sync short")
        func secondStopCutsFinalSyncShort() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig(syncInterval: "1h")
            // 80 MB of incompressible pages written just before the child exits: the final sync takes about a
            // second here, time enough for two signals.
            let sql = "CREATE TABLE t(b BLOB); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000) INSERT INTO t SELECT randomblob(4000) FROM c;"
            let p = try sb.launch(["-config", config, "-shutdown-timeout", "2m", "-exec", "sqlite3 \(sb.db) \"\(sql)\""])
            try #require(p.waitForOutput("final sync of every database", timeout: 60), "\(p.output)")
            p.signal(SIGTERM)
            try #require(p.waitForOutput("send TERM or INT again", timeout: 10), "\(p.output)")
            let second = Date()
            p.signal(SIGINT)
            let status = p.wait(timeout: 30)
            try #require(!p.output.contains("litestream shut down"),
                         "the final sync finished before the second signal; the test needs a slower sync\n\(p.output)")
            #expect(status == 1, "\(p.output)")
            #expect(Date().timeIntervalSince(second) < 5)
            #expect(p.output.contains("final sync cut short by a second stop signal"), "\(p.output)")
            #expect(p.output.contains("final sync incomplete: db=\(sb.db)"), "\(p.output)")
        }

        @Test("final sync over its deadline: non-zero exit (the child's code), unsynced replica named")
        func finalSyncTimeout() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig(syncInterval: "1h")
            // 8 MB of incompressible pages: copying, compressing and fsyncing them takes far longer than 1 ms.
            let sql = "CREATE TABLE t(b BLOB); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2000) INSERT INTO t SELECT randomblob(4000) FROM c;"
            let r = try sb.run(["-config", config, "-shutdown-timeout", "1ms", "-exec",
                                "sh -c 'sqlite3 \(sb.db) \"\(sql)\"; exit 4'"])
            #expect(r.status == 4, "\(r.output)")
            #expect(r.output.contains("final sync did not finish within 1ms"), "\(r.output)")
            #expect(r.output.contains("final sync incomplete: db=\(sb.db) replica=\"file\""), "\(r.output)")
        }
    }
}
