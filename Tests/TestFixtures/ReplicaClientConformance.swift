import Foundation
import Testing
import ReplicationKit

/// The replica-client contract shared by every backend's tests (file, S3, GCS, Azure Blob, SFTP).
public enum ReplicaClientConformance {
    public static func bytes(of source: any ByteSource) throws -> [UInt8] {
        defer { source.close() }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try buf.withUnsafeMutableBytes { try source.read(into: $0) }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    public static func body(_ data: [UInt8]) -> ObjectBody {
        { sink in
            var i = 0
            while i < data.count {  // several sink calls, as the LZ4 encoder makes
                let end = min(i + 100_000, data.count)
                try data[i..<end].withUnsafeBytes { try sink($0) }
                i = end
            }
        }
    }

    /// The replica-client contract every backend must meet: listings sorted and filtered, exact bytes back,
    /// missing objects `.notFound`, deletes idempotent.
    public static func check(_ c: any ReplicaClient) throws {
        #expect(try c.generations().isEmpty)
        let g1 = try #require(Generation(name: "0123456789abcdef")), g2 = try #require(Generation(name: "00000000000000ff"))
        let snapData = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let before = Date().addingTimeInterval(-5)
        let s0 = try c.writeSnapshot(generation: g1, index: 0, body: Self.body(snapData))
        #expect(s0.size == UInt64(snapData.count))
        _ = try c.writeSnapshot(generation: g1, index: 2, body: Self.body([1, 2, 3]))
        _ = try c.writeSnapshot(generation: g2, index: 0, body: Self.body([]))
        var segs: [WALSegmentInfo] = []
        for (i, o) in [(0, 0), (0, 4152), (1, 0), (2, 0), (2, 8192)] as [(UInt32, UInt64)] {
            segs.append(try c.writeWALSegment(position: WALPosition(generation: g1, index: i, offset: o),
                                              body: Self.body(Array("seg \(i) \(o)".utf8))))
        }
        #expect(try c.generations() == [g2, g1])
        let snaps = try c.snapshots(generation: g1)
        #expect(snaps.map(\.index) == [0, 2])
        #expect(snaps.map(\.size) == [UInt64(snapData.count), 3])
        #expect(snaps.allSatisfy { $0.createdAt > before && $0.createdAt < Date().addingTimeInterval(5) })
        let listed = try c.walSegments(generation: g1)
        #expect(listed.map { "\($0.index)/\($0.offset)" } == ["0/0", "0/4152", "1/0", "2/0", "2/8192"])
        #expect(try Self.bytes(of: c.openSnapshot(snaps[0])) == snapData)
        #expect(try Self.bytes(of: c.openWALSegment(listed[1])) == Array("seg 0 4152".utf8))
        #expect(try Self.bytes(of: c.openSnapshot(try c.snapshots(generation: g2)[0])).isEmpty)

        // Missing objects are .notFound.
        let ghost = SnapshotInfo(generation: g1, index: 9, size: 0, createdAt: Date())
        do { _ = try c.openSnapshot(ghost); Issue.record("expected notFound") } catch let e as ReplicationError {
            #expect(e.code == .notFound, "\(e)")
        }
        try c.deleteSnapshot(ghost)  // missing is not an error

        try c.deleteWALSegments(Array(listed.prefix(2)))
        #expect(try c.walSegments(generation: g1).map(\.index) == [1, 2, 2])
        try c.deleteSnapshot(snaps[0])
        #expect(try c.snapshots(generation: g1).map(\.index) == [2])
        try c.deleteGeneration(g1)
        #expect(try c.generations() == [g2])
        #expect(try c.walSegments(generation: g1).isEmpty)
        try c.deleteGeneration(g2)
        #expect(try c.generations().isEmpty)
    }
}
