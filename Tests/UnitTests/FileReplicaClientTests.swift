import Foundation
import Testing
@testable import ReplicationKit

private struct ReplicaDir {
    let root: String
    let client: FileReplicaClient
    let g = Generation(name: "29cf4bced74e92ab")!

    init() throws {
        root = try WALFixture.tempDir("replica") + "/replica"
        client = FileReplicaClient(root: root)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: (root as NSString).deletingLastPathComponent) }

    /// Every file below the root, relative to it.
    var files: [String] {
        let fm = FileManager.default
        return (fm.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter {
            var dir: ObjCBool = false
            return fm.fileExists(atPath: root + "/" + $0, isDirectory: &dir) && !dir.boolValue
        }.sorted()
    }

    func touch(_ relative: String, _ bytes: [UInt8] = [0x42]) throws { try WALFixture.write(root + "/" + relative, bytes) }
}

private func body(_ bytes: [UInt8], chunk: Int = 7) -> ObjectBody {
    { sink in
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + chunk)
            try bytes[i..<end].withUnsafeBytes { try sink($0) }
            i = end
        }
    }
}

private func readAll(_ src: any ByteSource) throws -> [UInt8] {
    defer { src.close() }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 5)
    while true {
        let n = try buf.withUnsafeMutableBytes { try src.read(into: $0) }
        if n == 0 { return out }
        out += buf[0..<n]
    }
}

@Suite("FileReplicaClient")
struct FileReplicaClientTests {
    @Test func identity() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        #expect(r.client.type == "file")
        #expect(r.client.location == r.root)
    }

    @Test func missingDirectoriesListEmpty() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        #expect(try r.client.generations().isEmpty)
        #expect(try r.client.snapshots(generation: r.g).isEmpty)
        #expect(try r.client.walSegments(generation: r.g).isEmpty)
        try FileManager.default.createDirectory(atPath: r.root + "/generations/" + r.g.name, withIntermediateDirectories: true)
        #expect(try r.client.generations() == [r.g])
        #expect(try r.client.snapshots(generation: r.g).isEmpty)
        #expect(try r.client.walSegments(generation: r.g).isEmpty)
        // Deleting things that do not exist is fine.
        try r.client.deleteGeneration(Generation(value: 5))
        try r.client.deleteSnapshot(SnapshotInfo(generation: r.g, index: 3, size: 0, createdAt: Date()))
        try r.client.deleteWALSegments([WALSegmentInfo(generation: r.g, index: 0, offset: 32, size: 0, createdAt: Date())])
    }

    @Test func writeListOpenDeleteSnapshots() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        let data = Array("snapshot bytes, compressed or not: the client does not care".utf8)
        let before = Date(timeIntervalSinceNow: -5)
        let s1000 = try r.client.writeSnapshot(generation: r.g, index: 1000, body: body(data))
        #expect(s1000.generation == r.g && s1000.index == 1000 && s1000.layout == .v04)
        #expect(s1000.size == UInt64(data.count))
        #expect(s1000.createdAt > before && s1000.createdAt < Date(timeIntervalSinceNow: 5))
        let s2 = try r.client.writeSnapshot(generation: r.g, index: 2, body: body([1, 2, 3]))
        #expect(r.files == ["generations/29cf4bced74e92ab/snapshots/0000000000000002.snapshot.lz4",
                            "generations/29cf4bced74e92ab/snapshots/00000000000003e8.snapshot.lz4"])
        #expect(r.client.objectName(snapshot: s1000) == "generations/29cf4bced74e92ab/snapshots/00000000000003e8.snapshot.lz4")

        let listed = try r.client.snapshots(generation: r.g)
        #expect(listed.map(\.index) == [2, 1000])
        #expect(listed == [s2, s1000])  // sizes and mtimes are the file's own
        #expect(try readAll(r.client.openSnapshot(s1000)) == data)

        // Overwrite replaces the content.
        _ = try r.client.writeSnapshot(generation: r.g, index: 2, body: body([9]))
        #expect(try readAll(r.client.openSnapshot(s2)) == [9])

        try r.client.deleteSnapshot(s2)
        #expect(try r.client.snapshots(generation: r.g).map(\.index) == [1000])
        #expect(throws: (any Error).self) { try r.client.openSnapshot(s2) }
        #expect(try r.client.generations() == [r.g])
    }

    @Test func writeListOpenDeleteWALSegments() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        let positions: [(UInt32, UInt64)] = [(1, 0x2050), (0, 0), (1000, 1001), (1, 0), (0, 0x20)]
        for (i, o) in positions {
            let s = try r.client.writeWALSegment(position: WALPosition(generation: r.g, index: i, offset: o),
                                                 body: body(Array("\(i)-\(o)".utf8), chunk: 1))
            #expect(s.index == i && s.offset == o && s.layout == .v04 && s.size == UInt64("\(i)-\(o)".utf8.count))
        }
        #expect(r.files.contains("generations/29cf4bced74e92ab/wal/00000000000003e8/00000000000003e9.wal.lz4"))
        #expect(r.files.contains("generations/29cf4bced74e92ab/wal/0000000000000001/0000000000002050.wal.lz4"))
        let listed = try r.client.walSegments(generation: r.g)
        #expect(listed.map { [UInt64($0.index), $0.offset] } == [[0, 0], [0, 0x20], [1, 0], [1, 0x2050], [1000, 1001]])
        #expect(listed.allSatisfy { $0.generation == r.g && $0.layout == .v04 })
        for s in listed { #expect(try readAll(r.client.openWALSegment(s)) == Array("\(s.index)-\(s.offset)".utf8)) }
        #expect(listed[1].position == WALPosition(generation: r.g, index: 0, offset: 0x20))
        #expect(r.client.objectName(segment: listed[4]) == "generations/29cf4bced74e92ab/wal/00000000000003e8/00000000000003e9.wal.lz4")

        // Deleting segments prunes emptied index directories only.
        try r.client.deleteWALSegments([listed[0], listed[1], listed[2]])
        #expect(try r.client.walSegments(generation: r.g).map(\.index) == [1, 1000])
        #expect(!FileManager.default.fileExists(atPath: r.root + "/generations/29cf4bced74e92ab/wal/0000000000000000"))
        #expect(FileManager.default.fileExists(atPath: r.root + "/generations/29cf4bced74e92ab/wal/0000000000000001"))
        try r.client.deleteWALSegments([listed[0]])  // again: missing is fine
    }

    @Test func generationsAreSortedAndFiltered() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        let gens = ["ffffffffffffffff", "0000000000000001", "29cf4bced74e92ab"]
        for g in gens { try FileManager.default.createDirectory(atPath: r.root + "/generations/" + g, withIntermediateDirectories: true) }
        // Not generations: wrong length, uppercase, a temp leftover, a plain file with a valid name.
        for junk in ["29cf4bced74e92a", "29CF4BCED74E92AB", "29cf4bced74e92ab.tmp", "xyz"] {
            try FileManager.default.createDirectory(atPath: r.root + "/generations/" + junk, withIntermediateDirectories: true)
        }
        try r.touch("generations/0000000000000002")
        #expect(try r.client.generations().map(\.name) == ["0000000000000001", "29cf4bced74e92ab", "ffffffffffffffff"])
        try r.client.deleteGeneration(r.g)
        #expect(try r.client.generations().map(\.name) == ["0000000000000001", "ffffffffffffffff"])
        #expect(!FileManager.default.fileExists(atPath: r.root + "/generations/29cf4bced74e92ab"))
    }

    @Test func v03LayoutIsListedAndReadable() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        let base = "generations/29cf4bced74e92ab/"
        try r.touch(base + "snapshots/00000000.snapshot.lz4", [1])
        try r.touch(base + "snapshots/0000001f.snapshot.lz4", [2, 2])
        try r.touch(base + "wal/00000000_00000000.wal.lz4", [3])
        try r.touch(base + "wal/00000000_00004080.wal.lz4", [4])
        try r.touch(base + "wal/0000001f_00000020.wal.lz4", [5])
        let snaps = try r.client.snapshots(generation: r.g)
        #expect(snaps.map(\.index) == [0, 0x1f])
        #expect(snaps.allSatisfy { $0.layout == .v03 })
        #expect(snaps.map(\.size) == [1, 2])
        #expect(r.client.objectName(snapshot: snaps[1]) == base + "snapshots/0000001f.snapshot.lz4")
        #expect(try readAll(r.client.openSnapshot(snaps[1])) == [2, 2])

        let segs = try r.client.walSegments(generation: r.g)
        #expect(segs.map { [UInt64($0.index), $0.offset] } == [[0, 0], [0, 0x4080], [0x1f, 0x20]])
        #expect(segs.allSatisfy { $0.layout == .v03 })
        #expect(r.client.objectName(segment: segs[1]) == base + "wal/00000000_00004080.wal.lz4")
        #expect(try readAll(r.client.openWALSegment(segs[2])) == [5])

        try r.client.deleteWALSegments([segs[0]])
        try r.client.deleteSnapshot(snaps[0])
        #expect(try r.client.walSegments(generation: r.g).count == 2)
        #expect(try r.client.snapshots(generation: r.g).map(\.index) == [0x1f])
        #expect(FileManager.default.fileExists(atPath: r.root + "/" + base + "wal"))
    }

    @Test func mixedLayoutsSortTogether() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        let base = "generations/29cf4bced74e92ab/"
        try r.touch(base + "snapshots/00000001.snapshot.lz4")
        try r.touch(base + "snapshots/0000000000000000.snapshot.lz4")
        try r.touch(base + "snapshots/0000000000000002.snapshot.lz4")
        try r.touch(base + "wal/00000001_00000020.wal.lz4")
        try r.touch(base + "wal/0000000000000001/0000000000000000.wal.lz4")
        try r.touch(base + "wal/0000000000000000/0000000000000020.wal.lz4")
        #expect(try r.client.snapshots(generation: r.g).map { "\($0.index)\($0.layout == .v04 ? "n" : "o")" } == ["0n", "1o", "2n"])
        #expect(try r.client.walSegments(generation: r.g).map { "\($0.index):\($0.offset)\($0.layout == .v04 ? "n" : "o")" }
                == ["0:32n", "1:0n", "1:32o"])
    }

    @Test func tempAndJunkNamesAreIgnored() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        let base = "generations/29cf4bced74e92ab/"
        try r.touch(base + "snapshots/0000000000000001.snapshot.lz4")
        for junk in ["0000000000000002.snapshot.lz4.tmp", "000000000000003.snapshot.lz4", "0000000000000004.snapshot",
                     "0000000X.snapshot.lz4", "0000000A.snapshot.lz4", "00000000000000000.snapshot.lz4",
                     "80000000.snapshot.lz4", "snapshot.lz4", "readme.txt"] {
            try r.touch(base + "snapshots/" + junk)
        }
        try FileManager.default.createDirectory(atPath: r.root + "/" + base + "snapshots/0000000000000009.snapshot.lz4",
                                                withIntermediateDirectories: true)
        #expect(try r.client.snapshots(generation: r.g).map(\.index) == [1])

        try r.touch(base + "wal/0000000000000000/0000000000000020.wal.lz4")
        for junk in ["wal/0000000000000000/0000000000000040.wal.lz4.tmp", "wal/0000000000000000/notes",
                     "wal/0000000000000000/zz.wal.lz4", "wal/0000000000000000/0000000000000060.wal",
                     "wal/00000000_00000020.wal.lz4.tmp", "wal/0000000_00000020.wal.lz4", "wal/00000000-00000020.wal.lz4",
                     "wal/00000000_00000020_1.wal.lz4", "wal/00000000.wal.lz4", "wal/junk", "wal/zz/0000000000000000.wal.lz4"] {
            try r.touch(base + junk)
        }
        let segs = try r.client.walSegments(generation: r.g)
        #expect(segs.map { [UInt64($0.index), $0.offset] } == [[0, 0x20]])
    }

    @Test func writesLeaveNoTemporaryFiles() throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        _ = try r.client.writeSnapshot(generation: r.g, index: 0, body: body(Array(repeating: 7, count: 100_000), chunk: 4096))
        _ = try r.client.writeWALSegment(position: WALPosition(generation: r.g, index: 0, offset: 0), body: body([1, 2]))
        _ = try r.client.writeWALSegment(position: WALPosition(generation: r.g, index: 0, offset: 0), body: body([3]))
        #expect(r.files == ["generations/29cf4bced74e92ab/snapshots/0000000000000000.snapshot.lz4",
                            "generations/29cf4bced74e92ab/wal/0000000000000000/0000000000000000.wal.lz4"])
        // A body that fails leaves neither the object nor a temp file.
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            _ = try r.client.writeSnapshot(generation: r.g, index: 5) { sink in
                try [UInt8](repeating: 1, count: 10).withUnsafeBytes { try sink($0) }
                throw Boom()
            }
        }
        #expect(throws: Boom.self) {
            _ = try r.client.writeWALSegment(position: WALPosition(generation: r.g, index: 0, offset: 0x20)) { _ in throw Boom() }
        }
        #expect(r.files.count == 2)
        #expect(!r.files.contains { $0.hasSuffix(".tmp") })
    }

    @Test func fileModes() throws {
        let dir = try WALFixture.tempDir("replica")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let client = FileReplicaClient(root: dir + "/r", fileMode: 0o640, directoryMode: 0o750)
        let g = Generation(value: 1)
        _ = try client.writeSnapshot(generation: g, index: 0, body: body([1]))
        let old = umask(0)
        umask(old)
        let file = try #require(try FileSystem.info(dir + "/r/" + ReplicaPaths.snapshot(g, index: 0)))
        #expect(file.mode == 0o640 & ~old)
        let gdir = try #require(try FileSystem.info(dir + "/r/generations/0000000000000001"))
        #expect(gdir.mode == 0o750 & ~old)
    }

    @Test func layoutPaths() {
        let g = Generation(name: "29cf4bced74e92ab")!
        #expect(ReplicaPaths.snapshot(g, index: 1000) == "generations/29cf4bced74e92ab/snapshots/00000000000003e8.snapshot.lz4")
        #expect(ReplicaPaths.snapshot(g, index: 1000, layout: .v03) == "generations/29cf4bced74e92ab/snapshots/000003e8.snapshot.lz4")
        #expect(ReplicaPaths.walSegment(g, index: 1000, offset: 1001)
                == "generations/29cf4bced74e92ab/wal/00000000000003e8/00000000000003e9.wal.lz4")
        #expect(ReplicaPaths.walSegment(g, index: 0x1f, offset: 0x20, layout: .v03) == "generations/29cf4bced74e92ab/wal/0000001f_00000020.wal.lz4")
    }
}

@Suite("FileReplicaClient lenient names")
struct FileReplicaClientLenientTests {
    /// Whatever is listed must be readable (and deletable) through the client, so only the canonical 16-digit
    /// names are listed (upstream's lenient parsing listed objects it then could not open by name).
    @Test(arguments: ["wal/3/0000000000000020.wal.lz4", "wal/0000000000000003/20.wal.lz4"])
    func listedSegmentsAreOpenable(name: String) throws {
        let r = try ReplicaDir()
        defer { r.cleanup() }
        try r.touch("generations/29cf4bced74e92ab/" + name, [7])
        // Non-canonical names are not listed (they could not be opened or deleted by their canonical name).
        let segs = try r.client.walSegments(generation: r.g)
        #expect(segs.isEmpty)
        for s in segs {
            let bytes = try readAll(r.client.openWALSegment(s))
            #expect(bytes == [7])
        }
    }
}
