import Foundation
import Testing

/// A database with a replica made by the launcher, for the tests that must leave an existing replica untouched.
private struct Fixture {
    let scratch: TestSandbox
    let db: String
    let replica: String
    var replicaURL: String { "file://" + replica }

    init(_ scratch: TestSandbox) async throws {
        self.scratch = scratch
        db = scratch.path("app.db")
        replica = scratch.path("replica")
        _ = try await Interop.makeLauncherReplica(scratch: scratch, db: db, replicaDir: replica)
    }

    /// Writes `text` to `dir/name` and returns its path.
    func writeConfig(_ name: String, _ text: String) throws -> String {
        let p = scratch.path(name)
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }
}

/// Runs the launcher with `args` and checks the common contract for input errors: non-zero exit, and an error
/// message of exactly one line. With `wholeOutput` the entire output must be that line (commands that fail before
/// starting); otherwise informational log lines (banner, progress) are ignored. Returns the error line.
@discardableResult
private func expectOneLineFailure(_ args: [String], wholeOutput: Bool, timeout: TimeInterval = 60,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let r = try runCommand(TestSupport.launcher, args, timeout: timeout)
    let cmd = "launcher " + args.joined(separator: " ")
    #expect(r.status != 0, "\(cmd) exited 0:\n\(r.output)", sourceLocation: sourceLocation)
    let lines = wholeOutput ? Interop.nonBlankLines(r.output) : Interop.errorLines(r.output)
    #expect(lines.count == 1, "\(cmd): expected a one-line error, got \(lines.count) lines:\n\(r.output)",
            sourceLocation: sourceLocation)
    return lines.first ?? ""
}

@Suite(.serialized)
struct BadInputTests {
    // MARK: - Configuration and arguments

    @Test func missingConfigFileIsNamed() throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        let nope = "/nope.yml"
        try #require(!FileManager.default.fileExists(atPath: nope), "\(nope) exists on this machine")
        let missing = s.path("missing/litestream.yml")
        for path in [nope, missing] {
            for command in ["replicate", "databases"] {
                let line = try expectOneLineFailure([command, "-config", path], wholeOutput: true)
                #expect(line.contains(path), "`\(command) -config \(path)`: error does not name the file: \(line)")
            }
        }
    }

    @Test func yamlSyntaxErrorNamesFileAndLine() async throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        let f = try await Fixture(s)
        let before = Interop.treeFingerprint(f.replica)
        // Line 5 is malformed ("mapping values are not allowed" in a plain scalar); the lines around it are fine.
        let config = try f.writeConfig("broken.yml", """
            dbs:
              - path: \(f.db)
                replicas:
                  - url: \(f.replicaURL)
                    sync-interval: 1s: oops
                  - path: \(s.path("other"))
            """)
        for command in ["replicate", "databases"] {
            let line = try expectOneLineFailure([command, "-config", config], wholeOutput: true)
            #expect(line.contains(config), "`\(command)`: error does not name the file: \(line)")
            #expect(line.contains(#/\bline 5\b/#), "`\(command)`: error does not point at line 5: \(line)")
        }
        #expect(Interop.treeFingerprint(f.replica) == before, "replica changed")
        #expect(!FileManager.default.fileExists(atPath: s.path("other")), "second replica dir was created")
    }

    @Test func unknownReplicaTypeIsNamed() async throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        let f = try await Fixture(s)
        let before = Interop.treeFingerprint(f.replica)
        // A valid file replica first, then the bad one: nothing may be written to the valid one.
        let config = try f.writeConfig("xyz.yml", """
            dbs:
              - path: \(f.db)
                replicas:
                  - url: \(f.replicaURL)
                  - type: xyz
                    path: \(s.path("xyz-replica"))
            """)
        for command in ["replicate", "databases"] {
            let line = try expectOneLineFailure([command, "-config", config], wholeOutput: true)
            #expect(line.contains("xyz"), "`\(command)`: error does not name the type: \(line)")
        }
        for args in [["replicate", f.db, "xyz://foo"], ["replicate", f.db, f.replicaURL, "xyz://foo"],
                     ["restore", "-o", s.path("out.db"), "xyz://foo"]] {
            let line = try expectOneLineFailure(args, wholeOutput: true)
            #expect(line.contains("xyz"), "`\(args.joined(separator: " "))`: error does not name the scheme: \(line)")
        }
        #expect(Interop.treeFingerprint(f.replica) == before, "replica changed")
        #expect(!FileManager.default.fileExists(atPath: s.path("xyz-replica")))
        #expect(!FileManager.default.fileExists(atPath: s.path("out.db")))
    }

    @Test func badDurationNamesKeyAndValue() async throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        let f = try await Fixture(s)
        let before = Interop.treeFingerprint(f.replica)
        let config = try f.writeConfig("duration.yml", """
            dbs:
              - path: \(f.db)
                replicas:
                  - url: \(f.replicaURL)
                    sync-interval: abc
            """)
        for command in ["replicate", "databases"] {
            let line = try expectOneLineFailure([command, "-config", config], wholeOutput: true)
            #expect(line.contains("sync-interval"), "`\(command)`: error does not name the key: \(line)")
            #expect(line.contains("abc"), "`\(command)`: error does not name the value: \(line)")
        }
        #expect(Interop.treeFingerprint(f.replica) == before, "replica changed")
    }

    @Test func replicaURLWithoutSchemeIsNamed() throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        let db = s.path("app.db")
        try Interop.makeDatabase(db, rows: 10)
        let dirBefore = Interop.treeFingerprint(s.dir)
        let backupExisted = FileManager.default.fileExists(atPath: "/backup/dir")
        let line = try expectOneLineFailure(["replicate", db, "/backup/dir"], wholeOutput: true)
        #expect(line.contains("/backup/dir"), "error does not name the argument: \(line)")
        if !backupExisted { #expect(!FileManager.default.fileExists(atPath: "/backup/dir"), "/backup/dir was created") }
        // Nothing was started: no shadow directory next to the database, database unchanged.
        #expect(Interop.treeFingerprint(s.dir) == dirBefore, "files changed next to the database")
    }

    // MARK: - Database that is not SQLite

    @Test func databaseThatIsNotSQLiteFailsFast() throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        let text = s.path("notes.db")
        let content = "this is a plain text file,\nnot a SQLite database\n"
        try content.write(toFile: text, atomically: true, encoding: .utf8)
        let replica = s.path("replica")
        let start = Date()
        let line = try expectOneLineFailure(["replicate", text, "file://" + replica], wholeOutput: false, timeout: 30)
        let elapsed = Date().timeIntervalSince(start)
        #expect(elapsed < 15, "replicate took \(elapsed)s to reject a text file")
        #expect(line.contains(text), "error does not name the file: \(line)")
        #expect(Interop.generations(under: replica).isEmpty, "replica has generations: \(Interop.files(under: replica))")
        #expect((try? String(contentsOfFile: text, encoding: .utf8)) == content, "the text file was modified")
    }

    // MARK: - Restore

    @Test func restoreRefusesExistingOutput() async throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        let f = try await Fixture(s)
        let before = Interop.treeFingerprint(f.replica)
        let existing = s.path("precious.db")
        let bytes = Data("do not overwrite me\n".utf8) + Data((0..<4096).map { UInt8($0 % 251) })
        try bytes.write(to: URL(fileURLWithPath: existing))
        let line = try expectOneLineFailure(["restore", "-o", existing, f.replicaURL], wholeOutput: false)
        #expect(line.contains(existing), "error does not name the output path: \(line)")
        #expect(FileManager.default.contents(atPath: existing) == bytes, "existing output file was modified")
        let leftovers = (try FileManager.default.contentsOfDirectory(atPath: s.dir)).filter {
            $0.hasPrefix("precious.db") && $0 != "precious.db"
        }
        #expect(leftovers.isEmpty, "restore left files behind: \(leftovers)")
        #expect(Interop.treeFingerprint(f.replica) == before, "replica changed")
    }

    @Test func restoreNamesDamagedLZ4Object() async throws {
        let s = try TestSandbox()
        defer { s.cleanup() }
        let f = try await Fixture(s)
        let files = Interop.files(under: f.replica)
        let lastSegment = try #require(files.filter { $0.hasSuffix(".wal.lz4") }.last, "no WAL segment in \(files)")
        let snapshot = try #require(files.filter { $0.hasSuffix(".snapshot.lz4") }.last, "no snapshot in \(files)")
        // Sanity: the undamaged replica restores.
        let clean = try Interop.restoreAndCompare(replicaURL: f.replicaURL, source: f.db, out: s.path("clean.db"))
        try #require(clean == nil, "undamaged fixture does not restore: \(clean ?? "")")

        enum Damage: String { case truncate, corrupt }
        for (object, damage) in [(lastSegment, Damage.truncate), (lastSegment, .corrupt), (snapshot, .truncate),
                                 (snapshot, .corrupt)] {
            let label = "\(damage.rawValue) \(object)"
            let copy = s.path("replica-\(damage.rawValue)-\(object.hasSuffix(".wal.lz4") ? "wal" : "snapshot")")
            try FileManager.default.copyItem(atPath: f.replica, toPath: copy)
            let target = (copy as NSString).appendingPathComponent(object)
            var data = try #require(FileManager.default.contents(atPath: target))
            try #require(data.count >= 32, "\(label): object too small to damage (\(data.count) bytes)")
            switch damage {
            case .truncate:
                data = data.prefix(data.count / 2)
            case .corrupt:
                // Flip 16 bytes in the middle of the compressed payload (well past the 7..19-byte frame header).
                let mid = data.count / 2
                for i in mid..<min(mid + 16, data.count - 4) { data[data.startIndex + i] ^= 0xA5 }
            }
            try data.write(to: URL(fileURLWithPath: target))
            let damaged = Interop.treeFingerprint(copy)

            let outDir = s.path("out-\(damage.rawValue)-\(copy.hasSuffix("wal") ? "wal" : "snapshot")")
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
            let out = (outDir as NSString).appendingPathComponent("restored.db")
            let line = try expectOneLineFailure(["restore", "-o", out, "file://" + copy], wholeOutput: false)
            #expect(line.contains(object), "\(label): error does not name the object: \(line)")
            let created = try FileManager.default.contentsOfDirectory(atPath: outDir)
            #expect(created.isEmpty, "\(label): restore left files: \(created)")
            #expect(Interop.treeFingerprint(copy) == damaged, "\(label): restore modified the replica")
        }
    }

    // MARK: - Replica directory that is not writable

    /// The launcher runs unprivileged (uid/gid 65534 via setpriv, since root ignores permission bits) with a
    /// replica directory of mode 0555: it keeps running and logs `monitor error`; after chmod 0755 it catches up on
    /// its own, and on SIGTERM it exits 0 with a replica that restores to the source.
    @Test(.enabled(if: (geteuid() == 0 && Interop.isExecutable("/usr/bin/setpriv")) || TestSupport.isCI,
                   "needs root and /usr/bin/setpriv (util-linux) to run the launcher as an unprivileged user"),
          .timeLimit(.minutes(3)))
    func unwritableReplicaDirectoryRecovers() async throws {
        try #require(geteuid() == 0, "must run as root to switch to uid 65534")
        try #require(Interop.isExecutable("/usr/bin/setpriv"), "/usr/bin/setpriv (util-linux) missing")
        let s = try TestSandbox()
        defer { s.cleanup() }
        // The build directory may not be reachable by uid 65534: run copies of the binaries from the scratch dir.
        let bin = s.path("bin")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        let launcher = bin + "/launcher", writer = bin + "/example-writer"
        try FileManager.default.copyItem(atPath: TestSupport.launcher, toPath: launcher)
        try FileManager.default.copyItem(atPath: TestSupport.exampleWriter, toPath: writer)
        let data = s.path("data"), replica = s.path("replica")
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: replica, withIntermediateDirectories: true)
        let db = data + "/app.db"
        try Interop.makeDatabase(db, rows: 20)
        for f in [data, db, replica] { try #require(chown(f, 65534, 65534) == 0, "chown \(f) failed") }
        try #require(chmod(replica, 0o555) == 0)
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        let probe = try runCommand("/usr/bin/setpriv", asNobody + [launcher, "version"], timeout: 30)
        try #require(probe.status == 0, "cannot run the launcher as uid 65534: \(probe.output)")

        let p = try s.start("/usr/bin/setpriv", asNobody + [launcher, "replicate", db, "file://" + replica],
                            log: "replicate.log")
        try #require(try await Interop.eventually(timeout: 60) { p.output.contains("monitor error") },
                     "no monitor error logged:\n\(p.output)")
        let errorLine = Interop.nonBlankLines(p.output).first { $0.contains("monitor error") } ?? ""
        #expect(errorLine.contains(replica), "monitor error does not name the replica: \(errorLine)")

        // Writes go on while the replica cannot be written.
        let w = try await Interop.run(s, "/usr/bin/setpriv", asNobody + [writer, db, "-rate", "200", "-count", "300"],
                                      logName: "writer.log")
        try #require(w.status == 0, "example-writer failed: \(w.output)")
        try #require(p.process.isRunning, "launcher exited while the replica was unwritable:\n\(p.output)")
        #expect(Interop.files(under: replica).isEmpty, "files appeared in a 0555 directory: \(Interop.files(under: replica))")
        #expect(try Interop.rowCount(db) == 320)

        // Fix the permissions; the launcher must catch up by itself (no further writes), within a bounded time.
        try #require(chmod(replica, 0o755) == 0)
        var lastMismatch: String? = "not tried"
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            lastMismatch = try Interop.restoreAndCompare(replicaURL: "file://" + replica, source: db, out: s.path("probe.db"))
            if lastMismatch == nil || !p.process.isRunning { break }
            try await Task.sleep(for: .milliseconds(500)) // pacing between restore attempts, not synchronisation
        }
        #expect(lastMismatch == nil, "replica did not catch up within 90s: \(lastMismatch ?? "")\n\(p.output)")
        try #require(p.process.isRunning, "launcher exited:\n\(p.output)")

        p.signal(SIGTERM)
        #expect(try await Interop.exitStatus(p, timeout: 60) == 0, "launcher did not exit 0 on SIGTERM:\n\(p.output)")
        let final = try Interop.restoreAndCompare(replicaURL: "file://" + replica, source: db, out: s.path("final.db"))
        #expect(final == nil, "\(final ?? "")\n\(p.output)")
    }
}
