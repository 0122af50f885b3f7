import Foundation
import Logging
import Testing
import TestFixtures
@testable import ReplicationKit

/// Interoperability with the official azure-storage-blob client (`Tests/Tools/azure_sdk_interop.py`): the SDK reads
/// what we wrote, and we restore a database from objects the SDK wrote in our layout.
@Suite("Azure Blob interop with the SDK", .serialized)
struct AzureBlobInteropTests {
    @Test func sdkListsAndDownloadsWhatWeWrote() throws {
        guard let s = AzureTestServer.get() else { return }
        let c = try s.client(key: s.key, blockThreshold: 1 << 20, blockSize: 300_000)
        defer { AzureBlobServerTests.cleanup(c) }
        let g1 = try #require(Generation(name: "1111111111111111")), g2 = try #require(Generation(name: "2222222222222222"))
        var written: [String: [UInt8]] = [:]
        let big = (0..<((2 << 20) + 777)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 11) }
        let snap = try c.writeSnapshot(generation: g1, index: 3, body: ReplicaClientConformance.body(big))  // block upload
        written[c.blobName(c.objectName(snapshot: snap))] = big
        for (g, i, o) in [(g1, 3, 0), (g1, 3, 4152), (g2, 0, 0)] as [(Generation, UInt32, UInt64)] {
            let data = Array("wal \(g.name) \(i) \(o)".utf8)
            let seg = try c.writeWALSegment(position: WALPosition(generation: g, index: i, offset: o), body: ReplicaClientConformance.body(data))
            written[c.blobName(c.objectName(segment: seg))] = data
        }
        let out = try s.sdk(["read", s.endpoint, s.account, s.key, s.container, c.abs.prefix])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let blobs = try #require(json["blobs"] as? [String: [String: Any]])
        #expect(Set(blobs.keys) == Set(written.keys))
        for (name, data) in written {
            let b = try #require(blobs[name], "the SDK does not list \(name)")
            #expect((b["size"] as? NSNumber)?.intValue == data.count, "\(name): size")
            #expect((b["listed_size"] as? NSNumber)?.intValue == data.count, "\(name): listed size")
            #expect(b["sha256"] as? String == Digest.hex(Digest.sha256(data)), "\(name): content differs")
            #expect(b["created"] is String, "\(name): no creation time in the SDK's listing")
        }
        #expect(json["generations"] as? [String] == ["\(c.abs.prefix)/generations/\(g1.name)/", "\(c.abs.prefix)/generations/\(g2.name)/"])
    }

    @Test func weRestoreADatabaseTheSDKUploaded() throws {
        guard let s = AzureTestServer.get() else { return }
        let c = try s.client(sas: s.sas)
        defer { AzureBlobServerTests.cleanup(c) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("abs-interop-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = dir + "/source.db"
        let db = try SQLiteConnection(path: source, create: true)
        try db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB);")
        try db.exec("BEGIN")
        for i in 0..<3000 { try db.exec("INSERT INTO t (v, b) VALUES ('row \(i)', randomblob(\(50 + i % 200)))") }
        try db.exec("COMMIT")
        let want = try db.queryRows("SELECT id, v, hex(b) FROM t ORDER BY id")
        db.close()

        let g = "0123456789abcdef"
        let name = try s.sdk(["write-snapshot", s.endpoint, s.account, s.key, s.container, c.abs.prefix, g, "7", source])
        #expect(name.trimmingCharacters(in: .whitespacesAndNewlines) == "\(c.abs.prefix)/generations/\(g)/snapshots/0000000000000007.snapshot.lz4")
        let gen = try #require(Generation(name: g))
        #expect(try c.generations() == [gen])
        #expect(try c.snapshots(generation: gen).map(\.index) == [7])

        let out = dir + "/restored.db"
        _ = try Restorer.restore(client: c, options: RestoreOptions(outputPath: out, parallelism: 2), logger: Logger(label: "test"))
        let restored = try SQLiteConnection(path: out, readOnly: true)
        defer { restored.close() }
        #expect(try restored.queryText("PRAGMA integrity_check") == "ok")
        #expect(try restored.queryRows("SELECT id, v, hex(b) FROM t ORDER BY id") == want)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(contentsOf: URL(fileURLWithPath: source)))
    }
}
