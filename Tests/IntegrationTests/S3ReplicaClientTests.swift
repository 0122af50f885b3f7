import Foundation
import Logging
import Testing
import TestFixtures
@testable import ReplicationKit

/// Integration tests against a real S3 server (SeaweedFS, `scripts/start-seaweedfs.sh`).
@Suite("S3 client against a server", .serialized)
struct S3IntegrationTests {
    static func client(_ s: Server, prefix: String = "t-\(UUID().uuidString)", bucket: String? = nil,
                       credentials: AWSCredentials? = nil, multipartThreshold: UInt64 = 16 << 20) -> S3ReplicaClient {
        var o = CurlHTTPOptions()
        o.maxAttempts = 2
        o.baseDelay = .milliseconds(20)
        return S3ReplicaClient(location: S3Location(bucket: bucket ?? s.bucket, prefix: prefix, region: s.region, endpoint: s.endpoint),
                               credentials: credentials ?? s.credentials, httpOptions: o,
                               multipartThreshold: multipartThreshold, partSize: 5 << 20)
    }

    static func bytes(of source: any ByteSource) throws -> [UInt8] { try ReplicaClientConformance.bytes(of: source) }

    static func body(_ data: [UInt8]) -> ObjectBody { ReplicaClientConformance.body(data) }

    @Test func rangedSnapshotDownload() throws {
        guard let s = Self.server() else { return }
        let c = Self.client(s)
        defer { for g in (try? c.generations()) ?? [] { try? c.deleteGeneration(g) } }
        let g = try #require(Generation(name: "00000000000000ab"))
        var data = [UInt8](repeating: 0, count: (5 << 20) + 4321)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 11) }
        let info = try c.writeSnapshot(generation: g, index: 1, body: Self.body(data))
        let key = c.key(c.objectName(snapshot: info))
        // 1 MiB ranges, 3 at a time: handed out in order, the last one partial.
        #expect(try Self.bytes(of: S3RangedSource(client: c, key: key, size: info.size, rangeSize: 1 << 20, connections: 3)) == data)
        // The default path of a plain S3 client.
        let ranged = try #require(try c.openSnapshotRanged(info))
        #expect(try Self.bytes(of: ranged) == data)
        // Reads smaller and larger than the reader's wake-up step (the reader sleeps on a range that is still
        // arriving and is woken once what it asked for, or the end of the range, is there): the same bytes.
        for chunk in [1000, 3 << 20] {
            let source = S3RangedSource(client: c, key: key, size: info.size, rangeSize: 1 << 20, connections: 2)
            defer { source.close() }
            var got: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: chunk)
            while true {
                let n = try buffer.withUnsafeMutableBytes { try source.read(into: $0) }
                if n == 0 { break }
                got += buffer[0..<n]
            }
            #expect(got == data, "reads of \(chunk) bytes")
        }
        // A listed size larger than the object: the last range comes up short, and the error says so.
        do {
            _ = try Self.bytes(of: S3RangedSource(client: c, key: key, size: info.size + 10, rangeSize: 1 << 20, connections: 3))
            Issue.record("a short object read as complete")
        } catch {
            #expect(error.oneLine.contains("shorter than its listed size"), "\(error.oneLine)")
        }
        // A missing object: the store's error code, and not found.
        do {
            _ = try Self.bytes(of: S3RangedSource(client: c, key: key + ".gone", size: 100, rangeSize: 1 << 20, connections: 3))
            Issue.record("a missing object was read")
        } catch let e as ReplicationError {
            #expect(e.code == .notFound && e.message.contains("HTTP 404 NoSuchKey"), "\(e.message)")
        }
    }

    @Test func multipartUpload() throws {
        guard let s = Self.server() else { return }
        let c = Self.client(s, multipartThreshold: 6 << 20)
        defer { for g in (try? c.generations()) ?? [] { try? c.deleteGeneration(g) } }
        let g = try #require(Generation(name: "00000000000000aa"))
        var data = [UInt8](repeating: 0, count: (12 << 20) + 12345)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 13) }
        let info = try c.writeSnapshot(generation: g, index: 1, body: Self.body(data))
        #expect(info.size == UInt64(data.count))
        let listed = try c.snapshots(generation: g)
        #expect(listed.map(\.size) == [UInt64(data.count)])
        #expect(try Self.bytes(of: c.openSnapshot(listed[0])) == data)

        // Two 5 MiB staging parts but below the threshold: one PUT whose digests come from a second pass
        // (SeaweedFS rejects a wrong Content-MD5 with BadDigest).
        let single = Self.client(s, prefix: c.s3.prefix)
        let mid = Array(data.prefix((7 << 20) + 3))
        _ = try single.writeSnapshot(generation: g, index: 2, body: Self.body(mid))
        let again = try c.snapshots(generation: g)
        #expect(again.map(\.index) == [1, 2])
        #expect(try Self.bytes(of: c.openSnapshot(again[1])) == mid)
    }

    @Test func manyKeysPaginateAndBatchDelete() throws {
        guard let s = Self.server() else { return }
        let c = Self.client(s)
        defer { for g in (try? c.generations()) ?? [] { try? c.deleteGeneration(g) } }
        let g = try #require(Generation(name: "00000000000000bb"))
        let count = 1_105
        let q = DispatchQueue(label: "s3-upload", attributes: .concurrent)
        let errors = Locked<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { w in
            for i in stride(from: w, to: count, by: 8) {
                do {
                    _ = try c.writeWALSegment(position: WALPosition(generation: g, index: UInt32(i / 100), offset: UInt64(i % 100) * 4096),
                                              body: Self.body([UInt8(i & 0xff)]))
                } catch { errors.withLock { $0.append(error.oneLine) } }
            }
        }
        _ = q
        #expect(errors.current.isEmpty, "\(errors.current.prefix(3))")
        let segs = try c.walSegments(generation: g)
        #expect(segs.count == count)
        #expect(segs == segs.sorted { ($0.index, $0.offset) < ($1.index, $1.offset) })
        try c.deleteGeneration(g)
        #expect(try c.walSegments(generation: g).isEmpty)
    }

    @Test func wrongSecretIsSignatureDoesNotMatchWithoutTheSecret() throws {
        guard let s = Self.server() else { return }
        let bad = AWSCredentials(accessKeyID: s.credentials.accessKeyID, secretAccessKey: "WRONG/secret+value=xyz")
        let c = Self.client(s, credentials: bad)
        do {
            _ = try c.generations()
            Issue.record("expected SignatureDoesNotMatch")
        } catch {
            let text = error.oneLine
            print("wrong secret -> \(text)")
            #expect(text.contains("SignatureDoesNotMatch"), "\(text)")
            #expect(!text.contains("WRONG/secret+value=xyz"))
            #expect(!text.contains(s.credentials.secretAccessKey))
            #expect(!text.contains("\n"))
            #expect(!text.contains("Signature="))
        }
    }

    @Test func missingBucketIsNoSuchBucketNamingTheBucket() throws {
        guard let s = Self.server() else { return }
        let c = Self.client(s, bucket: "rk-missing-bucket-\(UInt32.random(in: 0...UInt32.max))")
        do {
            _ = try c.generations()
            Issue.record("expected NoSuchBucket")
        } catch {
            let text = error.oneLine
            print("missing bucket -> \(text)")
            #expect(text.contains("NoSuchBucket"), "\(text)")
            #expect(text.contains(c.s3.bucket), "\(text)")
            #expect(ReplicationError.cause(of: error) == .http(status: 404, providerCode: "NoSuchBucket"))
            #expect(!text.contains(s.credentials.secretAccessKey))
        }
    }

    @Test func replicaToS3ThenRestoreEqualsSource() throws {
        guard let s = Self.server() else { return }
        let client = Self.client(s)
        defer { for g in (try? client.generations()) ?? [] { try? client.deleteGeneration(g) } }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("s3-roundtrip-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dbPath = dir + "/app.db"
        let app = try SQLiteConnection(path: dbPath, create: true)
        defer { app.close() }
        _ = try app.queryText("PRAGMA journal_mode=wal;")
        try app.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB);")
        var o = DatabaseOptions()
        o.monitorDelayInterval = .zero
        let db = Database(path: dbPath, options: o, logger: Logger(label: "test"))
        try db.start()
        defer { try? db.close() }
        let replica = Replica(name: "s3", client: client, db: db, options: ReplicaOptions(), logger: Logger(label: "test"))
        replica.start()
        defer { try? replica.stop(finalSync: false) }

        for round in 0..<4 {
            try app.exec("BEGIN")
            for i in 0..<200 { try app.exec("INSERT INTO t (v, b) VALUES ('r\(round)-\(i)', randomblob(\(100 + i)))") }
            try app.exec("COMMIT")
            try db.sync()
            try replica.sync()
            if round == 1 {
                try db.checkpoint(.passive)
                try app.exec("DELETE FROM t WHERE id % 7 = 0")
                try db.sync()
                try replica.sync()
            }
        }
        #expect(try client.generations().count == 1)
        let out = dir + "/restored.db"
        _ = try Restorer.restore(client: client, options: RestoreOptions(outputPath: out, parallelism: 4),
                                 logger: Logger(label: "test"))
        let restored = try SQLiteConnection(path: out, readOnly: true)
        defer { restored.close() }
        #expect(try restored.queryText("PRAGMA integrity_check") == "ok")
        let query = "SELECT id, v, hex(b) FROM t ORDER BY id"
        let want = try app.queryRows(query)
        #expect(want.count > 600)
        #expect(try restored.queryRows(query) == want)
        print("restored \(want.count) rows from \(client.location): \(try client.walSegments(generation: try #require(db.position?.generation)).count) WAL objects")
    }
}


/// The shared contract run against the file client and the S3 server; every other backend's test file runs
/// `ReplicaClientConformance.check(_:)` against its own server the same way.
@Suite("Replica client conformance (file and S3)", .serialized)
struct ReplicaClientConformanceTests {
    @Test(arguments: ["file", "s3"])
    func conformance(backend: String) throws {
        switch backend {
        case "file":
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("conformance-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try ReplicaClientConformance.check(FileReplicaClient(root: dir))
        default:
            guard let s = S3IntegrationTests.server() else { return }
            let c = S3IntegrationTests.client(s)
            defer { for g in (try? c.generations()) ?? [] { try? c.deleteGeneration(g) } }
            try ReplicaClientConformance.check(c)
        }
    }
}
