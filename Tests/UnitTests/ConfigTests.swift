import Foundation
import Testing
@testable import ReplicationKit

private let src = "/etc/litestream.yml"

private func parse(_ yaml: String, env: [String: String] = [:], expand: Bool = true) throws -> Configuration {
    try Configuration.parse(yaml: yaml, sourceName: src, expandEnv: expand, environment: env)
}

private func parseError(_ yaml: String, env: [String: String] = [:]) -> String? {
    do {
        _ = try parse(yaml, env: env)
        return nil
    } catch {
        return error.oneLine
    }
}

private func urlError(_ url: String) -> String? {
    do {
        _ = try ReplicaConfig.fromURL(url)
        return nil
    } catch {
        return error.oneLine
    }
}

// MARK: - Durations

@Suite struct ConfigDurationTests {
    @Test func parsesGoSyntax() throws {
        #expect(try GoDuration.parse("1.5h") == .seconds(5400))
        #expect(try GoDuration.parse("2h45m") == .seconds(9900))
        #expect(try GoDuration.parse("250ms") == .milliseconds(250))
        #expect(try GoDuration.parse("0") == .zero)
        #expect(try GoDuration.parse("-0") == .zero)
        #expect(try GoDuration.parse("-1m2s") == .seconds(-62))
        #expect(try GoDuration.parse("+5s") == .seconds(5))
        #expect(try GoDuration.parse("1us") == .microseconds(1))
        #expect(try GoDuration.parse("1µs") == .microseconds(1))
        #expect(try GoDuration.parse("1μs") == .microseconds(1))
        #expect(try GoDuration.parse("10ns") == .nanoseconds(10))
        #expect(try GoDuration.parse(".5s") == .milliseconds(500))
        #expect(try GoDuration.parse("1.s") == .seconds(1))
        #expect(try GoDuration.parse("24h") == .seconds(86400))
        #expect(try GoDuration.parse("1h1m1s1ms1us1ns") == .nanoseconds(3_661_001_001_001))
        #expect(try GoDuration.parse("0.1s") == .milliseconds(100))
    }

    @Test func rejectsInvalid() {
        func err(_ s: String) -> String? {
            do { _ = try GoDuration.parse(s); return nil } catch { return error.oneLine }
        }
        #expect(err("abc") == #"invalid duration "abc""#)
        #expect(err("") == #"invalid duration """#)
        #expect(err("-") == #"invalid duration "-""#)
        #expect(err(".s") == #"invalid duration ".s""#)
        #expect(err("10")?.hasPrefix(#"invalid duration "10": missing unit"#) == true)
        #expect(err("1d")?.hasPrefix(#"invalid duration "1d": unknown unit "d""#) == true)
        #expect(err("1s ") != nil)
        #expect(err("9999999999999h") == #"invalid duration "9999999999999h""#)
        #expect(err("1e3s") != nil)
    }

    @Test func formatsLikeGo() {
        #expect(GoDuration.format(.zero) == "0s")
        #expect(GoDuration.format(.milliseconds(500)) == "500ms")
        #expect(GoDuration.format(.milliseconds(1500)) == "1.5s")
        #expect(GoDuration.format(.seconds(123)) == "2m3s")
        #expect(GoDuration.format(.seconds(48 * 3600)) == "48h0m0s")
        #expect(GoDuration.format(.microseconds(12)) == "12µs")
        #expect(GoDuration.format(.seconds(-62)) == "-1m2s")
        #expect(GoDuration.format(.nanoseconds(1)) == "1ns")
        #expect(GoDuration.format(.nanoseconds(1_500_000)) == "1.5ms")
        #expect(GoDuration.format(.nanoseconds(1_000_000_100)) == "1.0000001s")
        #expect(GoDuration.format(.seconds(3600)) == "1h0m0s")
        #expect(GoDuration.format(.seconds(1)) == "1s")
        #expect(GoDuration.format(.milliseconds(-1500)) == "-1.5s")
        #expect(GoDuration.format(.nanoseconds(Int64.min)) == "-2562047h47m16.854775808s")
        #expect(GoDuration.format(.nanoseconds(Int64.max)) == "2562047h47m16.854775807s")
    }

    @Test func lagTruncation() {
        #expect(GoDuration.formatLag(.zero) == "0s")
        #expect(GoDuration.formatLag(.seconds(48 * 3600) + .milliseconds(500)) == "48h0m0s")
        #expect(GoDuration.formatLag(.milliseconds(12_700)) == "12s")
        #expect(GoDuration.formatLag(.milliseconds(-12_700)) == "-12s")
        #expect(GoDuration.formatLag(.milliseconds(5_550)) == "5.5s")
        #expect(GoDuration.formatLag(.seconds(10)) == "10s")
        #expect(GoDuration.formatLag(.nanoseconds(10_050_000_000)) == "10s")
        #expect(GoDuration.formatLag(.nanoseconds(1_234_567)) == "1ms")
        #expect(GoDuration.formatLag(.nanoseconds(999_999)) == "999µs")
        #expect(GoDuration.formatLag(.nanoseconds(1_500)) == "1µs")
        #expect(GoDuration.formatLag(.nanoseconds(999)) == "999ns")
        #expect(GoDuration.formatLag(.nanoseconds(-1_234_567)) == "-1ms")
    }
}

// MARK: - Environment expansion

@Suite struct ConfigEnvironmentTests {
    let env: [String: String] = ["FOO": "foo", "A B": "spaced", "*": "star", "HOME_X": "hx", "1": "one"]

    func expand(_ s: String) -> String {
        EnvironmentExpansion.expand(s) { env[$0] }
    }

    @Test func edgeCases() {
        #expect(expand("$FOO") == "foo")
        #expect(expand("${FOO}bar") == "foobar")
        #expect(expand("$FOO.bar") == "foo.bar")
        #expect(expand("$$") == "")  // the variable named "$", not an escape
        #expect(EnvironmentExpansion.expand("$$") { $0 == "$" ? "D" : nil } == "D")
        #expect(expand("a${}b") == "ab")
        #expect(expand("x${abc") == "xabc")
        #expect(expand("x${") == "x")
        #expect(expand("$1abc") == "oneabc")
        #expect(EnvironmentExpansion.expand("$1abc") { _ in nil } == "abc")
        #expect(expand("$UNSET!") == "!")
        #expect(expand("${A B}") == "spaced")
        #expect(expand("${*}") == "star")
        #expect(expand("$*") == "star")
        #expect(expand("$%") == "$%")
        #expect(expand("a $ b") == "a $ b")
        #expect(expand("end$") == "end$")
        #expect(expand("$HOME_X/y") == "hx/y")
        #expect(expand("no vars") == "no vars")
        #expect(expand("é$FOO€") == "éfoo€")
    }

    @Test func expansionInConfig() throws {
        let c = try parse("""
            # comment with $FOO
            addr: "${ADDR}"
            dbs:
              - path: /data/$DBNAME.db
            """, env: ["ADDR": ":9090", "DBNAME": "app"])
        #expect(c.addr == ":9090")
        #expect(c.dbs.first?.path == "/data/app.db")
        let raw = try parse("dbs:\n  - path: /data/$DBNAME.db\n", env: ["DBNAME": "app"], expand: false)
        #expect(raw.dbs.first?.path == "/data/$DBNAME.db")
    }
}

// MARK: - URLs

@Suite struct ConfigURLTests {
    @Test func isURL() {
        #expect(ReplicaURL.isURL("s3://bkt/db"))
        #expect(ReplicaURL.isURL("file:///x"))
        #expect(ReplicaURL.isURL("a_1://"))
        #expect(!ReplicaURL.isURL("/var/db"))
        #expect(!ReplicaURL.isURL("bkt/db"))
        #expect(!ReplicaURL.isURL("s3:/x"))
        #expect(!ReplicaURL.isURL("://x"))
        #expect(!ReplicaURL.isURL("s-3://x"))
    }

    @Test func s3HostTable() throws {
        var r = try ReplicaConfig.fromURL("s3://foo/bar")
        #expect(r.type == "s3" && r.name == "s3")
        #expect(r.s3?.bucket == "foo" && r.s3?.path == "bar" && r.s3?.region == nil && r.s3?.endpoint == nil && r.s3?.forcePathStyle == false)

        r = try ReplicaConfig.fromURL("s3://foo.localhost:9000/bar")
        #expect(r.s3?.bucket == "foo" && r.s3?.region == "us-east-1" && r.s3?.endpoint == "http://localhost:9000" && r.s3?.forcePathStyle == true)
        #expect(r.s3?.path == "bar")

        r = try ReplicaConfig.fromURL("s3://foo.s3.us-west-000.backblazeb2.com/bar")
        #expect(r.s3?.bucket == "foo" && r.s3?.region == "us-west-000")
        #expect(r.s3?.endpoint == "https://s3.us-west-000.backblazeb2.com" && r.s3?.forcePathStyle == true)

        r = try ReplicaConfig.fromURL("s3://my.bkt.s3.filebase.com/x/y")
        #expect(r.s3?.bucket == "my.bkt" && r.s3?.region == nil && r.s3?.endpoint == "https://s3.filebase.com" && r.s3?.path == "x/y")

        r = try ReplicaConfig.fromURL("s3://foo.nyc3.digitaloceanspaces.com:443/bar")
        #expect(r.s3?.bucket == "foo" && r.s3?.region == "nyc3" && r.s3?.endpoint == "https://nyc3.digitaloceanspaces.com:443")

        r = try ReplicaConfig.fromURL("s3://foo.us-east-1.linodeobjects.com/bar")
        #expect(r.s3?.bucket == "foo" && r.s3?.region == "us-east-1" && r.s3?.endpoint == "https://us-east-1.linodeobjects.com")

        r = try ReplicaConfig.fromURL("s3://foo.s3.fr-par.scw.cloud/bar")
        #expect(r.s3?.bucket == "foo" && r.s3?.region == "fr-par" && r.s3?.endpoint == "https://s3.fr-par.scw.cloud" && r.s3?.forcePathStyle == true)

        r = try ReplicaConfig.fromURL("s3://foo:9000/bar")
        #expect(r.s3?.bucket == "foo" && r.s3?.endpoint == nil && r.s3?.forcePathStyle == false)

        r = try ReplicaConfig.fromURL("s3://bkt.with.dots/a//b/../c/")
        #expect(r.s3?.bucket == "bkt.with.dots" && r.s3?.path == "a/c")

        r = try ReplicaConfig.fromURL("S3://bkt")
        #expect(r.type == "s3" && r.s3?.bucket == "bkt" && r.s3?.path == nil)

        #expect(urlError("s3://localhost:9000/x") == "bucket required for s3 replica")
    }

    @Test func fileURLs() throws {
        #expect(try ReplicaConfig.fromURL("file:///abs/dir").file?.path == "/abs/dir")
        #expect(try ReplicaConfig.fromURL("file://a/b").file?.path == "/a/b")
        #expect(try ReplicaConfig.fromURL("file:///a/../b/").file?.path == "/b")
        let r = try ReplicaConfig.fromURL("file:///backup")
        #expect(r.type == "file" && r.name == "file" && r.url == "file:///backup")
        #expect(r.syncInterval == .seconds(1))
    }

    @Test func otherSchemes() throws {
        var r = try ReplicaConfig.fromURL("gs://bkt/a/b")
        #expect(r.type == "gs" && r.name == "gs" && r.gcs?.bucket == "bkt" && r.gcs?.path == "a/b")
        r = try ReplicaConfig.fromURL("gcs://bkt/a")
        #expect(r.type == "gs" && r.gcs?.bucket == "bkt" && r.gcs?.path == "a")
        r = try ReplicaConfig.fromURL("abs://acct@container/p")
        #expect(r.type == "abs" && r.azure?.accountName == "acct" && r.azure?.container == "container" && r.azure?.path == "p")
        r = try ReplicaConfig.fromURL("sftp://me:s%40cret@host:2222/var/backup")
        #expect(r.type == "sftp" && r.sftp?.host == "host:2222" && r.sftp?.user == "me" && r.sftp?.password == "s@cret" && r.sftp?.path == "/var/backup")
        #expect(urlError("sftp://host/x") == "user required for sftp replica")
        #expect(urlError("sftp:///x") == "host required for sftp replica")
        #expect(urlError("gs:///x") == "bucket required for gs replica")
        #expect(urlError("abs:///x") == "bucket required for abs replica")
    }

    @Test func urlErrors() {
        #expect(urlError("bkt/db") == "replica url scheme required: bkt/db")
        #expect(urlError("xyz://a/b") == #"unknown replica type in config: "xyz""#)
        #expect(urlError("sftp://u:topsecret@h:abc/x")?.contains("topsecret") == false)
    }

    @Test func redaction() {
        #expect(ReplicaURL.redacted("sftp://u:pw@h/x") == "sftp://u:xxxxx@h/x")
        #expect(ReplicaURL.redacted("sftp://u@h/x") == "sftp://u@h/x")
        #expect(ReplicaURL.redacted("s3://b/x@y:z") == "s3://b/x@y:z")
    }

    /// Found by fuzz/FuzzReplicaURL: a scheme-less `//user:password@host/…` (read with its userinfo by the URL
    /// parser) kept its password in the "scheme required" error, also when a later `://` was in the path.
    @Test func schemelessURLPasswordIsRedacted() {
        #expect(ReplicaURL.redacted("//u:topsecret@h/x") == "//u:xxxxx@h/x")
        #expect(ReplicaURL.redacted("//u:topsecret@h/a://b") == "//u:xxxxx@h/a://b")
        #expect(ReplicaURL.redacted("///u:pw@h/x") == "///u:pw@h/x")
        #expect(urlError("//u:topsecret@h/x") == "replica url scheme required: //u:xxxxx@h/x")
    }
}

// MARK: - Files and defaults

@Suite struct ConfigFileTests {
    @Test func emptyConfigs() throws {
        #expect(try parse("").dbs.isEmpty)
        #expect(try parse("# only a comment\n").dbs.isEmpty)
        #expect(try parse("dbs:\n").dbs.isEmpty)
        #expect(try parse("dbs: []\n").dbs.isEmpty)
        #expect(try parse("dbs: ~\n").dbs.isEmpty)
        #expect(Configuration().dbs.isEmpty)
    }

    @Test func defaults() throws {
        let c = try parse("""
            dbs:
              - path: /var/lib/app.db
                replicas:
                  - path: /backup
            """)
        #expect(c.addr == nil && c.exec == nil)
        let db = try #require(c.dbs.first)
        #expect(db.path == "/var/lib/app.db")
        #expect(db.monitorDelayInterval == .milliseconds(10))
        #expect(db.checkpointInterval == .seconds(60))
        #expect(db.minCheckpointPageCount == 1000)
        #expect(db.maxCheckpointPageCount == 10000)
        #expect(db.shadowRetentionCount == 32)
        #expect(db.upstreamURL == nil && db.upstreamPath == nil)
        let r = try #require(db.replicas.first)
        #expect(r.type == "file" && r.name == "file" && r.file?.path == "/backup")
        #expect(r.retention == .seconds(86400))
        #expect(r.retentionCheckInterval == .seconds(3600))
        #expect(r.syncInterval == .seconds(1))
        #expect(r.snapshotInterval == .zero && r.validationInterval == .zero)

        let d = DatabaseConfig(path: "/x/../y.db")
        #expect(d.path == "/y.db" && d.monitorDelayInterval == .milliseconds(10) && d.replicas.isEmpty)
    }

    @Test func fullConfig() throws {
        let c = try parse("""
            addr: ":9090"
            exec: myapp -flag
            access-key-id: AKID
            secret-access-key: SECRET
            logging: {level: debug}        # v0.3 key, ignored
            dbs:
              - path: /db1
                monitor-delay-interval: 0
                checkpoint-interval: 30s
                min-checkpoint-page-count: 500
                max-checkpoint-page-count: 0
                shadow-retention-count: 4
                meta-path: /ignored
                upstream:
                  url: http://primary:9090
                  path: /primary/db
                replicas:
                  - url: s3://bkt/db1
                    sync-interval: 10
                    retention: 1h
                    retention-check-interval: 2h
                    snapshot-interval: 1.5h
                    validation-interval: 12h
                    skip-verify: yes
                  - type: s3
                    name: minio
                    bucket: mybkt
                    path: /a/b/
                    endpoint: http://minio:9000
                    region: us-west-2
                    access-key-id: OWNID
                    force-path-style: off
                  - type: gcs
                    bucket: gbkt
                  - url: file:///backups/db1
                    type: s3
                    retention: 0s
                    retention-check-interval: 3h
            """)
        #expect(c.addr == ":9090" && c.exec == "myapp -flag")
        #expect(c.accessKeyID == "AKID" && c.secretAccessKey == "SECRET")
        let db = try #require(c.dbs.first)
        #expect(db.monitorDelayInterval == .zero)
        #expect(db.checkpointInterval == .seconds(30))
        #expect(db.minCheckpointPageCount == 500 && db.maxCheckpointPageCount == 0 && db.shadowRetentionCount == 4)
        #expect(db.upstreamURL == "http://primary:9090" && db.upstreamPath == "/primary/db")
        #expect(db.replicas.count == 4)

        let s3 = db.replicas[0]
        #expect(s3.type == "s3" && s3.name == "s3" && s3.s3?.bucket == "bkt" && s3.s3?.path == "db1")
        #expect(s3.syncInterval == .nanoseconds(10))  // bare integer = nanoseconds
        #expect(s3.retention == .seconds(3600))
        #expect(s3.retentionCheckInterval == .seconds(3600))  // capped at retention
        #expect(s3.snapshotInterval == .seconds(5400))
        #expect(s3.validationInterval == .seconds(12 * 3600))
        #expect(s3.s3?.skipVerify == true)
        #expect(s3.s3?.accessKeyID == "AKID" && s3.s3?.secretAccessKey == "SECRET")

        let minio = db.replicas[1]
        #expect(minio.name == "minio" && minio.s3?.bucket == "mybkt" && minio.s3?.path == "a/b")
        #expect(minio.s3?.endpoint == "http://minio:9000" && minio.s3?.region == "us-west-2")
        #expect(minio.s3?.forcePathStyle == false)  // explicit off wins over "endpoint set"
        #expect(minio.s3?.accessKeyID == "OWNID" && minio.s3?.secretAccessKey == "SECRET")

        let gs = db.replicas[2]
        #expect(gs.type == "gs" && gs.name == "gs" && gs.gcs?.bucket == "gbkt" && gs.gcs?.path == nil)
        #expect(c.warnings.count == 2, "\(c.warnings)")  // logging and meta-path, the 0.3 keys

        let file = db.replicas[3]
        #expect(file.type == "file" && file.file?.path == "/backups/db1")  // URL scheme overrides type
        #expect(file.retention == .zero && file.retentionCheckInterval == .seconds(3 * 3600))  // no cap when retention <= 0
    }

    @Test func s3PathStyleRules() throws {
        let c = try parse("""
            dbs:
              - path: /db
                replicas:
                  - type: s3
                    bucket: b
                    endpoint: https://minio:9000
                  - name: provider
                    url: s3://b.localhost:9000/p
                    force-path-style: false
                  - name: explicit
                    url: s3://b.localhost:9000/p
                    region: eu-west-1
                    endpoint: https://other
            """)
        let r = c.dbs[0].replicas
        #expect(r[0].s3?.forcePathStyle == true)
        #expect(r[1].s3?.forcePathStyle == true)  // upstream quirk: false cannot disable a provider host's path-style
        #expect(r[2].s3?.region == "eu-west-1" && r[2].s3?.endpoint == "https://other" && r[2].s3?.bucket == "b")
    }

    @Test func yamlBooleansAndIntegers() throws {
        for (text, expected) in [("yes", true), ("on", true), ("Y", true), ("TRUE", true), ("no", false), ("Off", false), ("n", false)] {
            let c = try parse("dbs:\n  - path: /d\n    replicas:\n      - url: s3://b\n        skip-verify: \(text)\n")
            #expect(c.dbs[0].replicas[0].s3?.skipVerify == expected)
        }
        let c = try parse("dbs:\n  - path: /d\n    min-checkpoint-page-count: 0x10\n    max-checkpoint-page-count: 1_000\n")
        #expect(c.dbs[0].minCheckpointPageCount == 16 && c.dbs[0].maxCheckpointPageCount == 1000)
    }

    @Test func homeAndRelativePaths() throws {
        let home = PathExpansion.homeDirectory()
        let cwd = FileManager.default.currentDirectoryPath
        #expect(PathExpansion.expand("~") == GoPath.clean(home))
        #expect(PathExpansion.expand("~/x/./y") == GoPath.clean(home + "/x/y"))
        #expect(PathExpansion.expand("rel/db") == GoPath.clean(cwd + "/rel/db"))
        #expect(PathExpansion.expand("~user/x") == GoPath.clean(cwd + "/~user/x"))
        #expect(PathExpansion.expand("/a//b/../c/") == "/a/c")
        let c = try parse("dbs:\n  - path: ~/app.db\n    replicas:\n      - path: ~/backup\n  - path: ~/app.db\n    shadow-retention-count: 1\n")
        #expect(c.dbs[0].path == GoPath.clean(home + "/app.db"))
        #expect(c.dbs[0].replicas[0].file?.path == GoPath.clean(home + "/backup"))
        #expect(c.database(path: "~/app.db")?.shadowRetentionCount == 32)  // first match wins
        #expect(c.database(path: home + "/./app.db") != nil)
        #expect(c.database(path: "/nope.db") == nil)
    }

    @Test func goPathClean() {
        #expect(GoPath.clean("") == ".")
        #expect(GoPath.clean("/") == "/")
        #expect(GoPath.clean("a/../..") == "..")
        #expect(GoPath.clean("/../a") == "/a")
        #expect(GoPath.clean("//a//b/") == "/a/b")
        #expect(GoPath.clean("./a/./b/.") == "a/b")
    }

    @Test func globalKeysFromConfigForURL() throws {
        let c = try parse("access-key-id: K\nsecret-access-key: S\n")
        let r = try c.replica(url: "s3://b/p")
        #expect(r.s3?.accessKeyID == "K" && r.s3?.secretAccessKey == "S")
    }

    @Test func mergeKeysAndAnchors() throws {
        let c = try parse("""
            x-common: &common
              sync-interval: 5s
              retention: 2h
            dbs:
              - path: /d
                replicas:
                  - <<: *common
                    url: s3://b/p
                    retention: 3h
            """)
        let r = c.dbs[0].replicas[0]
        #expect(r.syncInterval == .seconds(5) && r.retention == .seconds(3 * 3600))
    }

    @Test func loadFromDisk() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfgtest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("litestream.yml").path
        try "dbs:\n  - path: $DB\n".write(toFile: file, atomically: true, encoding: .utf8)
        let c = try Configuration.load(path: file, environment: ["DB": "/from/env.db"])
        #expect(c.dbs[0].path == "/from/env.db")
        let raw = try Configuration.load(path: file, expandEnv: false, environment: ["DB": "/from/env.db"])
        #expect(raw.dbs[0].path == FileManager.default.currentDirectoryPath + "/$DB")

        let missing = dir.appendingPathComponent("nope.yml").path
        #expect(throws: ReplicationError.self) { try Configuration.load(path: missing) }
        do {
            _ = try Configuration.load(path: missing)
        } catch let e as ReplicationError {
            #expect(e.code == .config && e.message == "config file not found: \(missing)")
        }

        try "dbs:\n  - path: /x\n    checkpoint-interval: nope\n".write(toFile: file, atomically: true, encoding: .utf8)
        do {
            _ = try Configuration.load(path: file)
            Issue.record("expected an error")
        } catch {
            #expect(error.oneLine == #"\#(file): dbs[0].checkpoint-interval: invalid duration "nope""#)
        }
    }
}

// MARK: - Errors

@Suite struct ConfigErrorTests {
    @Test func durationKeyPath() {
        let e = parseError("""
            dbs:
              - path: /db
                replicas:
                  - url: s3://b/p
                  - url: s3://b/q
                    sync-interval: abc
            """)
        #expect(e == #"/etc/litestream.yml: dbs[0].replicas[1].sync-interval: invalid duration "abc""#)
        #expect(parseError("dbs:\n  - path: /d\n    monitor-delay-interval: \"10\"\n")?
            .hasPrefix(#"/etc/litestream.yml: dbs[0].monitor-delay-interval: invalid duration "10""#) == true)
    }

    @Test func yamlSyntaxErrorHasLine() {
        let e = parseError("dbs:\n  - path: /db\n    replicas: [\n      url: x\n")
        #expect(e?.hasPrefix("/etc/litestream.yml: yaml: line ") == true)
        #expect(e?.contains("\n") == false)
        let e2 = parseError("addr: :9090\ndbs:\n\t- path: /x\n")
        #expect(e2?.hasPrefix("/etc/litestream.yml: yaml: line 3: ") == true)
        let e3 = parseError("a: 1\nb: [1, 2\nc: 3\n")
        #expect(e3?.hasPrefix("/etc/litestream.yml: yaml: line ") == true)
        let dup = parseError("addr: a\naddr: b\n")
        #expect(dup?.hasPrefix("/etc/litestream.yml: yaml: line 1: duplicate mapping key \"addr\"") == true)
    }

    @Test func typeErrors() {
        #expect(parseError("dbs: foo\n") == "/etc/litestream.yml: dbs: expected a list, got a string")
        #expect(parseError("- a\n- b\n") == "/etc/litestream.yml: expected a mapping at the top level, got a list")
        #expect(parseError("dbs:\n  - path: [a]\n") == "/etc/litestream.yml: dbs[0].path: expected a string, got a list")
        #expect(parseError("dbs:\n  - path: /d\n    min-checkpoint-page-count: many\n")
            == #"/etc/litestream.yml: dbs[0].min-checkpoint-page-count: expected an integer, got "many""#)
        #expect(parseError("dbs:\n  - path: /d\n    replicas:\n      - url: s3://b\n        skip-verify: maybe\n")
            == #"/etc/litestream.yml: dbs[0].replicas[0].skip-verify: expected a boolean (true/false), got "maybe""#)
        #expect(parseError("dbs:\n  - replicas: []\n") == "/etc/litestream.yml: dbs[0].path: database path required")
    }

    @Test func minCheckpointPageCount() {
        #expect(parseError("dbs:\n  - path: /d\n    min-checkpoint-page-count: 0\n")
            == "/etc/litestream.yml: dbs[0].min-checkpoint-page-count: minimum checkpoint page count required")
        #expect(parseError("dbs:\n  - path: /d\n    min-checkpoint-page-count: -5\n")
            == "/etc/litestream.yml: dbs[0].min-checkpoint-page-count: minimum checkpoint page count required")
    }

    func replicaError(_ body: String) -> String? {
        let indented = body.split(separator: "\n").map { "        " + $0 }.joined(separator: "\n")
        return parseError("dbs:\n  - path: /db\n    replicas:\n      - name: ok\n        path: /ok\n      -\n\(indented)\n")
    }

    @Test func replicaErrors() {
        let p = "/etc/litestream.yml: dbs[0].replicas[1]"
        #expect(replicaError("type: xyz") == #"\#(p).type: unknown replica type in config: "xyz""#)
        #expect(replicaError("url: xyz://a/b") == #"\#(p).url: unknown replica type in config: "xyz""#)
        #expect(replicaError("url: bkt/db") == "\(p).url: replica url scheme required: bkt/db")
        #expect(replicaError("type: s3\nurl: bkt/db") == "\(p).url: replica url scheme required: bkt/db")
        #expect(replicaError("path: s3://bkt/db")
            == "\(p).path: replica path cannot be a url, please use the 'url' field instead: s3://bkt/db")
        #expect(replicaError("type: file") == "\(p): file replica path required")
        #expect(replicaError("retention: 1h") == "\(p): file replica path required")
        #expect(replicaError("type: s3") == "\(p): bucket required for s3 replica")
        #expect(replicaError("type: gs") == "\(p): bucket required for gs replica")
        #expect(replicaError("type: abs") == "\(p): bucket required for abs replica")
        #expect(replicaError("type: sftp") == "\(p): host required for sftp replica")
        #expect(replicaError("type: sftp\nhost: h") == "\(p): user required for sftp replica")
        #expect(replicaError("url: file:///a\npath: /b") == "\(p): cannot specify url & path for file replica")
        #expect(replicaError("url: s3://b/p\npath: x") == "\(p): cannot specify url & path for s3 replica")
        #expect(replicaError("url: s3://b/p\nbucket: x") == "\(p): cannot specify url & bucket for s3 replica")
        #expect(replicaError("url: gs://b/p\nbucket: x") == "\(p): cannot specify url & bucket for gs replica")
        #expect(replicaError("url: abs://b/p\npath: x") == "\(p): cannot specify url & path for abs replica")
        #expect(replicaError("url: sftp://u@h/p\nhost: x") == "\(p): cannot specify url & host for sftp replica")
        #expect(replicaError("path: /other\nname: ok") == #"\#(p).name: duplicate replica name "ok" (set a unique 'name')"#)
        #expect(replicaError("type: s3\nbucket: b\nretention: 1x")
            == #"\#(p).retention: invalid duration "1x": unknown unit "x" (valid units: ns, us, ms, s, m, h)"#)
    }

    @Test func secretsNeverInErrors() {
        let secrets = ["hunter2", "topsecretkey", "azurekey"]
        let cases = [
            "secret-access-key: [hunter2]\n",
            "dbs:\n  - path: /d\n    replicas:\n      - url: s3://b\n        secret-access-key: {k: topsecretkey}\n",
            "dbs:\n  - path: /d\n    replicas:\n      - url: abs://c/p\n        account-key: [azurekey]\n",
            "dbs:\n  - path: /d\n    replicas:\n      - path: sftp://u:hunter2@h/x\n",
            "dbs:\n  - path: /d\n    replicas:\n      - url: sftp://u:hunter2@h:bad/x\n",
            "dbs:\n  - path: /d\n    replicas:\n      - type: sftp\n        host: h\n        password: hunter2\n",
        ]
        for yaml in cases {
            let e = parseError(yaml)
            #expect(e != nil, "expected an error for \(yaml)")
            for s in secrets {
                #expect(e?.contains(s) == false, "secret leaked: \(e ?? "")")
            }
        }
    }
}

// MARK: - Typed destinations and key checks

@Suite struct ReplicaKeyTests {
    @Test func backendKeysBuildTypedDestinations() throws {
        let c = try parse("""
            dbs:
              - path: /db
                replicas:
                  - type: gcs
                    bucket: gb
                    path: /x/y/
                    endpoint: http://127.0.0.1:4443
                  - type: abs
                    account-name: acct
                    bucket: cont
                    account-key: a2V5
                    sas-token: sv=2021&sig=abc
                    endpoint: http://127.0.0.1:10000/acct
                  - url: sftp://me@h:2222/backups
                    key-path: /keys/id_ed25519
                    key-passphrase: pass
                    host-key: SHA256:abc
                    known-hosts-path: /etc/ssh/known
            """)
        let r = c.dbs[0].replicas
        #expect(r[0].gcs == GCSDestination(bucket: "gb", path: "x/y", endpoint: "http://127.0.0.1:4443"))
        #expect(r[1].azure == AzureDestination(accountName: "acct", container: "cont", path: nil,
                                               endpoint: "http://127.0.0.1:10000/acct", accountKey: "a2V5",
                                               sasToken: "sv=2021&sig=abc"))
        #expect(r[2].sftp == SFTPDestination(host: "h:2222", user: "me", keyPath: "/keys/id_ed25519", keyPassphrase: "pass",
                                             path: "/backups", hostKey: "SHA256:abc", knownHostsPath: "/etc/ssh/known"))
        #expect(c.warnings.isEmpty, "\(c.warnings)")
        // The same destination from the URL form and from keys.
        #expect(try ReplicaConfig.fromURL("abs://acct@cont").azure == AzureDestination(accountName: "acct", container: "cont"))
        #expect(try ReplicaConfig.fromURL("gcs://gb/x/y/").gcs == GCSDestination(bucket: "gb", path: "x/y"))
    }

    @Test func unknownKeysAreWarnedWithTheClosestKey() throws {
        let c = try parse("""
            adr: ":9090"
            dbs:
              - path: /db
                checkpoint-intervall: 1m
                replicas:
                  - url: s3://b/p
                    acces-key-id: AK
                    secret-access-key: S
                    colour: blue
                  - url: gs://g/p
                    region: us-east-1
            """)
        let w = c.warnings
        #expect(w.contains(#"/etc/litestream.yml: adr: unknown key (did you mean "addr"?); ignored"#), "\(w)")
        #expect(w.contains(#"/etc/litestream.yml: dbs[0].checkpoint-intervall: unknown key (did you mean "checkpoint-interval"?); ignored"#), "\(w)")
        #expect(w.contains(#"/etc/litestream.yml: dbs[0].replicas[0].acces-key-id: unknown key (did you mean "access-key-id"?); ignored"#), "\(w)")
        #expect(w.contains("/etc/litestream.yml: dbs[0].replicas[0].colour: unknown key; ignored"), "\(w)")
        #expect(w.contains("/etc/litestream.yml: dbs[0].replicas[1].region: not used by gs replicas; ignored"), "\(w)")
        #expect(w.count == 5, "\(w)")
        // A warning never carries a value (the misspelt key's value may be a secret).
        #expect(!w.joined().contains("AK") || !w.joined().contains(": AK"))
    }

    @Test func keysThatWouldMisleadAreErrors() {
        // An age block that encrypts nothing, or a key that does not parse, stops the launcher (never plaintext).
        #expect(parseError("dbs:\n  - path: /d\n    replicas:\n      - url: s3://b\n        age:\n          recipients: [age1x]\n")
            == "/etc/litestream.yml: dbs[0].replicas[0].age.recipients[0]: line 1: not an age X25519 recipient (age1…), or its checksum does not match")
        #expect(parseError("dbs:\n  - path: /d\n    replicas:\n      - url: s3://b\n        age: {}\n")?
            .hasPrefix("/etc/litestream.yml: dbs[0].replicas[0].age: no recipients or identities: objects would be stored unencrypted") == true)
        let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
        let bad = parseError("dbs:\n  - path: /d\n    replicas:\n      - url: s3://b\n        age:\n          identities: [\(secret)]\n")
        #expect(bad == "/etc/litestream.yml: dbs[0].replicas[0].age.identities[0]: line 1: not an age X25519 identity (AGE-SECRET-KEY-1…), or its checksum does not match")
        // A misspelt lease setting would leave a default the user did not choose: an error, not a warning.
        #expect(parseError("dbs:\n  - path: /d\n    lease:\n      tll: 30s\n    replicas:\n      - url: s3://b\n")
            == "/etc/litestream.yml: dbs[0].lease.tll: unknown lease setting (did you mean \"ttl\"?); lease settings are ttl, wait and replica")
        #expect(parseError("dbs:\n  - path: /d\n    replicas:\n      - url: sftp://u@h/p\n        host-key: SHA256:x\n        insecure-skip-host-key-check: true\n")
            == "/etc/litestream.yml: dbs[0].replicas[0].insecure-skip-host-key-check: cannot be combined with host-key")
    }

    /// Litestream 0.3.13's `age` block: lists of strings, each holding one or more keys (an identity file's text).
    @Test func ageBlockParsesRecipientsAndIdentities() throws {
        let a = try AgeIdentity.generate(), b = try AgeIdentity.generate()
        let c = try parse("""
            dbs:
              - path: /d
                replicas:
                  - url: s3://b/db
                    age:
                      recipients: [\(a.recipient), \(b.recipient)]
                      identities:
                        - |
                          # created: now
                          # public key: \(a.recipient)
                          \(a.secretKeyString)
                  - url: file:///plain
            """)
        let age = try #require(c.dbs[0].replicas[0].age)
        #expect(age.recipients == [a.recipient, b.recipient])
        #expect(age.identities.map(\.recipient) == [a.recipient])
        #expect(c.dbs[0].replicas[1].age == nil)
    }

    @Test func leaseAtTheTopLevelAppliesToEveryDatabase() throws {
        let c = try parse("""
            lease: {ttl: 12s, wait: 1m}
            dbs:
              - path: /a
                replicas:
                  - url: s3://b/a
              - path: /b
                lease: {ttl: 6s, replica: second}
                replicas:
                  - url: file:///r/b
                  - name: second
                    url: s3://b/b
              - path: /c
                upstream: {url: "http://primary:9090"}
            """)
        #expect(c.lease == LeaseConfig(ttl: .seconds(12), wait: .seconds(60)))
        #expect(c.dbs[0].lease == LeaseConfig(ttl: .seconds(12), wait: .seconds(60)))
        #expect(c.dbs[0].leaseReplica?.name == "s3")
        // A database's own block overrides what it sets and inherits the rest.
        #expect(c.dbs[1].lease == LeaseConfig(ttl: .seconds(6), wait: .seconds(60), replica: "second"))
        #expect(c.dbs[1].leaseReplica?.name == "second")
        // A live read replica writes no replica: the top-level lease does not apply to it.
        #expect(c.dbs[2].lease == nil)
        #expect(try parse("lease: {}\ndbs:\n  - path: /d\n    replicas:\n      - url: s3://b\n").dbs[0].lease == LeaseConfig())
    }

    @Test func leaseSettingsThatCannotWorkAreErrors() {
        #expect(parseError("lease: {ttl: 2s}\n") == "/etc/litestream.yml: lease.ttl: 2s is too short: a lease needs at least 3s (it is renewed every ttl/3)")
        #expect(parseError("dbs:\n  - path: /d\n    lease: {}\n")
            == "/etc/litestream.yml: dbs[0].lease: a lease lives on a replica, and this database has none")
        #expect(parseError("lease: {}\ndbs:\n  - path: /d\n")
            == "/etc/litestream.yml: lease: dbs[0] (/d): a lease lives on a replica, and this database has none")
        #expect(parseError("dbs:\n  - path: /d\n    lease: {replica: nope}\n    replicas:\n      - url: s3://b\n")?
            .contains("lease replica \"nope\" is not one of this database's replicas (\"s3\")") == true)
        #expect(parseError("dbs:\n  - path: /d\n    lease: {}\n    replicas:\n      - url: sftp://u@h/p\n        host-key: SHA256:x\n")?
            .contains("SFTP has no compare-and-swap write") == true)
        #expect(parseError("dbs:\n  - path: /d\n    lease: {wait: -1s}\n    replicas:\n      - url: s3://b\n")
            == "/etc/litestream.yml: dbs[0].lease.wait: must not be negative")
        #expect(parseError("dbs:\n  - path: /d\n    upstream: {url: \"http://p:1\"}\n    lease: {}\n")?
            .contains("a live read replica (upstream) does not write its replicas, so it takes no lease") == true)
    }

    @Test func legacyKeysAreNamed() throws {
        let c = try parse("logging: {level: debug}\ndbs:\n  - path: /d\n    meta-path: /m\n    monitor-interval: 1s\n")
        #expect(c.warnings.count == 3, "\(c.warnings)")
        #expect(c.warnings.allSatisfy { $0.hasSuffix("; ignored") })
        #expect(c.warnings.contains { $0.contains("dbs[0].meta-path: Litestream 0.3's meta-path is not supported") })
    }

    @Test func editDistance() {
        #expect(KeyChecker.editDistance("kitten", "sitting") == 3)
        #expect(KeyChecker.editDistance("", "abc") == 3)
        #expect(KeyChecker.closest("bukcet", in: ["bucket", "path"]) == "bucket")
        #expect(KeyChecker.closest("zzzzzz", in: ["bucket", "path"]) == nil)
    }
}

// MARK: - Unset variables

@Suite struct UnsetVariableTests {
    @Test func unsetVariablesAreErrorsNamingTheVariableAndLine() {
        let e = parseError("dbs:\n  - path: /data/app.db\n    replicas:\n      - url: s3://$BUCKET/db\n")
        #expect(e == "/etc/litestream.yml: line 4: environment variable $BUCKET is not set (set it, write ${BUCKET:-} for an empty value or ${BUCKET:-default} for a default, or pass -no-expand-env)")
        #expect(parseError("dbs:\n  - path: ${DIR}/app.db\n")?.contains("line 2: environment variable $DIR is not set") == true)
    }

    @Test func defaultsCommentsAndProseAreFine() throws {
        let c = try parse("""
            # costs $5, see $HOME_PAGE
            dbs:
              - path: ${DIR:-/srv}/app.db   # $ALSO_A_COMMENT
                replicas:
                  - url: s3://${BUCKET:-fallback}/x
                    secret-access-key: "pa$$word $1"
                    access-key-id: ${EMPTY:-}
            """)
        #expect(c.dbs[0].path == "/srv/app.db")
        #expect(c.dbs[0].replicas[0].s3?.bucket == "fallback")
        #expect(c.dbs[0].replicas[0].s3?.accessKeyID == nil)
        let set = try parse("dbs:\n  - path: ${DIR:-/srv}/app.db\n", env: ["DIR": "/data"])
        #expect(set.dbs[0].path == "/data/app.db")
        // With -no-expand-env nothing is checked or expanded.
        #expect(try parse("dbs:\n  - path: /d/$UNSET.db\n", expand: false).dbs[0].path == "/d/$UNSET.db")
    }
}

// MARK: - Hostile input

@Suite struct HostileConfigTests {
    @Test func aliasBombsAreHarmlessOrRefusedQuickly() throws {
        // Billion laughs through sequences: aliases share nodes, and unknown keys are never walked.
        var lines = [#"a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]"#]
        for i in 1..<10 { lines.append("a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ",") + "]") }
        lines.append("dbs:\n  - path: /x.db\n    replicas:\n      - path: /r\n        extra: *a9")
        let started = Date()
        let c = try parse(lines.joined(separator: "\n") + "\n")
        #expect(c.dbs.count == 1)
        // Merge keys doubling 24 times would take hours to expand: refused instead.
        var m = ["m0: &m0 {k: 1}"]
        for i in 1..<25 { m.append("m\(i): &m\(i) {<<: [*m\(i - 1), *m\(i - 1)]}") }
        m.append("dbs:\n  - path: /y.db\n    <<: *m24")
        #expect(parseError(m.joined(separator: "\n") + "\n")?.contains("the file looks like a YAML bomb") == true)
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test func aHugeConfigIsRefusedBeforeParsing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfgbig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("litestream.yml").path
        try Data(String(repeating: "# padding padding padding padding padding padding padding\n", count: 180_000).utf8)
            .write(to: URL(fileURLWithPath: file))
        do {
            _ = try Configuration.load(path: file)
            Issue.record("a 10 MB config was accepted")
        } catch {
            #expect(error.oneLine.hasPrefix("\(file): config file too large (more than 4 MiB)"), "\(error.oneLine)")
        }
    }
}

// MARK: - Examples

@Suite struct ExampleConfigTests {
    /// Every example config parses, with each variable it names set, without a warning: the examples stay true.
    @Test func everyExampleConfigParsesCleanly() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        var files: [String] = []
        for dir in ["examples", "examples/live", "examples/app"] {
            let path = root.appendingPathComponent(dir).path
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] where name.hasSuffix(".yml") {
                files.append(path + "/" + name)
            }
        }
        #expect(files.count >= 6, "\(files)")
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            var env: [String: String] = [:]
            for r in EnvironmentExpansion.unsetReferences(text, lookup: { _ in nil }) { env[r.name] = "x" }
            let c = try Configuration.parse(yaml: text, sourceName: file, environment: env)
            #expect(!c.dbs.isEmpty, "\(file)")
            #expect(c.warnings.isEmpty, "\(file): \(c.warnings)")
        }
    }
}
