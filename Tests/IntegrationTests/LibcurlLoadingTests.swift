import Foundation
import Testing

extension ExecTests {
    /// libcurl is opened with dlopen only when something needs it (issue 15: start to exec): a launcher with file
    /// replicas never maps it, one with an S3 replica does, and a host without a loadable libcurl gets one clear
    /// error for remote replicas while file replicas keep working.
    @Suite struct LibcurlLoadingTests {
        /// The app of these tests: records its parent's (the launcher's) mappings at exec, then waits for `stop`.
        static func recordingApp(_ sb: TestSandbox) throws -> String {
            try sb.writeScript("app.sh", """
                cat /proc/$PPID/maps > "$1/maps-at-exec"
                touch "$1/ready"
                while [ ! -e "$1/stop" ]; do sleep 0.05; done
                """)
        }

        /// The launcher's mappings now, and the ones its child recorded at exec; stops the child and expects exit 0.
        static func mappings(_ sb: TestSandbox, _ p: RunningProcess) throws -> (atExec: String, running: String) {
            try #require(sb.waitForFile("ready", timeout: 60), "the child did not start:\n\(p.output)")
            // The replica's first upload has run: whatever the replication path loads is loaded by now.
            try #require(p.waitForOutput("snapshot written", timeout: 60), "\(p.output)")
            // cat, not String(contentsOfFile:): a /proc file reports size 0 and Foundation reads only its first part.
            let running = try runCommand("/bin/cat", ["/proc/\(p.pid)/maps"], timeout: 30).output
            _ = FileManager.default.createFile(atPath: sb.path("stop"), contents: nil)
            #expect(p.wait(timeout: 30) == 0, "\(p.output)")
            return (sb.read("maps-at-exec") ?? "", running)
        }

        /// The file a library (`libcurl.so.4`) resolves to through the loader's cache (symlinks followed).
        static func libraryFile(_ name: String) throws -> String {
            let r = try shell("ldconfig -p | awk '$1 == \"\(name)\" && !found { print $NF; found = 1 }'", timeout: 30)
            let path = r.output.trimmingCharacters(in: .whitespacesAndNewlines)
            try #require(r.status == 0 && path.hasPrefix("/"), "\(name) is not in the loader cache: \(r.output)")
            return URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        }

        /// `unshare --mount` arguments running `launcher args` where a library's file reads as empty (/dev/null bound
        /// over it in a private mount namespace), so dlopen of it fails as on a host without its package.
        static func without(_ library: String, _ args: [String]) throws -> [String] {
            ["--mount", "--propagation", "private", "/bin/sh", "-c", "mount --bind /dev/null \"$1\" && shift && exec \"$@\"",
             "sh", try libraryFile(library), TestSupport.launcher] + args
        }

        static func withoutLibcurl(_ args: [String]) throws -> [String] { try without("libcurl.so.4", args) }

        @Test("file replica and -exec: libcurl and libcrypto are not mapped at the spawn nor while replicating")
        func fileReplicaNeverMapsLibcurl() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            _ = try sqlite(sb.db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a');")
            let app = try Self.recordingApp(sb)
            let p = try sb.launch(["replicate", "-exec", "\(app) \(sb.dir)", sb.db, "file://" + sb.replica])
            let maps = try Self.mappings(sb, p)
            // The recordings are real: the linked libraries are there.
            #expect(maps.atExec.contains("libsqlite3"), "\(maps.atExec)")
            #expect(maps.running.contains("libsqlite3"), "\(maps.running)")
            #expect(!maps.atExec.contains("libcurl"), "libcurl mapped at the spawn:\n\(maps.atExec)")
            #expect(!maps.running.contains("libcurl"), "libcurl mapped while replicating:\n\(maps.running)")
            // Nor libcrypto (Sources/CCrypto opens it at the first call: S3/GCS/Azure/SFTP replicas, age).
            #expect(!maps.atExec.contains("libcrypto"), "libcrypto mapped at the spawn:\n\(maps.atExec)")
            #expect(!maps.running.contains("libcrypto"), "libcrypto mapped while replicating:\n\(maps.running)")
        }

        @Test("restore from a file replica loads no libcurl (LD_DEBUG=files lists every library loaded)")
        func fileRestoreNeverLoadsLibcurl() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let seed = try sb.run(["-config", config, "-exec", "sqlite3 \(sb.db) \"CREATE TABLE t(v); INSERT INTO t VALUES (1);\""],
                                  log: "seed.log")
            try #require(seed.status == 0, "\(seed.output)")
            var env = ProcessInfo.processInfo.environment
            env["LD_DEBUG"] = "files"
            let p = try sb.start(TestSupport.launcher, ["restore", "-o", sb.path("restored.db"), sb.url("replica")],
                                 log: "restore.log", environment: env)
            #expect(p.wait(timeout: 60) == 0, "\(p.output)")
            #expect(try sqlite(sb.path("restored.db"), "SELECT count(*) FROM t") == "1")
            #expect(p.output.contains("file=libsqlite3.so.0"), "no loader trace:\n\(p.output)")
            #expect(!p.output.contains("libcurl"), "restore from a file replica loaded libcurl:\n\(p.output)")
        }

        @Test("S3 replica and -exec: libcurl is mapped before the spawn (the lease/restore path uses it)")
        func s3ReplicaMapsLibcurl() throws {
            typealias S3 = ReplicationIntegrationTests.S3LauncherTests
            guard let s = S3.server() else { return }
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            _ = try sqlite(sb.db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a');")
            let cfg = sb.path("s3.yml")
            try S3.writeConfig(cfg, db: sb.db, server: s, prefix: S3.prefix("curl"))
            let app = try Self.recordingApp(sb)
            let p = try sb.start(TestSupport.launcher, ["replicate", "-config", cfg, "-exec", "\(app) \(sb.dir)"],
                                 environment: S3.launcherEnvironment(s))
            let maps = try Self.mappings(sb, p)
            #expect(maps.atExec.contains("libcurl.so.4"), "\(maps.atExec)")
            #expect(maps.running.contains("libcurl.so.4"), "\(maps.running)")
        }

        @Test("no loadable libcurl: an S3 replica is one clear error before the app starts; file replicas still work")
        func missingLibcurl() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            _ = try sqlite(sb.db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a');")

            // restore from S3: the error names the library, the loader's reason and the package; no crash.
            let restore = try sb.start("/usr/bin/unshare", try Self.withoutLibcurl(
                ["restore", "-o", sb.path("out.db"), "s3://rk-bucket/db"]), log: "restore.log")
            #expect(restore.wait(timeout: 60) == 1, "\(restore.output)")
            let lines = nonEmptyLines(restore.output)
            #expect(lines.count == 1, "\(restore.output)")
            #expect(restore.output.contains("s3 replica s3://rk-bucket: cannot load libcurl.so.4 (")
                        && restore.output.contains("apt-get install libcurl4"), "\(restore.output)")
            #expect(!FileManager.default.fileExists(atPath: sb.path("out.db")))

            // replicate -exec with an S3 replica: the app never starts.
            let s3cfg = sb.path("s3.yml")
            try """
                dbs:
                  - path: \(sb.db)
                    replicas:
                      - type: s3
                        bucket: rk-bucket
                        path: db
                        endpoint: http://127.0.0.1:9
                """.write(toFile: s3cfg, atomically: true, encoding: .utf8)
            let remote = try sb.start("/usr/bin/unshare", try Self.withoutLibcurl(
                ["-config", s3cfg, "-exec", "touch \(sb.path("started"))"]), log: "remote.log")
            #expect(remote.wait(timeout: 60) == 1, "\(remote.output)")
            #expect(remote.output.contains("cannot load libcurl.so.4"), "\(remote.output)")
            #expect(!FileManager.default.fileExists(atPath: sb.path("started")), "the app started:\n\(remote.output)")

            // A file replica does not need libcurl at all.
            let local = try sb.start("/usr/bin/unshare", try Self.withoutLibcurl(
                ["replicate", "-exec", "touch \(sb.path("started"))", sb.db, "file://" + sb.replica]), log: "local.log")
            #expect(local.wait(timeout: 60) == 0, "\(local.output)")
            #expect(FileManager.default.fileExists(atPath: sb.path("started")), "\(local.output)")
            #expect(!local.output.contains("libcurl"), "\(local.output)")
        }

        @Test("no loadable libcrypto: an age block is one clear error before the app starts; plain file replicas still work")
        func missingLibcrypto() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            _ = try sqlite(sb.db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a');")
            let cfg = sb.path("age.yml")
            try """
                dbs:
                  - path: \(sb.db)
                    replicas:
                      - path: \(sb.replica)
                        age:
                          recipients: [age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq]
                """.write(toFile: cfg, atomically: true, encoding: .utf8)
            let aged = try sb.start("/usr/bin/unshare", try Self.without("libcrypto.so.3",
                ["replicate", "-config", cfg, "-exec", "touch \(sb.path("started"))"]), log: "age.log")
            #expect(aged.wait(timeout: 60) == 1, "\(aged.output)")
            #expect(aged.output.contains("age: cannot load libcrypto.so.3 (") && aged.output.contains("apt-get install libssl3"),
                    "\(aged.output)")
            #expect(!aged.output.contains("Aborted") && !aged.output.contains("abort"), "\(aged.output)")
            #expect(!FileManager.default.fileExists(atPath: sb.path("started")), "the app started:\n\(aged.output)")

            let local = try sb.start("/usr/bin/unshare", try Self.without("libcrypto.so.3",
                ["replicate", "-exec", "touch \(sb.path("started"))", sb.db, "file://" + sb.replica]), log: "local.log")
            #expect(local.wait(timeout: 60) == 0, "\(local.output)")
            #expect(FileManager.default.fileExists(atPath: sb.path("started")), "\(local.output)")
        }
    }
}
