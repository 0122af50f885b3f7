import Foundation
import Testing

/// Black-box round trips through the built binaries: `example-writer` loads a WAL database while
/// `launcher replicate` ships it to a `file://` replica, then `launcher restore` must reproduce it.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct ReplicateRoundTripTests {
        typealias H = ReplicationHarness

        /// Replicates while the writer runs; SIGTERM (final sync, exit 0); restores; compares.
        private func roundTrip(_ sb: H.Sandbox, count: Int, rate: Int, checkpointEvery: Int?) throws {
            let db = sb.path("app.db"), replica = sb.url("replica"), out = sb.path("restored.db")
            try H.runWriter(db, count: 1)  // creates the database (WAL mode) before the launcher starts
            let launcher = try H.startReplicate(sb, [db, replica], log: "launcher.log")
            let started = Date()
            try H.runWriter(db, rate: rate, count: count, checkpointEvery: checkpointEvery, timeout: 240)
            let elapsed = Date().timeIntervalSince(started)
            // Nominal time is count/rate (10 s); 120 s leaves room for a noisy machine but not for checkpoints
            // that each wait out the writer's 5 s busy timeout behind the launcher's read lock.
            #expect(elapsed < 120, "example-writer took \(Int(elapsed)) s for \(count) transactions at \(rate)/s")
            let status = H.stop(launcher)
            #expect(status == 0, "launcher replicate should exit 0 after SIGTERM:\n\(H.tail(launcher.output))")

            let restoreLog = try H.restore(["-o", out, replica])
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok", "restore log:\n\(restoreLog)")
            let source = try H.eventRows(db)
            #expect(source.count == count + 1)
            let diff = H.difference(expected: source, actual: try H.eventRows(out))
            #expect(diff == nil, "restored events differ from the source: \(diff ?? "")\nlauncher log:\n\(H.tail(launcher.output))")
        }

        @Test func roundTripUnderLoad() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            try roundTrip(sb, count: 10_000, rate: 1000, checkpointEvery: nil)
        }

        @Test func roundTripWithApplicationCheckpoints() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            // The writer's TRUNCATE checkpoints (33 of them) must neither break replication nor be starved by the
            // launcher's read guard (a starved checkpoint waits out the writer's 5 s busy timeout: 33 x 5 s).
            try roundTrip(sb, count: 10_000, rate: 1000, checkpointEvery: 300)
        }

        /// `kill -9` of the launcher mid-load, restart on the same DB and replica while the writer continues.
        @Test func crashAndRestartUnderLoad() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.url("replica"), out = sb.path("restored.db")
            try H.runWriter(db, count: 1)
            let first = try H.startReplicate(sb, [db, replica], log: "launcher1.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 1000, count: 10_000),
                                      log: "writer.log")
            // Mid-load: the writer is well under way (>= 3000 rows, about 3 s) and the replica has WAL data.
            // (The writer's progress lines are block-buffered when its stdout is a file, so count rows instead.)
            var rows = 0
            let midLoad = poll(timeout: 60) {
                rows = Int((try? sqlite(db, "SELECT coalesce(max(id), 0) FROM events;")) ?? "") ?? rows
                if rows >= 3000 && first.output.contains("wal segment written") { return true }
                usleep(150_000)
                return false
            }
            #expect(midLoad, "writer/launcher did not reach mid-load (rows=\(rows)):\n\(H.tail(first.output))")
            #expect(writer.process.isRunning, "the writer should still be running when the launcher is killed")
            first.signal(SIGKILL)
            #expect(first.wait(timeout: 30) != nil, "launcher did not die after SIGKILL")

            let second = try H.startReplicate(sb, [db, replica], log: "launcher2.log")
            try H.finishWriter(writer, timeout: 240)
            for i in 1...5 {
                _ = try sqlite(db, "INSERT INTO events (at, payload) VALUES (strftime('%Y-%m-%dT%H:%M:%SZ','now'), 'after crash \(i)');")
            }
            let status = H.stop(second)
            #expect(status == 0, "restarted launcher should exit 0 after SIGTERM:\n\(H.tail(second.output))")

            // Either continuity was proven (no new generation) or the new generation states its reason.
            for (line, wellFormed) in H.newGenerationLines(second.output) {
                #expect(wellFormed, "new-generation log line without the documented form/reason: \(line)")
            }

            try H.restore(["-o", out, replica])
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok")
            let source = try H.eventRows(db)
            #expect(source.count == 10_006)
            let diff = H.difference(expected: source, actual: try H.eventRows(out))
            #expect(diff == nil, "restored events differ after crash/restart: \(diff ?? "")\nsecond launcher log:\n\(H.tail(second.output))")
        }

        /// `restore -generation G -index I` reproduces the database as of the end of WAL index I.
        @Test func pointInTimeByIndex() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.url("replica")
            let config = sb.path("litestream.yml")
            try "dbs: [{path: \"\(db)\", min-checkpoint-page-count: 16, replicas: [{url: \"\(replica)\"}]}]\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            try H.runWriter(db, count: 1)
            _ = try sqlite(db, "CREATE TABLE filler (x BLOB);")
            let launcher = try H.startReplicate(sb, ["-config", config], log: "launcher.log")

            // Batch A (the small checkpoint threshold makes the launcher restart the WAL several times).
            try H.runWriter(db, rate: 300, count: 200)
            try H.waitForReplicaEvents(sb, replica, count: 201)
            let copy = sb.path("copy-after-A.db")
            try H.backup(db, to: copy)
            let generations = try H.listedGenerations(replica)
            #expect(generations.count == 1, "expected one generation, got \(generations)")
            let gen = try #require(generations.first)
            // All of batch A is on the replica, in indexes <= indexAfterA.
            let indexAfterA = try #require(try H.listedWALIndexes(replica, generation: gen).max())

            // Force a WAL restart that happens after batch A: one large transaction in another table exceeds
            // the checkpoint threshold; the launcher checkpoints and starts index indexAfterA+1 (or later).
            var boundary: UInt64?
            for _ in 0..<5 where boundary == nil {
                _ = try sqlite(db, "INSERT INTO filler SELECT randomblob(3000) FROM generate_series(1, 80);")
                let deadline = Date().addingTimeInterval(8)
                while boundary == nil && Date() < deadline {
                    if let m = try H.listedWALIndexes(replica, generation: gen).max(), m > indexAfterA { boundary = m }
                    if boundary == nil { usleep(250_000) }
                }
            }
            let newIndex = try #require(boundary, "the launcher never started a new WAL index:\n\(H.tail(launcher.output))")
            let target = newIndex - 1  // >= indexAfterA; indexes in between hold only filler/_litestream_seq writes

            // Batch B lands in index >= newIndex.
            try H.runWriter(db, rate: 300, count: 200)
            let status = H.stop(launcher)
            #expect(status == 0, "launcher log:\n\(H.tail(launcher.output))")
            #expect(try H.listedGenerations(replica) == [gen], "a new generation appeared during the test")

            let expected = try H.eventRows(copy)
            #expect(expected.count == 201)
            let hex = String(repeating: "0", count: 15) + String(target, radix: 16)
            let index16 = String(hex.suffix(16))
            let out = sb.path("restored-index.db")
            let log = try H.restore(["-o", out, "-generation", gen, "-index", index16, replica])
            #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok")
            let diff = H.difference(expected: expected, actual: try H.eventRows(out))
            #expect(diff == nil, "restore -index \(index16) differs from the copy taken at that point: \(diff ?? "")\n\(log)")

            // The latest restore has batch B as well.
            let latest = sb.path("restored-latest.db")
            try H.restore(["-o", latest, replica])
            let final = try H.eventRows(db)
            #expect(final.count == 401)
            #expect(H.difference(expected: final, actual: try H.eventRows(latest)) == nil)
        }

        /// `restore -timestamp T` reproduces the database as of wall-clock time T.
        @Test func pointInTimeByTimestamp() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.url("replica")
            try H.runWriter(db, count: 1)
            let launcher = try H.startReplicate(sb, [db, replica], log: "launcher.log")

            try H.runWriter(db, rate: 500, count: 300)          // batch A
            try H.waitForReplicaEvents(sb, replica, count: 301)  // the replica has all of batch A
            usleep(1_500_000)                                    // wall-clock separation for object timestamps
            let t = Date()
            let copy = sb.path("copy-at-T.db")
            try H.backup(db, to: copy)
            usleep(1_500_000)
            try H.runWriter(db, rate: 500, count: 300)           // batch B
            let status = H.stop(launcher)
            #expect(status == 0, "launcher log:\n\(H.tail(launcher.output))")

            let expected = try H.eventRows(copy)
            #expect(expected.count == 301)
            for (name, stamp) in [("millis", H.rfc3339Millis(t)), ("seconds", H.rfc3339Seconds(t))] {
                let out = sb.path("restored-\(name).db")
                let log = try H.restore(["-o", out, "-timestamp", stamp, replica])
                #expect(try sqlite(out, "PRAGMA integrity_check;") == "ok")
                let diff = H.difference(expected: expected, actual: try H.eventRows(out))
                #expect(diff == nil, "restore -timestamp \(stamp) differs from the copy taken at T: \(diff ?? "")\n\(log)")
            }
            // Sanity: the source did move on after T.
            #expect(try H.eventCount(db) == 601)
        }
    }
}
