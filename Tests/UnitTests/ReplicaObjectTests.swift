import Foundation
import Logging
import Testing
@testable import ReplicationKit

/// The header of a frame without content checksum: FLG 0x60, BD 0x70, HC = (XXH32(60 70) >> 8) & 0xFF.
private let headerWithoutChecksum: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73]

/// The blocks of a frame our encoder wrote with content checksum: everything between the 7-byte header and the end
/// mark with its checksum.
private func blocks(_ frame: [UInt8]) -> ArraySlice<UInt8> { frame[7..<(frame.count - 8)] }

/// Decodes `frame` with the stock `lz4` CLI (liblz4's own frame decoder); nil when it fails.
private func lz4CLIDecode(_ frame: [UInt8], in dir: String) throws -> [UInt8]? {
    let input = dir + "/cli-\(UUID().uuidString).lz4", output = input + ".out"
    defer { try? FileManager.default.removeItem(atPath: input); try? FileManager.default.removeItem(atPath: output) }
    try WALFixture.write(input, frame)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/lz4")
    p.arguments = ["-d", "-q", "-f", input, output]
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return p.terminationStatus == 0 ? try WALFixture.read(output) : nil
}

/// Restores the replica at `root` and returns the rows.
private func restoredRows(_ env: DBTestEnv, root: String) throws -> [[String?]] {
    let out = env.dir + "/restored-\(UUID().uuidString).db"
    _ = try Restorer.restore(client: FileReplicaClient(root: root), options: RestoreOptions(outputPath: out),
                             logger: Logger(label: "restore-test"))
    let c = try SQLiteConnection(path: out)
    defer { c.close() }
    #expect(try c.queryText("PRAGMA integrity_check") == "ok")
    return try c.queryRows(DBTestEnv.rowsSQL)
}

/// A replica object is one LZ4 frame holding every shadow segment it uploads: the segments' blocks are copied into
/// it as they are (no decoding, no encoding), and the frame has no content checksum.
@Suite("Replica WAL objects")
struct ReplicaObjectTests {
    /// A database with a replica that uploaded its first sync, then three more syncs (compressible rows, rows of
    /// random bytes that make stored blocks, a small one): three shadow segments for the replica's next object.
    private static func threeSegmentsPending(_ root: String) throws -> (DBTestEnv, Database, Replica, WALPosition) {
        let env = try DBTestEnv()
        try env.insert(1)
        let db = try env.open()
        let replica = Replica(name: "file", client: FileReplicaClient(root: root.isEmpty ? env.dir + "/replica" : root),
                              db: db, options: ReplicaOptions(), logger: Logger(label: "replica-test"))
        try replica.sync()
        let start = try #require(replica.position)
        try env.insert(40)
        try db.sync()
        try env.insert(30, size: 3000)
        try db.sync()
        try env.insert(2)
        try db.sync()
        #expect(env.pos.generation == start.generation && env.pos.index == start.index)
        return (env, db, replica, start)
    }

    /// The object is the new header, each segment's blocks byte for byte, and an end mark; liblz4's decoder (the
    /// `lz4` CLI) reads it as the segments' concatenation, and it restores.
    @Test func anObjectOfSeveralSegmentsIsTheirBlocksInOneFrame() throws {
        let (env, _, replica, start) = try Self.threeSegmentsPending("")
        let root = env.dir + "/replica"
        let g = start.generation
        let segs = try ShadowWAL(meta: env.meta).segments(g, index: start.index).filter { $0.offset >= start.offset }
        #expect(segs.count == 3 && segs.first?.offset == start.offset, "\(segs.map(\.offset)) from \(start.offset)")
        let frames = try segs.map { try WALFixture.read($0.path) }
        var wal: [UInt8] = []
        for f in frames { wal += try LZ4.decompress(f) }

        try replica.sync()
        let object = try WALFixture.read(root + "/" + ReplicaPaths.walSegment(g, index: start.index, offset: start.offset))
        #expect(object == headerWithoutChecksum + frames.flatMap(blocks) + [0, 0, 0, 0],
                "object of \(object.count) bytes from segments of \(frames.map(\.count))")
        #expect(try lz4CLIDecode(object, in: env.dir) == wal)
        #expect(replica.position == env.pos)
        #expect(try FileReplicaClient(root: root).endPosition(generation: g).position == env.pos)
        #expect(try restoredRows(env, root: root) == env.appRows())
    }

    /// A replica whose store ends inside a shadow segment (another writer of the store, an older process) uploads
    /// from there: that segment's rest is decoded and encoded, the segments after it are copied as they are.
    @Test func anUploadStartingInsideASegmentEncodesOnlyThatSegment() throws {
        let (env, db, replica, start) = try Self.threeSegmentsPending("")
        let root = env.dir + "/replica", other = env.dir + "/other"
        let g = start.generation
        let segs = try ShadowWAL(meta: env.meta).segments(g, index: start.index).filter { $0.offset >= start.offset }
        let frames = try segs.map { try WALFixture.read($0.path) }
        let first = try LZ4.decompress(frames[0])
        var rest: [UInt8] = []
        for f in frames.dropFirst() { rest += try LZ4.decompress(f) }

        // The other store: a copy of what the replica uploaded, plus the first segment's first `cut` bytes.
        try FileManager.default.copyItem(atPath: root, toPath: other)
        let cut = first.count / 2 + 5
        try WALFixture.write(other + "/" + ReplicaPaths.walSegment(g, index: start.index, offset: start.offset),
                             try LZ4.compress(Array(first[..<cut])))
        let second = Replica(name: "other", client: FileReplicaClient(root: other), db: db, options: ReplicaOptions(),
                             logger: Logger(label: "replica-test"))
        try second.sync()
        let at = start.offset + UInt64(cut)
        let object = try WALFixture.read(other + "/" + ReplicaPaths.walSegment(g, index: start.index, offset: at))
        #expect(Array(object.prefix(7)) == headerWithoutChecksum)
        #expect(object.suffix(frames.dropFirst().map { blocks($0).count }.reduce(4, +))
                == ArraySlice(frames.dropFirst().flatMap(blocks) + [0, 0, 0, 0]))
        #expect(try lz4CLIDecode(object, in: env.dir) == Array(first[cut...]) + rest)
        #expect(second.position == env.pos)
        #expect(try FileReplicaClient(root: other).endPosition(generation: g).position == env.pos)
        #expect(try restoredRows(env, root: other) == env.appRows())
        _ = replica
    }

    /// After a restart the pending segments are read back from their files (no bytes in memory, length unknown):
    /// each is decoded once to check its checksum and measure it, and its blocks still go into the object as they are.
    @Test func segmentsReadBackFromTheirFilesAfterARestartAreCopiedToo() throws {
        let (env, db, _, start) = try Self.threeSegmentsPending("")
        let root = env.dir + "/replica"
        let g = start.generation
        let segs = try ShadowWAL(meta: env.meta).segments(g, index: start.index).filter { $0.offset >= start.offset }
        let frames = try segs.map { try WALFixture.read($0.path) }
        try db.close()
        let reopened = try env.open()
        #expect(try reopened.shadowLog.segments(generation: g, fromIndex: start.index).flatMap(\.segments)
            .allSatisfy { $0.compressed == nil && $0.length == nil })
        let replica = Replica(name: "file", client: FileReplicaClient(root: root), db: reopened, options: ReplicaOptions(),
                              logger: Logger(label: "replica-test"))
        try replica.sync()
        let object = try WALFixture.read(root + "/" + ReplicaPaths.walSegment(g, index: start.index, offset: start.offset))
        #expect(object == headerWithoutChecksum + frames.flatMap(blocks) + [0, 0, 0, 0])
        #expect(replica.position == env.pos)
        #expect(try restoredRows(env, root: root) == env.appRows())
    }
}
