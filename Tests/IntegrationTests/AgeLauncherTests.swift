import Foundation
import Testing
import ReplicationKit

/// Black-box tests of age encryption at rest (issue 16 §1) through the built `launcher`: a real database replicated
/// with an `age` block to a file replica and to S3 (SeaweedFS); every object checked with the `age` CLI and `lz4`;
/// restores with the right identity, with none and with a wrong one; Litestream 0.3.13's encrypted replicas
/// restored by ours. Outputs are scanned for the secret key.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct AgeLauncherTests {
        typealias H = ReplicationHarness

        /// A key pair from `age-keygen`, with its identity file written into the sandbox.
        struct Key {
            var secret: String
            var recipient: String
            var file: String

            init(_ sb: H.Sandbox, _ name: String) throws {
                file = sb.path("\(name).key")
                let r = try runCommand("/usr/bin/age-keygen", ["-o", file])
                guard r.status == 0 else { throw TestFailure("age-keygen failed: \(r.output)") }
                let text = try String(contentsOfFile: file, encoding: .utf8)
                secret = text.split(separator: "\n").first { $0.hasPrefix("AGE-SECRET-KEY-1") }.map(String.init) ?? ""
                recipient = text.split(separator: "\n").first { $0.hasPrefix("# public key: ") }
                    .map { String($0.dropFirst(14)) } ?? ""
                guard !secret.isEmpty && recipient.hasPrefix("age1") else { throw TestFailure("age-keygen output: \(text)") }
            }
        }

        /// True when the age CLI is installed; else a skip line (a failure under CI=true).
        static func ageInstalled(_ test: String = #function) -> Bool {
            if FileManager.default.isExecutableFile(atPath: "/usr/bin/age") { return true }
            if TestSupport.isCI {
                Issue.record("the age CLI is not installed (scripts/install-deps.sh installs it); required under CI=true")
            } else {
                print("SKIP \(test): the age CLI is not installed (apt-get install age)")
            }
            return false
        }

        /// A config with one database and one replica (`replica` lines, indented under `- `) and an `age` block.
        static func config(_ path: String, db: String, replica: [String], recipients: [String] = [],
                           identities: [String] = []) throws {
            var lines = ["dbs:", "  - path: \"\(db)\"", "    replicas:"]
            lines += replica.enumerated().map { ($0.offset == 0 ? "      - " : "        ") + $0.element }
            lines += ["        age:"]
            if !recipients.isEmpty { lines += ["          recipients:"] + recipients.map { "            - \($0)" } }
            if !identities.isEmpty { lines += ["          identities:"] + identities.map { "            - \($0)" } }
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }

        /// Reads every snapshot and WAL object of `client` (raw, still encrypted), decrypts it with the age CLI under
        /// `key` and decompresses it with `lz4 -d`; returns the number of objects, or throws naming the first bad one.
        static func checkObjectsWithCLI(_ client: any ReplicaClient, key: Key, sb: H.Sandbox) throws -> Int {
            var checked = 0
            func check(_ name: String, _ open: () throws -> any ByteSource, expectPrefix: [UInt8]?) throws {
                let src = try open()
                defer { src.close() }
                var raw: [UInt8] = []
                var buf = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let n = try buf.withUnsafeMutableBytes { try src.read(into: $0) }
                    if n == 0 { break }
                    raw += buf[0..<n]
                }
                guard raw.starts(with: Array("age-encryption.org/v1\n-> X25519 ".utf8)) else {
                    throw TestFailure("\(name) is not an age file: \(raw.prefix(16))")
                }
                let enc = sb.path("obj.age"), plain = sb.path("obj.plain")
                try Data(raw).write(to: URL(fileURLWithPath: enc))
                let r = try runCommand("/bin/bash", ["-c", "set -o pipefail; /usr/bin/age -d -i '\(key.file)' '\(enc)' | lz4 -d -c > '\(plain)'"])
                guard r.status == 0 else { throw TestFailure("\(name): age -d | lz4 -d failed: \(r.output)") }
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: plain)))
                if let p = expectPrefix, !bytes.starts(with: p) {
                    throw TestFailure("\(name): decrypted and decompressed, it does not start with \(p)")
                }
                checked += 1
            }
            for g in try client.generations() {
                for s in try client.snapshots(generation: g) {
                    try check(client.objectName(snapshot: s), { try client.openSnapshot(s) },
                              expectPrefix: Array("SQLite format 3\0".utf8))
                }
                for w in try client.walSegments(generation: g) {
                    try check(client.objectName(segment: w), { try client.openWALSegment(w) },
                              expectPrefix: w.offset == 0 ? [0x37, 0x7f, 0x06] : nil)
                }
            }
            return checked
        }

        /// True when `output` holds one of the keys' secrets, or anything shaped like a secret key (the hint
        /// `AGE-SECRET-KEY-1…` in messages is not).
        static func leaksSecret(_ output: String, _ keys: Key...) -> Bool {
            keys.contains { output.contains($0.secret) } || output.contains(/AGE-SECRET-KEY-1[0-9A-Z]{8}/)
        }

        /// The restored copy equals the source row for row and passes integrity_check.
        static func expectSameDatabase(_ restored: String, _ source: String) throws {
            #expect(try sqlite(restored, "PRAGMA integrity_check;") == "ok")
            #expect(H.difference(expected: try H.eventRows(source), actual: try H.eventRows(restored)) == nil)
        }

        /// A restore that must fail: exit 1, one line naming `expected`, no output file.
        static func expectRefusedRestore(_ args: [String], output: String, expected: String, environment: [String: String]? = nil,
                                         sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
            let r = try runCommand(TestSupport.launcher, ["restore"] + args, timeout: 120, environment: environment)
            #expect(r.status == 1, "\(r.output)", sourceLocation: sourceLocation)
            #expect(r.output.contains(expected), "\(r.output)", sourceLocation: sourceLocation)
            // Log lines start with a timestamp; the error is the one line that does not.
            let errorLines = r.output.split(separator: "\n").filter { $0.first?.isNumber != true }
            #expect(errorLines.count == 1, "\(r.output)", sourceLocation: sourceLocation)
            for f in [output, output + "-wal", output + ".tmp"] {
                #expect(!FileManager.default.fileExists(atPath: f), "\(f) exists after a refused restore", sourceLocation: sourceLocation)
            }
            return r.output
        }

        @Test func fileReplicaIsEncryptedAndRestores() throws {
            guard Self.ageInstalled() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.path("replica")
            let key = try Key(sb, "k"), stranger = try Key(sb, "stranger")
            try H.runWriter(db, count: 50)
            let writer = sb.path("writer.yml"), reader = sb.path("reader.yml"), both = sb.path("both.yml")
            let wrong = sb.path("wrong.yml"), idOnly = sb.path("idonly.yml")
            let rep = ["url: file://\(replica)"]
            try Self.config(writer, db: db, replica: rep, recipients: [key.recipient])
            try Self.config(reader, db: db, replica: rep, identities: [key.secret])
            try Self.config(both, db: db, replica: rep, recipients: [stranger.recipient, key.recipient], identities: [key.secret])
            try Self.config(wrong, db: db, replica: rep, identities: [stranger.secret])
            try Self.config(idOnly, db: db, replica: rep, identities: [key.secret])
            var outputs: [String] = []

            // Recipients only: written encrypted; a restart cannot read its last WAL object back, so it snapshots.
            let p1 = try H.startReplicate(sb, ["-config", writer], log: "r1.log")
            try H.runWriter(db, count: 300, checkpointEvery: 100)
            #expect(H.stop(p1) == 0, "\(H.tail(p1.output))")
            let p2 = try H.startReplicate(sb, ["-config", writer], log: "r2.log")
            try H.runWriter(db, count: 40)
            #expect(H.stop(p2) == 0, "\(H.tail(p2.output))")
            #expect(p2.output.contains("written with age recipients only; writing a snapshot"), "\(H.tail(p2.output))")
            // Both keys: reads its last WAL object back on restart.
            let p3 = try H.startReplicate(sb, ["-config", both], log: "r3.log")
            try H.runWriter(db, count: 30)
            #expect(H.stop(p3) == 0, "\(H.tail(p3.output))")
            outputs += [p1.output, p2.output, p3.output]

            let objects = try Self.checkObjectsWithCLI(FileReplicaClient(root: replica), key: key, sb: sb)
            #expect(objects >= 4, "only \(objects) objects")

            let out = sb.path("restored.db")
            outputs.append(try H.restore(["-config", reader, "-o", out, db]))
            try Self.expectSameDatabase(out, db)

            let out2 = sb.path("refused.db")
            outputs.append(try Self.expectRefusedRestore(["-config", writer, "-o", out2, db], output: out2,
                                                         expected: "the replica is age-encrypted and age has no identities"))
            outputs.append(try Self.expectRefusedRestore(["-config", wrong, "-o", out2, db], output: out2,
                                                         expected: "no configured identity matches a recipient of the object"))
            // Without any age block the objects are not LZ4: a clear error too.
            outputs.append(try Self.expectRefusedRestore(["-o", out2, "file://\(replica)"], output: out2,
                                                         expected: "not an lz4 frame: the object is age-encrypted"))

            // Identities without recipients cannot replicate: it would write plaintext.
            let refused = try H.launcher(["replicate", "-config", idOnly], timeout: 60)
            #expect(refused.status == 1, "\(refused.output)")
            #expect(refused.output.contains("age has identities but no recipients"), "\(refused.output)")
            outputs.append(refused.output)

            for o in outputs { #expect(!Self.leaksSecret(o, key, stranger), "a secret key was printed:\n\(o)") }
        }

        @Test func s3ReplicaIsEncryptedAndRestores() throws {
            guard Self.ageInstalled(), let s = S3LauncherTests.server() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let env = S3LauncherTests.launcherEnvironment(s)
            let db = sb.path("app.db"), prefix = S3LauncherTests.prefix("age")
            let key = try Key(sb, "k"), stranger = try Key(sb, "stranger")
            try H.runWriter(db, count: 20)
            let rep = ["type: s3", "bucket: \"\(s.bucket)\"", "path: \"\(prefix)\"", "endpoint: \"\(s.endpoint)\"",
                       "region: \"\(s.region)\"", "force-path-style: true"]
            let cfg = sb.path("s3.yml"), wrong = sb.path("wrong.yml")
            try Self.config(cfg, db: db, replica: rep, recipients: [key.recipient], identities: [key.secret])
            try Self.config(wrong, db: db, replica: rep, recipients: [key.recipient], identities: [stranger.secret])
            let p = try S3LauncherTests.startReplicate(sb, ["-config", cfg], env: env, log: "s3.log")
            try H.runWriter(db, count: 200, checkpointEvery: 80)
            #expect(H.stop(p) == 0, "\(H.tail(p.output))")

            let raw = S3ReplicaClient(location: S3Location(bucket: s.bucket, prefix: prefix, region: s.region, endpoint: s.endpoint,
                                                           forcePathStyle: true),
                                      credentials: AWSCredentials(accessKeyID: s.accessKeyID, secretAccessKey: s.secretAccessKey,
                                                                  source: "test environment"))
            let objects = try Self.checkObjectsWithCLI(raw, key: key, sb: sb)
            #expect(objects >= 2, "only \(objects) objects")

            let out = sb.path("restored.db")
            let restored = try S3LauncherTests.restore(["-config", cfg, "-o", out, db], env: env)
            try Self.expectSameDatabase(out, db)
            let out2 = sb.path("refused.db")
            let refused = try Self.expectRefusedRestore(["-config", wrong, "-o", out2, db], output: out2,
                                                        expected: "no configured identity matches a recipient of the object", environment: env)
            for o in [p.output, restored, refused] { #expect(!Self.leaksSecret(o, key, stranger), "\(o)") }
        }

        /// Litestream 0.3.13 replicates with an `age` block (v0.3 layout, every object age-encrypted); the launcher
        /// restores it with the identity alone, and the age CLI reads every object.
        @Test(.enabled(if: UpstreamLitestream.path != nil || TestSupport.isCI, "upstream litestream v0.3.13 not installed"),
              .timeLimit(.minutes(3)))
        func restoresWhatLitestream0313Encrypted() throws {
            guard let upstream = UpstreamLitestream.path else { throw TestFailure(UpstreamLitestream.howToInstall) }
            guard Self.ageInstalled() else { return }
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            let db = sb.path("app.db"), replica = sb.path("replica")
            let key = try Key(sb, "k")
            try H.runWriter(db, count: 20)
            let upstreamConfig = sb.path("upstream.yml"), reader = sb.path("reader.yml")
            try Self.config(upstreamConfig, db: db, replica: ["url: file://\(replica)"], recipients: [key.recipient],
                            identities: [key.secret])
            try Self.config(reader, db: db, replica: ["url: file://\(replica)"], identities: [key.secret])
            let litestream = try sb.start(upstream, ["replicate", "-config", upstreamConfig], log: "upstream.log")
            try H.runWriter(db, rate: 300, count: 300)
            // Upstream syncs every second: wait (bounded) until a restore holds every row, then stop it.
            let out = sb.path("restored.db")
            var last = ""
            let caughtUp = poll(timeout: 60) {
                H.removeDatabaseFiles(out)
                let r = try? runCommand(TestSupport.launcher, ["restore", "-config", reader, "-o", out, db], timeout: 60)
                last = r?.output ?? "restore did not run"
                if r?.status == 0, (try? H.eventRows(out)) == (try? H.eventRows(db)) { return true }
                usleep(300_000)
                return false
            }
            litestream.signal(SIGTERM)
            _ = litestream.wait(timeout: 60)
            try #require(caughtUp, "restore of the 0.3.13 replica never matched the source: \(H.tail(last))\nupstream:\n\(H.tail(litestream.output))")
            try Self.expectSameDatabase(out, db)
            #expect(!Self.leaksSecret(last, key), "\(last)")

            let objects = try Self.checkObjectsWithCLI(FileReplicaClient(root: replica), key: key, sb: sb)
            #expect(objects >= 2, "only \(objects) objects in the 0.3.13 replica")
            let snapshots = try FileReplicaClient(root: replica).generations().flatMap {
                try FileReplicaClient(root: replica).snapshots(generation: $0)
            }
            #expect(snapshots.allSatisfy { $0.layout == .v03 }, "\(snapshots)")
        }
    }
}
