import Foundation
import Testing

/// Black-box tests of the operator's tools (issue 16) through the built `launcher`: `restore -config` for every
/// database of a config, `-json` listings.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct OperatorToolsTests {
        typealias H = ReplicationHarness

        /// Writes `count` rows into `db`, replicates it to `replica` and stops the launcher (exit 0 required).
        static func backUp(_ sb: H.Sandbox, db: String, replica: String, count: Int) throws {
            try H.runWriter(db, count: count)
            let launcher = try H.startReplicate(sb, [db, replica], log: "replicate-\(UUID().uuidString.prefix(6)).log")
            let status = H.stop(launcher)
            #expect(status == 0, "launcher log:\n\(H.tail(launcher.output))")
        }

        /// A config of file replicas: one `dbs` entry per (database, replica directory), in this order.
        static func writeConfig(_ path: String, _ entries: [(db: String, replica: String)], extra: [String] = []) throws {
            var lines = ["dbs:"]
            for e in entries {
                lines += ["  - path: \"\(e.db)\"", "    replicas:", "      - path: \"\(e.replica)\""]
                lines += extra.map { "        " + $0 }
            }
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }

        /// The summary line `launcher restore -config` printed for `db`.
        static func summary(_ output: String, _ db: String) -> String? {
            output.split(separator: "\n").map(String.init).first {
                ($0.hasPrefix("restored ") || $0.hasPrefix("skipped ") || $0.hasPrefix("failed ")) && $0.contains(" \(db)")
            }
        }

        // MARK: - 1. restore -config without a database

        /// Four databases: one with a damaged backup (listed first), one restorable, one present locally, one never
        /// backed up. With both `-if-` flags the damaged one fails, the others are still handled, each gets its
        /// summary line, and the exit status is 1; the restored one equals its source.
        @Test func restoreEveryDatabaseOfAConfig() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let damaged = sb.path("damaged.db"), good = sb.path("good.db"), present = sb.path("present.db")
            let never = sb.path("never.db")
            try Self.backUp(sb, db: damaged, replica: sb.url("rep-damaged"), count: 50)
            try Self.backUp(sb, db: good, replica: sb.url("rep-good"), count: 120)
            try H.runWriter(present, count: 5)
            let goodRows = try H.eventRows(good)
            H.removeDatabaseFiles(damaged)
            H.removeDatabaseFiles(good)
            let (objects, _) = try H.replicaObjects(sb.path("rep-damaged"))
            for o in objects where o.kind == .snapshot {
                try Data("not an lz4 frame".utf8).write(to: URL(fileURLWithPath: o.path))
            }
            let cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, [(damaged, sb.path("rep-damaged")), (good, sb.path("rep-good")),
                                       (present, sb.path("rep-present")), (never, sb.path("rep-never"))])

            let r = try H.launcher(["restore", "-config", cfg, "-if-db-not-exists", "-if-replica-exists"])
            #expect(r.status == 1, "exit \(r.status):\n\(r.output)")
            let d = Self.summary(r.output, damaged), g = Self.summary(r.output, good)
            let p = Self.summary(r.output, present), n = Self.summary(r.output, never)
            #expect(d?.hasPrefix("failed \(damaged): ") == true, "\(d ?? "no line for \(damaged)")\n\(r.output)")
            #expect(g?.hasPrefix("restored \(good) from replica \"file\" generation ") == true, "\(g ?? "none")\n\(r.output)")
            #expect(p == "skipped \(present): database already exists", "\(p ?? "none")\n\(r.output)")
            #expect(n == "skipped \(never): no matching backups found", "\(n ?? "none")\n\(r.output)")
            #expect(r.output.contains("restore: 1 of 4 databases failed"), "\(r.output)")
            #expect(!FileManager.default.fileExists(atPath: damaged), "a failed restore left \(damaged)")
            #expect(try sqlite(good, "PRAGMA integrity_check;") == "ok")
            #expect(H.difference(expected: goodRows, actual: try H.eventRows(good)) == nil)
            #expect(try H.eventCount(present) == 5, "the existing database was touched")

            // Without the flags an existing database and a missing backup are failures too, each said once.
            let again = try H.launcher(["restore", "-config", cfg])
            #expect(again.status == 1, "\(again.output)")
            #expect(Self.summary(again.output, present)?.hasPrefix("failed \(present): output file already exists") == true,
                    "\(again.output)")
            #expect(Self.summary(again.output, never)?.hasPrefix("failed \(never): no matching backups found") == true,
                    "\(again.output)")
            #expect(again.output.contains("restore: 4 of 4 databases failed"), "\(again.output)")
        }

        /// Every database restored: exit 0; `-o` (or `-generation`) without a database argument is a one-line error
        /// that changes nothing.
        @Test func restoreAllSucceedsAndRefusesOutputPath() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let a = sb.path("a.db"), b = sb.path("sub/b.db")
            try FileManager.default.createDirectory(atPath: sb.path("sub"), withIntermediateDirectories: true)
            try Self.backUp(sb, db: a, replica: sb.url("rep-a"), count: 30)
            try Self.backUp(sb, db: b, replica: sb.url("rep-b"), count: 40)
            H.removeDatabaseFiles(a)
            H.removeDatabaseFiles(b)
            let cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, [(a, sb.path("rep-a")), (b, sb.path("rep-b"))])

            for bad in [["-o", sb.path("x.db")], ["-generation", "0000000000000001"]] {
                let r = try H.launcher(["restore", "-config", cfg] + bad)
                #expect(r.status == 1, "\(r.output)")
                #expect(r.output.split(separator: "\n").count == 1, "not one line:\n\(r.output)")
                #expect(r.output.contains(bad[0] + " "), "\(r.output)")
                #expect(!FileManager.default.fileExists(atPath: a) && !FileManager.default.fileExists(atPath: sb.path("x.db")))
            }

            let r = try H.launcher(["restore", "-config", cfg])
            #expect(r.status == 0, "\(r.output)")
            #expect(Self.summary(r.output, a)?.hasPrefix("restored \(a) ") == true, "\(r.output)")
            #expect(Self.summary(r.output, b)?.hasPrefix("restored \(b) ") == true, "\(r.output)")
            #expect(try H.eventCount(a) == 30 && H.eventCount(b) == 40)
        }

        // MARK: - 2. -json listings

        /// `launcher ARGS` with stdout and stderr apart; stdout parsed as one JSON array of objects.
        static func jsonListing(_ sb: H.Sandbox, _ args: [String], launcher: Bool = true) throws
            -> (status: Int32, items: [[String: Any]]?, stdout: String, stderr: String) {
            let out = sb.path("stdout-\(UUID().uuidString.prefix(6))"), err = sb.path("stderr-\(UUID().uuidString.prefix(6))")
            let quoted = ((launcher ? [TestSupport.launcher] : []) + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            let r = try shell(quoted.joined(separator: " ") + " >'\(out)' 2>'\(err)'")
            let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            let items = (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [[String: Any]]
            return (r.status, items, stdout, stderr)
        }

        static func isRFC3339UTC(_ v: Any?) -> Bool {
            guard let s = v as? String, s.hasSuffix("Z") else { return false }
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return f.date(from: s) != nil
        }

        static func int(_ v: Any?) -> Int? {
            guard let n = v as? NSNumber, !n.stringValue.contains(".") else { return nil }
            return n.intValue
        }

        /// `generations`, `snapshots`, `wal` and `databases` with `-json`: one array on stdout, exactly the documented
        /// fields, integers for sizes and positions, RFC 3339 UTC times, and the same objects as on the replica.
        @Test func jsonListingsDescribeTheReplicaObjects() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), rep = sb.path("replica")
            try H.runWriter(db, count: 1)
            let launcher = try H.startReplicate(sb, [db, "file://" + rep], log: "replicate.log")
            try H.runWriter(db, rate: 1000, count: 1500, checkpointEvery: 500)
            #expect(H.stop(launcher) == 0, "launcher log:\n\(H.tail(launcher.output))")
            let cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, [(db, rep)])
            let (objects, _) = try H.replicaObjects(rep)
            let snapshots = objects.filter { $0.kind == .snapshot }, segments = objects.filter { $0.kind == .wal }
            #expect(!snapshots.isEmpty && segments.count >= 2)

            let g = try Self.jsonListing(sb, ["generations", "-json", "-config", cfg, db])
            #expect(g.status == 0, "\(g.stdout)\(g.stderr)")
            let gens = g.items ?? []
            #expect(gens.count == Set(objects.map(\.generation)).count, "\(g.stdout)")
            for o in gens {
                #expect(Set(o.keys) == ["replica", "generation", "lag_ms", "start", "end"], "\(o)")
                #expect(o["replica"] as? String == "file")
                #expect((o["generation"] as? String).map(H.isHex16) == true, "\(o)")
                #expect(Self.int(o["lag_ms"]) != nil, "\(o)")
                #expect(Self.isRFC3339UTC(o["start"]) && Self.isRFC3339UTC(o["end"]), "\(o)")
            }
            // Given a URL there is no database to compare with: lag_ms is null.
            let gu = try Self.jsonListing(sb, ["generations", "-json", "file://" + rep])
            #expect(gu.items?.allSatisfy { $0["lag_ms"] is NSNull } == true, "\(gu.stdout)")

            let s = try Self.jsonListing(sb, ["snapshots", "-json", "-config", cfg, db])
            #expect(s.status == 0, "\(s.stdout)\(s.stderr)")
            var listed: [String] = []
            for o in s.items ?? [] {
                #expect(Set(o.keys) == ["replica", "generation", "index", "size", "created"], "\(o)")
                #expect(Self.isRFC3339UTC(o["created"]), "\(o)")
                listed.append("\(o["generation"] as? String ?? "?")/\(Self.int(o["index"]) ?? -1)/\(Self.int(o["size"]) ?? -1)")
            }
            #expect(listed.sorted() == snapshots.map { "\($0.generation)/\($0.indexValue)/\($0.size)" }.sorted(), "\(s.stdout)")

            let w = try Self.jsonListing(sb, ["wal", "-json", "file://" + rep])
            #expect(w.status == 0, "\(w.stdout)\(w.stderr)")
            listed = []
            for o in w.items ?? [] {
                #expect(Set(o.keys) == ["replica", "generation", "index", "offset", "size", "created"], "\(o)")
                #expect(Self.isRFC3339UTC(o["created"]), "\(o)")
                listed.append("\(o["generation"] as? String ?? "?")/\(Self.int(o["index"]) ?? -1)/"
                    + "\(Self.int(o["offset"]) ?? -1)/\(Self.int(o["size"]) ?? -1)")
            }
            #expect(listed.sorted() == segments.map { "\($0.generation)/\($0.indexValue)/\($0.offsetValue)/\($0.size)" }.sorted(),
                    "\(w.stdout)")
            // The table lists the same items.
            let table = H.parseTable(try H.launcher(["wal", "file://" + rep]).output)
            #expect(table.rows.count == segments.count)

            let d = try Self.jsonListing(sb, ["databases", "-json", "-config", cfg])
            #expect(d.status == 0 && d.items?.count == 1, "\(d.stdout)\(d.stderr)")
            #expect(d.items?.first?["path"] as? String == db, "\(d.stdout)")
            #expect((d.items?.first?["replicas"] as? [[String: String]]) == [["name": "file", "type": "file"]], "\(d.stdout)")
            try "dbs: []\n".write(toFile: cfg, atomically: true, encoding: .utf8)
            let empty = try Self.jsonListing(sb, ["databases", "-json", "-config", cfg])
            #expect(empty.status == 0 && empty.stdout == "[]\n", "\(empty.stdout)")
        }

        /// A replica that cannot be listed: with `-json` its error goes to stderr, stdout is still one JSON array,
        /// and the exit status is 1.
        @Test func jsonListingKeepsErrorsOffStdout() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            // Nothing listens on port 1 of the loopback: every listing fails at once.
            let unreachable = "s3://bkt.localhost:1/db"
            for command in ["generations", "snapshots", "wal"] {
                let r = try Self.jsonListing(sb, ["/usr/bin/env", "AWS_ACCESS_KEY_ID=AKIATEST", "AWS_SECRET_ACCESS_KEY=test",
                                                  TestSupport.launcher, command, "-json", unreachable], launcher: false)
                #expect(r.status == 1, "\(command): \(r.stdout)\(r.stderr)")
                #expect(r.stdout == "[]\n", "\(command) stdout: \(r.stdout)")
                #expect(r.stderr.contains("s3: cannot ") && r.stderr.contains("Couldn't connect"), "\(command) stderr: \(r.stderr)")
            }
        }
    }
}
