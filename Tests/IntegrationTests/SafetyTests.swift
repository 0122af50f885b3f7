import Foundation
import Testing

/// Black-box tests of the configurations and process situations that used to wedge or mislead (issue 11):
/// a second launcher on one database, one database listed twice, a replica inside the metadata directory, keys
/// that are not acted on.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct SafetyTests {
        typealias H = ReplicationHarness

        /// A second `replicate` on a database another launcher replicates refuses to start, naming the holder; the
        /// first keeps replicating and stops cleanly; once it is gone (even by SIGKILL) the database can be claimed.
        @Test func secondLauncherOnOneDatabaseRefusesToStart() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), out = sb.path("restored.db")
            try H.runWriter(db, count: 1)
            let first = try H.startReplicate(sb, [db, sb.url("r1")], log: "first.log")

            let second = try H.launcher(["replicate", db, sb.url("r2")], timeout: 60)
            #expect(second.status == 1, "\(second.output)")
            #expect(second.output.contains("database \(db) is already replicated by another process (pid=\(first.process.processIdentifier) "),
                    "\(second.output)")
            #expect(second.output.contains("\(db)-litestream/lock is locked"), "\(second.output)")
            // The refused launcher wrote nothing: no second replica, and the first one's shadow WAL is untouched.
            #expect(!FileManager.default.fileExists(atPath: sb.path("r2")))

            // The first is not wedged: it replicates new rows and its final sync succeeds.
            try H.runWriter(db, rate: 1000, count: 300)
            #expect(H.stop(first) == 0, "\(H.tail(first.output))")
            #expect(!first.output.contains("non-contiguous"), "\(H.tail(first.output))")
            try H.restore(["-o", out, sb.url("r1")])
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out)) == nil)

            // The lock died with its holder: a new launcher starts, even after a SIGKILL.
            let third = try H.startReplicate(sb, [db, sb.url("r1")], log: "third.log")
            third.signal(SIGKILL)
            _ = third.wait(timeout: 10)
            let fourth = try H.startReplicate(sb, [db, sb.url("r1")], log: "fourth.log")
            #expect(H.stop(fourth) == 0, "\(H.tail(fourth.output))")
        }

        /// The app started by `-exec` does not inherit the claim: after the launcher dies, a new one starts while
        /// the orphaned app still runs.
        @Test func theAppDoesNotInheritTheLock() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), pidFile = sb.path("app.pid")
            try H.runWriter(db, count: 1)
            let config = sb.path("l.yml")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - url: \(sb.url("r"))\n".write(toFile: config, atomically: true, encoding: .utf8)
            let supervised = try sb.start(TestSupport.launcher,
                                          ["-config", config, "-exec", "sh -c 'echo $$ > \(pidFile); exec sleep 60'"],
                                          log: "supervised.log")
            #expect(poll(timeout: 60) { (try? String(contentsOfFile: pidFile, encoding: .utf8))?.isEmpty == false },
                    "\(H.tail(supervised.output))")
            supervised.signal(SIGKILL)
            _ = supervised.wait(timeout: 10)
            let appPID = Int32((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            defer { if appPID > 0 { kill(appPID, SIGKILL) } }
            #expect(appPID > 0 && kill(appPID, 0) == 0, "the orphaned app should still run")
            let next = try H.startReplicate(sb, ["-config", config], log: "next.log")
            #expect(H.stop(next) == 0, "\(H.tail(next.output))")
        }

        /// One database under two spellings (`..`, a symbolic link) is refused at startup naming both entries.
        @Test func theSameDatabaseListedTwiceIsRefused() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("data/app.db")
            try FileManager.default.createDirectory(atPath: sb.path("data/sub"), withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: sb.path("link"), withDestinationPath: sb.path("data"))
            try H.runWriter(db, count: 1)
            for other in [sb.path("data/sub/../app.db"), sb.path("link/app.db")] {
                let config = sb.path("twice.yml")
                try """
                    dbs:
                      - path: \(db)
                        replicas: [{url: \(sb.url("r1"))}]
                      - path: \(other)
                        replicas: [{url: \(sb.url("r2"))}]
                    """.write(toFile: config, atomically: true, encoding: .utf8)
                let r = try H.launcher(["replicate", "-config", config], timeout: 60)
                #expect(r.status == 1, "\(r.output)")
                #expect(r.output.contains("dbs[1] (") && r.output.contains("and dbs[0] (\(db)) are the same database file"), "\(r.output)")
                #expect(!FileManager.default.fileExists(atPath: sb.path("r1")) && !FileManager.default.fileExists(atPath: sb.path("r2")))
            }
        }

        /// A file replica inside the database's own `-litestream` directory is refused.
        @Test func aReplicaInsideTheMetadataDirectoryIsRefused() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            try H.runWriter(db, count: 1)
            let r = try H.launcher(["replicate", db, "file://\(db)-litestream/backup"], timeout: 60)
            #expect(r.status == 1, "\(r.output)")
            #expect(r.output.contains("is inside the database's own metadata directory"), "\(r.output)")
        }

        /// Misspelt keys are named with the closest valid key (replicate: a log line; listings: stderr), and an
        /// `age` block with a bad key stops the launcher instead of writing plaintext backups.
        @Test func keysNotActedOnAreNamed() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            try H.runWriter(db, count: 1)
            let config = sb.path("typo.yml")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - url: \(sb.url("r"))\n        retension: 1h\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            let p = try H.startReplicate(sb, ["-config", config], log: "typo.log")
            #expect(p.output.contains(#"WARNING config: \#(config): dbs[0].replicas[0].retension: unknown key (did you mean "retention"?); ignored"#),
                    "\(H.tail(p.output))")
            #expect(H.stop(p) == 0)
            let listing = try runCommand(TestSupport.launcher, ["databases", "-config", config])
            #expect(listing.status == 0 && listing.output.contains("retension: unknown key"), "\(listing.output)")

            let age = sb.path("age.yml")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - url: \(sb.url("enc"))\n        age:\n          recipients: [age1qqq]\n          identitys: [x]\n"
                .write(toFile: age, atomically: true, encoding: .utf8)
            let refused = try H.launcher(["replicate", "-config", age], timeout: 60)
            #expect(refused.status == 1, "\(refused.output)")
            #expect(refused.output.contains(#"dbs[0].replicas[0].age.identitys: unknown age setting (did you mean "identities"?)"#), "\(refused.output)")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - url: \(sb.url("enc"))\n        age:\n          recipients: [age1qqq]\n"
                .write(toFile: age, atomically: true, encoding: .utf8)
            let badKey = try H.launcher(["replicate", "-config", age], timeout: 60)
            #expect(badKey.status == 1, "\(badKey.output)")
            #expect(badKey.output.contains("dbs[0].replicas[0].age.recipients[0]: line 1: not an age X25519 recipient"), "\(badKey.output)")
            #expect(!FileManager.default.fileExists(atPath: sb.path("enc")))
        }

        /// An unset variable in a replica URL stops the launcher naming the variable, instead of replicating into
        /// the current directory.
        @Test func anUnsetVariableInTheConfigIsAnError() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            try H.runWriter(db, count: 1)
            let config = sb.path("env.yml")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - url: file://${RK_SURELY_UNSET_DIR}/backup\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            let r = try H.launcher(["replicate", "-config", config], timeout: 60)
            #expect(r.status == 1, "\(r.output)")
            #expect(r.output.contains("\(config): line 4: environment variable $RK_SURELY_UNSET_DIR is not set"), "\(r.output)")
        }

        /// Two replicas with the same data, the first one's snapshot damaged: `restore` restores from the second
        /// and says which replica it skipped and why; `-replica` still forces the damaged one (and fails, naming it).
        @Test func restoreSkipsADamagedReplica() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db")
            try H.runWriter(db, count: 1)
            let config = sb.path("two.yml")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - {name: first, url: \(sb.url("r1"))}\n      - {name: second, url: \(sb.url("r2"))}\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            let p = try H.startReplicate(sb, ["-config", config], log: "two.log")
            try H.runWriter(db, rate: 1000, count: 200)
            #expect(H.stop(p) == 0, "\(H.tail(p.output))")
            let snapshots = try H.replicaObjects(sb.path("r1")).objects.filter { $0.kind == .snapshot }
            let snap = try #require(snapshots.first?.path, "\(snapshots)")
            var bytes = try #require(FileManager.default.contents(atPath: snap)).map { $0 }
            for k in stride(from: 12, to: bytes.count, by: 5) { bytes[k] ^= 0xa5 }
            try Data(bytes).write(to: URL(fileURLWithPath: snap))

            let out = sb.path("restored.db")
            let r = try H.launcher(["restore", "-config", config, "-o", out, db])
            #expect(r.status == 0, "\(r.output)")
            #expect(r.output.contains("cannot restore from replica \"first\""), "\(r.output)")
            #expect(r.output.contains("trying the next candidate"), "\(r.output)")
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out)) == nil)

            let forced = try H.launcher(["restore", "-config", config, "-replica", "first", "-o", sb.path("forced.db"), db])
            #expect(forced.status == 1, "\(forced.output)")
            #expect(forced.output.contains("cannot restore snapshot: generations/"), "\(forced.output)")
            #expect(!FileManager.default.fileExists(atPath: sb.path("forced.db")))
        }

        /// The replica directory deleted while `replicate` runs: the next check writes a new snapshot (one log line),
        /// and the replica restores to the source; a wipe just before the stop is repaired by the final sync.
        @Test func aWipedReplicaGetsANewSnapshot() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.path("r")
            try H.runWriter(db, count: 1)
            let config = sb.path("wipe.yml")
            try "dbs:\n  - path: \(db)\n    replicas:\n      - url: file://\(replica)\n        retention-check-interval: 1s\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            let p = try H.startReplicate(sb, ["-config", config], log: "wipe.log")
            try H.runWriter(db, rate: 1000, count: 100)
            #expect(p.waitForOutput("wal segment written", timeout: 30), "\(H.tail(p.output))")
            try FileManager.default.removeItem(atPath: replica)
            try H.runWriter(db, rate: 1000, count: 100)
            #expect(p.waitForOutput("no longer holds generation", timeout: 30), "\(H.tail(p.output))")
            #expect(H.stop(p) == 0, "\(H.tail(p.output))")
            try H.restore(["-o", sb.path("a.db"), "file://" + replica])
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(sb.path("a.db"))) == nil)

            // Wiped right before the stop, with no check due: the final sync notices.
            let q = try H.startReplicate(sb, [db, "file://" + replica], log: "wipe2.log")
            try H.runWriter(db, rate: 1000, count: 50)
            #expect(q.waitForOutput("wal segment written", timeout: 30), "\(H.tail(q.output))")
            try FileManager.default.removeItem(atPath: replica)
            try H.runWriter(db, rate: 1000, count: 50)
            #expect(H.stop(q) == 0, "\(H.tail(q.output))")
            #expect(q.output.contains("no longer holds generation"), "\(H.tail(q.output))")
            try H.restore(["-o", sb.path("b.db"), "file://" + replica])
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(sb.path("b.db"))) == nil)
        }

        /// The app replaces its database file (VACUUM INTO + rename) and keeps writing: the launcher starts a new
        /// generation from a snapshot of the new file, and the restore equals the new file, never a page-level mix.
        @Test func aReplacedDatabaseFileStartsANewGeneration() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.url("r")
            try H.runWriter(db, count: 1)
            let p = try H.startReplicate(sb, [db, replica], log: "replace.log")
            try H.runWriter(db, rate: 1000, count: 400)
            #expect(p.waitForOutput("wal segment written", timeout: 30), "\(H.tail(p.output))")
            // A new file with other content under the same schema, renamed over the database.
            let next = sb.path("next.db")
            _ = try sqlite(db, "VACUUM INTO '\(next)';")
            _ = try sqlite(next, "PRAGMA journal_mode=wal; DELETE FROM events WHERE id % 3 = 0; UPDATE events SET payload = 'replaced ' || id WHERE id % 3 = 1;")
            // As SQLite requires of whoever replaces a database file: the old file's -wal and -shm go with it (a
            // connection still open on the old file, ours included, would otherwise keep them alive, and SQLite
            // would replay the old WAL onto the new pages for every connection).
            #expect(rename(next, db) == 0)
            unlink(db + "-wal")
            unlink(db + "-shm")
            try H.runWriter(db, rate: 1000, count: 300)
            #expect(p.waitForOutput("database file replaced", timeout: 30), "\(H.tail(p.output))")
            #expect(H.stop(p) == 0, "\(H.tail(p.output))")
            let out = sb.path("restored.db")
            try H.restore(["-o", out, replica])
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok")
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out)) == nil)
            #expect(try sqlite(out, "SELECT count(*) FROM events WHERE payload LIKE 'replaced %';") != "0")
        }

        /// Syncs that keep failing are never silent: the error metric counts them, `/readyz` turns 503 naming the
        /// database and the error, the database is re-validated from scratch, and all of it clears on recovery.
        @Test func aWedgedDatabaseShowsInHealthAndMetrics() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.url("r")
            try H.runWriter(db, count: 1)
            let (p, url) = try LiveHarness.startPrimary(sb, db: db, log: "wedge.log",
                                                        extraConfig: "    replicas:\n      - url: \(replica)")
            try H.runWriter(db, rate: 1000, count: 50)
            #expect(p.waitForOutput("wal segment written", timeout: 30), "\(H.tail(p.output))")
            #expect(try LiveHarness.http(url + "/readyz").status == 200)
            // The shadow WAL's directory becomes a file: every sync fails until it is put back.
            let gens = db + "-litestream/generations"
            #expect(rename(gens, gens + ".away") == 0)
            _ = FileManager.default.createFile(atPath: gens, contents: Data("not a directory".utf8))
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 20, count: 200), log: "writer.log")
            #expect(p.waitForOutput("re-validating \(db) from scratch", timeout: 60), "\(H.tail(p.output))")
            var ready = try LiveHarness.http(url + "/readyz")
            #expect(ready.status == 503 && ready.body.contains("syncs failed in a row"), "\(ready)")
            let metrics = try LiveHarness.http(url + "/metrics").body
            let errors = metrics.split(separator: "\n").first { $0.hasPrefix("litestream_sync_error_count{") }
            #expect(errors.map { !$0.hasSuffix(" 0") } == true, "\(errors ?? "no litestream_sync_error_count")")
            // Put it back: syncs recover, readiness returns, and the replica ends equal to the source.
            try FileManager.default.removeItem(atPath: gens)
            try H.finishWriter(writer)
            #expect(p.waitForOutput("sync recovered after", timeout: 60), "\(H.tail(p.output))")
            #expect(poll(timeout: 30) { ((try? LiveHarness.http(url + "/readyz"))?.status ?? 0) == 200 })
            ready = try LiveHarness.http(url + "/readyz")
            #expect(ready.status == 200, "\(ready)")
            #expect(H.stop(p) == 0, "\(H.tail(p.output))")
            let out = sb.path("restored.db")
            try H.restore(["-o", out, replica])
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out)) == nil)
        }

        /// A database path that is not UTF-8 is refused with its bytes shown, not replaced by another path.
        @Test func aNonUTF8PathIsNamedAsItIs() throws {
            let r = try shell("exec \"\(TestSupport.launcher)\" replicate \"$(printf '/tmp/rk-\\377-app.db')\" file:///tmp/rk-nonutf8-replica")
            #expect(r.status == 1, "\(r.output)")
            #expect(r.output.contains(#"argument 2 is not valid UTF-8: "/tmp/rk-\xff-app.db"; paths that are not UTF-8 are not supported"#),
                    "\(r.output)")
            #expect(!FileManager.default.fileExists(atPath: "/tmp/rk-nonutf8-replica"))
        }
    }
}
