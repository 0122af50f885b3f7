import Foundation
import Testing

/// Black-box tests of the operator's tools (issue 16) through the built `launcher`: `restore -config` for every
/// database of a config, `-json` listings, `skip-remote-deletion`, S3 `storage-class`.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct OperatorToolsTests {
        typealias H = ReplicationHarness
        typealias S3 = S3LauncherTests

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

        /// Every database restored (a live read replica skipped): exit 0; `-o` (or `-generation`) without a database argument is a one-line error
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
            // A live read replica without replicas gets its copy from its primary: nothing to restore, not a failure.
            let follower = sb.path("follower.db")
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: cfg))
            handle.seekToEndOfFile()
            handle.write(Data("  - path: \"\(follower)\"\n    upstream:\n      url: \"http://127.0.0.1:1\"\n".utf8))
            try handle.close()

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
            #expect(Self.summary(r.output, follower) == "skipped \(follower): live read replica of http://127.0.0.1:1: "
                    + "it fetches its copy from there", "\(r.output)")
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

        // MARK: - 3. skip-remote-deletion

        /// Shadow WAL index directories of `db` (`<db>-litestream/generations/*/wal/*`).
        static func shadowIndexes(_ db: String) -> Int {
            let gens = db + "-litestream/generations"
            return ((try? FileManager.default.contentsOfDirectory(atPath: gens)) ?? []).reduce(0) {
                $0 + ((try? FileManager.default.contentsOfDirectory(atPath: gens + "/" + $1 + "/wal"))?.count ?? 0)
            }
        }

        /// Two file replicas of one database with a 2 s retention checked every second and a snapshot every second:
        /// the one with `skip-remote-deletion: true` keeps every snapshot and every WAL segment (nothing is logged
        /// as deleted for it), the other is pruned; the local shadow WAL is still cleaned up to
        /// `shadow-retention-count`, and the kept replica restores to the source.
        @Test func skipRemoteDeletionKeepsEveryObjectWhileTheShadowIsCleaned() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), keep = sb.path("rep-keep"), prune = sb.path("rep-prune")
            let timing = ["retention: 2s", "retention-check-interval: 1s", "snapshot-interval: 1s"]
            var yaml = ["dbs:", "  - path: \"\(db)\"", "    shadow-retention-count: 2", "    replicas:"]
            yaml += ["      - name: keep", "        path: \"\(keep)\"", "        skip-remote-deletion: true"]
            yaml += timing.map { "        " + $0 }
            yaml += ["      - name: prune", "        path: \"\(prune)\""] + timing.map { "        " + $0 }
            let cfg = sb.path("litestream.yml")
            try (yaml.joined(separator: "\n") + "\n").write(toFile: cfg, atomically: true, encoding: .utf8)
            try H.runWriter(db, count: 1)

            let launcher = try H.startReplicate(sb, ["-config", cfg], log: "replicate.log")
            #expect(!launcher.output.contains("unknown key"), "\(launcher.output)")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 200, count: 1600, checkpointEvery: 150),
                                      log: "writer.log")
            try H.finishWriter(writer)
            // Retention has pruned the other replica at least once after the load.
            let pruned = poll(timeout: 30) {
                launcher.output.split(separator: "\n").contains { $0.contains("deleted") && $0.contains("replica=prune") }
            }
            #expect(pruned, "no retention deletion on the control replica:\n\(H.tail(launcher.output))")
            let shadow = Self.shadowIndexes(db)
            #expect(H.stop(launcher) == 0, "launcher log:\n\(H.tail(launcher.output))")

            let deletions = launcher.output.split(separator: "\n").filter { $0.contains("deleted") }
            #expect(!deletions.contains { $0.contains("replica=keep") }, "\(deletions.joined(separator: "\n"))")
            let kept = try H.replicaObjects(keep).objects, other = try H.replicaObjects(prune).objects
            let keptSnapshots = kept.filter { $0.kind == .snapshot }.count
            #expect(keptSnapshots >= 5, "kept replica holds \(keptSnapshots) snapshots")
            #expect(keptSnapshots > other.filter { $0.kind == .snapshot }.count)
            // Every WAL index from the first snapshot on is still there.
            let keptIndexes = Set(kept.filter { $0.kind == .wal }.map(\.indexValue))
            #expect(keptIndexes.min() == 0 && keptIndexes.count == Int(keptIndexes.max()! + 1) && keptIndexes.count >= 6,
                    "kept WAL indexes: \(keptIndexes.sorted())")
            #expect(other.filter { $0.kind == .wal }.map(\.indexValue).min() ?? 0 > 0, "control replica kept index 0")
            // The local shadow is trimmed as usual: retention count 2, plus the index being written.
            #expect(shadow <= 4, "\(shadow) shadow WAL indexes left (\(keptIndexes.count) on the replica)")

            let out = sb.path("restored.db")
            try H.restore(["-o", out, "-replica", "keep", "-config", cfg, db])
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out)) == nil)
        }

        /// The same on S3 through `faultproxy.py`: with a 2 s retention checked every second and a snapshot every
        /// second, the launcher sends no DELETE and no multi-object delete (`POST ?delete`) at all, while the snapshots
        /// pile up on the server, and the replica restores to the source.
        @Test func skipRemoteDeletionSendsNoDeleteToS3() throws {
            guard let s = S3.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let extra = ["retention: 2s", "retention-check-interval: 1s", "snapshot-interval: 1s", "skip-remote-deletion: true"]
            let (env, proxy, db, cfg, direct) = try S3.proxiedSetup(s, sb, name: "skipdel", maxSeconds: 300, extra: extra)

            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "replicate.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 200, count: 1000, checkpointEvery: 150),
                                         log: "writer.log", environment: env)
            try H.finishWriter(writer)
            // Let retention run a few more times (a listing each) once the first snapshots are older than 2 s.
            func listings() -> Int { proxy.requestLines.filter { $0.contains(" GET ") && $0.contains("list-type=2") }.count }
            let before = listings()
            #expect(poll(timeout: 30) { listings() >= before + 6 }, "retention stopped listing:\n\(H.tail(launcher.output))")
            #expect(H.stop(launcher) == 0, "launcher log:\n\(H.tail(launcher.output))")
            let r = try runCommand(TestSupport.launcher, ["snapshots", "-config", direct, db], environment: env)
            let snapshots = r.output.split(separator: "\n").count - 1
            #expect(snapshots >= 4, "only \(snapshots) snapshots on the server:\n\(r.output)")

            let requests = proxy.requestLines
            let deletes = requests.filter { $0.contains(" DELETE ") || ($0.contains(" POST ") && $0.contains("delete")) }
            #expect(deletes.isEmpty, "delete requests sent:\n\(deletes.prefix(10).joined(separator: "\n"))")
            #expect(requests.filter { $0.contains(" PUT ") }.count >= 8, "\(requests.count) requests")
            try S3.expectRestoreEqualsSource(sb, config: direct, db: db, env: env, name: "skipdel",
                                             context: H.tail(launcher.output))
        }

        /// The key is known to the key checks: a misspelling is a warning that names it, a non-boolean an error.
        @Test func skipRemoteDeletionKeyIsChecked() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let cfg = sb.path("litestream.yml")
            try Self.writeConfig(cfg, [(sb.path("app.db"), sb.path("rep"))], extra: ["skip-remote-delete: true"])
            let typo = try H.launcher(["databases", "-config", cfg])
            #expect(typo.status == 0 && typo.output.contains(".skip-remote-delete: unknown key (did you mean \"skip-remote-deletion\"?)"),
                    "\(typo.output)")
            try Self.writeConfig(cfg, [(sb.path("app.db"), sb.path("rep"))], extra: ["skip-remote-deletion: sometimes"])
            let bad = try H.launcher(["databases", "-config", cfg])
            #expect(bad.status == 1 && bad.output.contains("dbs[0].replicas[0].skip-remote-deletion"), "\(bad.output)")
            try Self.writeConfig(cfg, [(sb.path("app.db"), sb.path("rep"))], extra: ["skip-remote-deletion: true"])
            let good = try H.launcher(["databases", "-config", cfg])
            #expect(good.status == 0 && !good.output.contains("warning"), "\(good.output)")
        }

        // MARK: - 4. storage-class

        /// HEAD of `key` on the test server (signed by curl): the HTTP status and the `x-amz-storage-class` it reports.
        static func head(_ s: S3.Server, _ key: String) throws -> (status: Int, storageClass: String?) {
            let r = try runCommand("/usr/bin/curl", ["-s", "-I", "--aws-sigv4", "aws:amz:\(s.region):s3",
                                                     "--user", "\(s.accessKeyID):\(s.secretAccessKey)",
                                                     "\(s.endpoint)/\(s.bucket)/\(key)"])
            let lines = r.output.split(separator: "\r\n").flatMap { $0.split(separator: "\n") }.map(String.init)
            let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
            let sc = lines.first { $0.lowercased().hasPrefix("x-amz-storage-class:") }
                .map { String($0.dropFirst("x-amz-storage-class:".count)).trimmingCharacters(in: .whitespaces) }
            return (status, sc)
        }

        /// `storage-class: STANDARD_IA` on SeaweedFS (which reports the class of an object only when one was sent):
        /// every snapshot (one of them above the 16 MiB multipart threshold) and every WAL segment carries it, the
        /// lease object does not, and the replica restores to the source.
        @Test func storageClassIsSentForSnapshotsAndWALButNotTheLease() throws {
            guard let s = S3.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = S3.launcherEnvironment(s)
            let db = sb.path("app.db"), prefix = S3.prefix("sclass"), cfg = sb.path("litestream.yml")
            try S3.writeConfig(cfg, db: db, server: s, prefix: prefix, extra: ["storage-class: STANDARD_IA"])
            try ("lease:\n  ttl: 5s\n" + String(contentsOfFile: cfg, encoding: .utf8)).write(toFile: cfg, atomically: true, encoding: .utf8)
            try H.runWriter(db, count: 1)
            // 18 MiB of random bytes: the first snapshot is a multipart upload.
            _ = try sqlite(db, "CREATE TABLE blobs(b); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                + "WHERE i < 18) INSERT INTO blobs SELECT randomblob(1048576) FROM n;")

            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "replicate.log")
            let lease = try Self.head(s, prefix + "/lease.json")
            #expect(lease.status == 200 && lease.storageClass == nil, "lease.json: \(lease)")
            try H.runWriter(db, count: 200)
            #expect(H.stop(launcher) == 0, "launcher log:\n\(H.tail(launcher.output))")

            let snapshots = try Self.jsonListing(sb, ["/usr/bin/env", "AWS_ACCESS_KEY_ID=\(s.accessKeyID)",
                                                      "AWS_SECRET_ACCESS_KEY=\(s.secretAccessKey)", TestSupport.launcher,
                                                      "snapshots", "-json", "-config", cfg, db], launcher: false)
            let segments = try Self.jsonListing(sb, ["/usr/bin/env", "AWS_ACCESS_KEY_ID=\(s.accessKeyID)",
                                                     "AWS_SECRET_ACCESS_KEY=\(s.secretAccessKey)", TestSupport.launcher,
                                                     "wal", "-json", "-config", cfg, db], launcher: false)
            func hex(_ v: Any?) -> String { String(format: "%016llx", UInt64(Self.int(v) ?? -1)) }
            var keys: [String] = []
            for o in snapshots.items ?? [] {
                keys.append("\(prefix)/generations/\(o["generation"] as? String ?? "")/snapshots/\(hex(o["index"])).snapshot.lz4")
            }
            for o in segments.items ?? [] {
                keys.append("\(prefix)/generations/\(o["generation"] as? String ?? "")/wal/\(hex(o["index"]))/\(hex(o["offset"])).wal.lz4")
            }
            #expect((snapshots.items?.count ?? 0) >= 1 && (segments.items?.count ?? 0) >= 2, "\(snapshots.stdout)\(segments.stdout)")
            #expect(snapshots.items?.contains { (Self.int($0["size"]) ?? 0) >= 16 << 20 } == true,
                    "no snapshot above the multipart threshold: \(snapshots.stdout)")
            for key in keys {
                let h = try Self.head(s, key)
                #expect(h.status == 200 && h.storageClass == "STANDARD_IA", "\(key): \(h)")
            }
            try S3.expectRestoreEqualsSource(sb, config: cfg, db: db, env: env, name: "sclass", context: H.tail(launcher.output))
        }

        /// An unknown storage class is a one-line config error naming the key, the value and the valid ones; on a
        /// file replica the key is a warning that it is not used.
        @Test func invalidStorageClassIsAConfigError() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let cfg = sb.path("litestream.yml")
            for bad in ["COLD", "standard"] {
                try ("dbs:\n  - path: \(sb.path("app.db"))\n    replicas:\n      - url: s3://bkt/db\n        storage-class: \(bad)\n")
                    .write(toFile: cfg, atomically: true, encoding: .utf8)
                let r = try H.launcher(["databases", "-config", cfg])
                #expect(r.status == 1, "\(r.output)")
                #expect(r.output.split(separator: "\n").count == 1, "not one line:\n\(r.output)")
                #expect(r.output.contains("dbs[0].replicas[0].storage-class") && r.output.contains("\"\(bad)\"")
                        && r.output.contains("STANDARD_IA") && r.output.contains("EXPRESS_ONEZONE"), "\(r.output)")
            }
            try Self.writeConfig(cfg, [(sb.path("app.db"), sb.path("rep"))], extra: ["storage-class: STANDARD"])
            let file = try H.launcher(["databases", "-config", cfg])
            #expect(file.status == 0 && file.output.contains("storage-class: not used by file replicas"), "\(file.output)")
        }
    }
}
