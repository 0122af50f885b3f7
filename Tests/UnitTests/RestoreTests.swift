import Foundation
import Logging
import Testing
@testable import ReplicationKit

// MARK: - Fixtures

/// Collects log messages so tests can check the restore's progress lines.
private final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ s: String) { lock.lock(); stored.append(s); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
}

private struct CollectingLogHandler: LogHandler {
    let sink: LogLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { sink.append(event.message.description) }
}

private func makeLogger() -> (Logger, LogLines) {
    let lines = LogLines()
    return (Logger(label: "restore-test") { _ in CollectingLogHandler(sink: lines) }, lines)
}

private func tempDir() throws -> String {
    let path = NSTemporaryDirectory() + "/restore-test-" + UUID().uuidString
    try FileSystem.makeDirectories(path)
    return path
}

private func readFile(_ path: String) throws -> [UInt8] { try FileSystem.readSmallFile(path) ?? [] }

private func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try FileSystem.makeDirectories((path as NSString).deletingLastPathComponent)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private typealias Rows = [[String?]]

/// One object of a hand-built replica, in creation order.
private enum ReplicaObject {
    case snapshot(index: UInt32, data: [UInt8])
    case segment(index: UInt32, offset: UInt64, data: [UInt8])
}

/// The history of a source database: the objects Litestream would have uploaded, and the rows after each step.
private struct History {
    var objects: [ReplicaObject] = []
    /// Rows after transaction k (k = 0: the empty table).
    var rowsAfterTx: [Rows] = []
    /// Rows once each WAL index is complete.
    var rowsAfterIndex: [UInt32: Rows] = [:]

    var segmentList: [(index: UInt32, offset: UInt64)] {
        objects.compactMap { if case let .segment(i, o, _) = $0 { return (i, o) } else { return nil } }
    }
}

/// Builds a WAL-mode database and records, per WAL index, one segment per transaction (split at frame boundaries).
private func makeHistory(in dir: String, txsPerIndex: [Int], snapshotsAt: Set<UInt32> = [0]) throws -> History {
    let path = dir + "/source.db"
    let db = try SQLiteConnection(path: path, create: true)
    defer { db.close() }
    try db.exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;")
    try db.setPersistentWAL()
    try db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
    _ = try db.checkpoint(.truncate)
    var h = History()
    var nextID = 1
    h.rowsAfterTx.append(try db.queryRows("SELECT id, v, hex(b) FROM t ORDER BY id"))
    for (i, count) in txsPerIndex.enumerated() {
        let index = UInt32(i)
        if snapshotsAt.contains(index) { h.objects.append(.snapshot(index: index, data: try readFile(path))) }
        var offset = 0
        for _ in 0..<count {
            try db.exec("BEGIN")
            for _ in 0..<4 {
                try db.exec("INSERT INTO t VALUES (\(nextID), 'row \(nextID) \(String(repeating: "x", count: 300))', randomblob(700))")
                nextID += 1
            }
            try db.exec("COMMIT")
            let wal = try readFile(path + "-wal")
            h.objects.append(.segment(index: index, offset: UInt64(offset), data: Array(wal[offset...])))
            offset = wal.count
            h.rowsAfterTx.append(try db.queryRows("SELECT id, v, hex(b) FROM t ORDER BY id"))
        }
        h.rowsAfterIndex[index] = h.rowsAfterTx.last!
        let r = try db.checkpoint(.truncate)
        #expect(!r.busy)
    }
    return h
}

private let baseTime = Date(timeIntervalSince1970: 1_700_000_000)

/// Writes the history as a file replica; object k gets mtime base + 10·k seconds.
private func writeReplica(_ h: History, root: String, generation g: Generation, layout: ReplicaLayout = .v04) throws {
    for (k, object) in h.objects.enumerated() {
        let rel: String, data: [UInt8]
        switch object {
        case let .snapshot(i, d): rel = ReplicaPaths.snapshot(g, index: i, layout: layout); data = d
        case let .segment(i, o, d): rel = ReplicaPaths.walSegment(g, index: i, offset: o, layout: layout); data = d
        }
        let path = root + "/" + rel
        try writeFile(path, try LZ4.compress(data))
        try FileSystem.setModified(path, to: baseTime.addingTimeInterval(Double(10 * k)))
    }
}

private func restoredRows(_ path: String) throws -> Rows {
    let db = try SQLiteConnection(path: path, readOnly: true)
    defer { db.close() }
    #expect(try db.queryText("PRAGMA integrity_check") == "ok")
    return try db.queryRows("SELECT id, v, hex(b) FROM t ORDER BY id")
}

/// Names in the output directory that belong to the output (`out.db`, `out.db.tmp…`, `out.db-wal`, …).
private func outputFiles(_ out: String) throws -> [String] {
    let base = (out as NSString).lastPathComponent
    return try FileSystem.list((out as NSString).deletingLastPathComponent).filter { $0.hasPrefix(base) }.sorted()
}

/// A standard three-index replica: index 0 has 3 segments, index 1 has 2, index 2 has 1; one snapshot at index 0.
private func standardReplica(layout: ReplicaLayout = .v04) throws -> (dir: String, client: FileReplicaClient, gen: Generation, history: History) {
    let dir = try tempDir()
    let h = try makeHistory(in: dir, txsPerIndex: [3, 2, 1])
    let g = Generation(value: 0x29cf_4bce_d74e_92ab)
    try writeReplica(h, root: dir + "/replica", generation: g, layout: layout)
    return (dir, FileReplicaClient(root: dir + "/replica"), g, h)
}

private func expectRestoreError(_ client: FileReplicaClient, _ options: RestoreOptions, contains text: String,
                                sourceLocation: SourceLocation = #_sourceLocation) throws {
    let (logger, _) = makeLogger()
    do {
        try Restorer.restore(client: client, options: options, logger: logger)
        Issue.record("restore succeeded; expected an error containing \(text)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.oneLine.contains(text), "\(error.oneLine)", sourceLocation: sourceLocation)
    }
}

// MARK: - End-to-end restores

@Suite("Restore")
struct RestoreTests {
    /// Two generations whose objects carry the same timestamp (S3 dates objects to the second): the restore
    /// cannot order them, takes the first, and says so, naming both and how to choose.
    @Test func generationsTiedOnTimestampAreNamedInAWarning() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let other = Generation(value: 0x1111_2222_3333_4444)
        try writeReplica(r.history, root: r.dir + "/replica", generation: other)
        let same = Date(timeIntervalSince1970: 1_800_000_000)
        func touch(_ dir: String) throws {
            for name in try FileSystem.list(dir) {
                let p = dir + "/" + name
                if try FileSystem.info(p)?.isDirectory == true { try touch(p) } else { try FileSystem.setModified(p, to: same) }
            }
        }
        try touch(r.dir + "/replica")
        let (logger, lines) = makeLogger()
        let out = r.dir + "/tied.db"
        try Restorer.restore(client: r.client, options: RestoreOptions(outputPath: out), logger: logger)
        let warning = lines.lines.first { $0.contains("which the store's timestamps cannot order") }
        #expect(warning?.contains(r.gen.name) == true && warning?.contains(other.name) == true, "\(lines.lines)")
        #expect(warning?.contains("use -generation to choose") == true)
        #expect(FileSystem.exists(out))
    }

    @Test(arguments: [1, 2, 8])
    func restoresWholeReplica(parallelism: Int) throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let out = r.dir + "/restored/sub/out.db"
        let (logger, log) = makeLogger()
        let plan = try Restorer.restore(client: r.client, options: RestoreOptions(outputPath: out, parallelism: parallelism),
                                        logger: logger)
        #expect(plan.generation == r.gen && plan.snapshot.index == 0 && plan.targetIndex == 2)
        #expect(plan.walIndexes.map { $0.segments.count } == [3, 2, 1])
        #expect(try outputFiles(out) == ["out.db"])
        #expect(try restoredRows(out) == r.history.rowsAfterIndex[2])
        #expect(try FileSystem.info(r.dir + "/restored/sub")?.mode == 0o700)
        let lines = log.lines
        #expect(lines.first == "restoring snapshot \(r.gen.name)/0000000000000000 to \(out).tmp")
        #expect(lines.filter { $0.hasPrefix("applied wal \(r.gen.name)/000000000000000") }.count == 3)
        #expect(lines.last == "renaming database from temporary location")
    }

    @Test func restoresManyIndexesInOrder() throws {
        let dir = try tempDir()
        defer { try? FileSystem.removeTree(dir) }
        let h = try makeHistory(in: dir, txsPerIndex: Array(repeating: 1, count: 12))
        let g = Generation(value: 7)
        try writeReplica(h, root: dir + "/replica", generation: g)
        for p in [0, 3] {
            let out = dir + "/out\(p).db"
            let (logger, log) = makeLogger()
            try Restorer.restore(client: FileReplicaClient(root: dir + "/replica"),
                                 options: RestoreOptions(outputPath: out, parallelism: p), logger: logger)
            #expect(try restoredRows(out) == h.rowsAfterIndex[11])
            let applied = log.lines.filter { $0.hasPrefix("applied wal") }.map { String($0.split(separator: " ")[2]) }
            #expect(applied == (0..<12).map { "\(g.name)/\(Hex.format($0, width: 16))" })
        }
    }

    @Test func restoresV03Layout() throws {
        let r = try standardReplica(layout: .v03)
        defer { try? FileSystem.removeTree(r.dir) }
        let out = r.dir + "/out.db"
        let (logger, _) = makeLogger()
        let plan = try Restorer.restore(client: r.client, options: RestoreOptions(outputPath: out), logger: logger)
        #expect(plan.snapshot.layout == .v03 && plan.walIndexes.allSatisfy { $0.segments.allSatisfy { $0.layout == .v03 } })
        #expect(try restoredRows(out) == r.history.rowsAfterIndex[2])
    }

    @Test func indexBoundStopsAtEndOfIndex() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let (logger, _) = makeLogger()
        for (index, expected) in [(UInt32(0), r.history.rowsAfterIndex[0]), (1, r.history.rowsAfterIndex[1])] {
            let out = r.dir + "/out\(index).db"
            let opts = RestoreOptions(outputPath: out, generation: r.gen, index: index)
            let plan = try Restorer.restore(client: r.client, options: opts, logger: logger)
            #expect(plan.targetIndex == index)
            #expect(try restoredRows(out) == expected)
        }
    }

    @Test func snapshotOnlyRestore() throws {
        let dir = try tempDir()
        defer { try? FileSystem.removeTree(dir) }
        let h = try makeHistory(in: dir, txsPerIndex: [2, 1], snapshotsAt: [0, 1])
        let g = Generation(value: 9)
        // Keep only the snapshots: the newest one (index 1) has no WAL, so the restore is snapshot only.
        let objects = h.objects.filter { if case .snapshot = $0 { return true } else { return false } }
        try writeReplica(History(objects: objects), root: dir + "/replica", generation: g)
        let out = dir + "/out.db"
        let (logger, log) = makeLogger()
        let plan = try Restorer.restore(client: FileReplicaClient(root: dir + "/replica"),
                                        options: RestoreOptions(outputPath: out), logger: logger)
        #expect(plan.isSnapshotOnly && plan.snapshot.index == 1)
        #expect(log.lines.contains("no wal files found, snapshot only"))
        #expect(try outputFiles(out) == ["out.db"])
        #expect(try restoredRows(out) == h.rowsAfterIndex[0])
    }

    @Test func pointInTimeRestore() throws {
        let dir = try tempDir()
        defer { try? FileSystem.removeTree(dir) }
        // Objects (mtime = base + 10·k): 0 snap0, 1 seg(0,tx1), 2 seg(0,tx2), 3 snap1, 4 seg(1,tx3), 5 seg(1,tx4), 6 seg(2,tx5).
        let h = try makeHistory(in: dir, txsPerIndex: [2, 2, 1], snapshotsAt: [0, 1])
        let g = Generation(value: 0xabc)
        try writeReplica(h, root: dir + "/replica", generation: g)
        let client = FileReplicaClient(root: dir + "/replica")
        let cases: [(Double, UInt32, Int, Int)] = [  // (seconds after base, snapshot index, target index, tx count)
            (45, 1, 1, 3), (25, 0, 0, 2), (5, 0, 0, 0), (60, 1, 2, 5), (0, 0, 0, 0),
        ]
        for (k, c) in cases.enumerated() {
            let out = dir + "/pit\(k).db"
            let (logger, _) = makeLogger()
            let opts = RestoreOptions(outputPath: out, timestamp: baseTime.addingTimeInterval(c.0))
            let plan = try Restorer.restore(client: client, options: opts, logger: logger)
            #expect(plan.snapshot.index == c.1 && plan.targetIndex == c.2, "timestamp +\(c.0)")
            #expect(try restoredRows(out) == h.rowsAfterTx[c.3], "timestamp +\(c.0)")
        }
        try expectRestoreError(client, RestoreOptions(outputPath: dir + "/late.db", timestamp: baseTime.addingTimeInterval(1000)),
                               contains: "no matching backups found")
        try expectRestoreError(client, RestoreOptions(outputPath: dir + "/both.db", generation: g, index: 1,
                                                      timestamp: baseTime), contains: "cannot specify index & timestamp to restore")
        #expect(try outputFiles(dir + "/late.db").isEmpty && outputFiles(dir + "/both.db").isEmpty)
    }

    @Test func choosesLatestReplica() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let empty = FileReplicaClient(root: r.dir + "/empty")
        // A second, older replica: only index 0.
        let older = History(objects: Array(r.history.objects.prefix(4)))
        try writeReplica(older, root: r.dir + "/older", generation: Generation(value: 1))
        try FileSystem.setModified(r.dir + "/replica/" + ReplicaPaths.walSegment(r.gen, index: 2, offset: 0),
                                   to: baseTime.addingTimeInterval(10_000))
        let replicas: [(name: String, client: any ReplicaClient)] = [
            ("empty", empty), ("older", FileReplicaClient(root: r.dir + "/older")), ("main", r.client),
        ]
        let (logger, _) = makeLogger()
        let choice = try Restorer.restore(replicas: replicas, options: RestoreOptions(outputPath: r.dir + "/o.db"), logger: logger)
        #expect(choice.name == "main" && choice.plan.generation == r.gen)
        #expect(try restoredRows(r.dir + "/o.db") == r.history.rowsAfterIndex[2])
        #expect(throws: (any Error).self) { try Restorer.plan(replicas: [("empty", empty)], options: RestoreOptions(outputPath: "x")) }
    }

    // MARK: Errors

    @Test func missingMiddleIndex() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        try FileSystem.removeTree(r.dir + "/replica/generations/\(r.gen.name)/wal/0000000000000001")
        let out = r.dir + "/out.db"
        try expectRestoreError(r.client, RestoreOptions(outputPath: out),
                               contains: "cannot download WAL: wal not found: generation=\(r.gen.name) index=0000000000000001")
        #expect(try outputFiles(out).isEmpty)
    }

    @Test func missingOffsetInsideIndex() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let middle = r.history.segmentList.filter { $0.index == 0 }[1]
        try FileSystem.remove(r.dir + "/replica/" + ReplicaPaths.walSegment(r.gen, index: 0, offset: middle.offset))
        let out = r.dir + "/out.db"
        try expectRestoreError(r.client, RestoreOptions(outputPath: out, parallelism: 2),
                               contains: "cannot download WAL: missing WAL offset: generation=\(r.gen.name) " +
                                   "index=0000000000000000 offset=\(Hex.format(middle.offset, width: 16))")
        #expect(try outputFiles(out).isEmpty)
    }

    @Test func truncatedObjectIsNamed() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let name = ReplicaPaths.walSegment(r.gen, index: 1, offset: 0)
        let bytes = try readFile(r.dir + "/replica/" + name)
        try writeFile(r.dir + "/replica/" + name, Array(bytes.prefix(bytes.count / 2)))
        let out = r.dir + "/out.db"
        try expectRestoreError(r.client, RestoreOptions(outputPath: out), contains: "cannot download WAL: \(name): ")
        #expect(try outputFiles(out).isEmpty)

        let snap = ReplicaPaths.snapshot(r.gen, index: 0)
        try writeFile(r.dir + "/replica/" + snap, Array(try readFile(r.dir + "/replica/" + snap).dropLast(9)))
        try expectRestoreError(r.client, RestoreOptions(outputPath: out), contains: "cannot restore snapshot: \(snap): ")
        #expect(try outputFiles(out).isEmpty)
    }

    @Test func corruptFrameChecksumIsAnError() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let name = ReplicaPaths.walSegment(r.gen, index: 1, offset: 0)
        var wal = try LZ4.decompress(try readFile(r.dir + "/replica/" + name))
        wal[32 + 24 + 100] ^= 0xff  // a byte of frame 1's page
        try writeFile(r.dir + "/replica/" + name, try LZ4.compress(wal))
        let out = r.dir + "/out.db"
        try expectRestoreError(r.client, RestoreOptions(outputPath: out),
                               contains: "cannot apply wal: generations/\(r.gen.name)/wal/0000000000000001: frame 1 checksum mismatch")
        #expect(try outputFiles(out).isEmpty)
    }

    /// A replica object made of copied blocks has no content checksum, and a byte changed in a stored block
    /// decodes without complaint from LZ4: the WAL frames' own checksum chain still catches it.
    @Test func aCorruptObjectWithoutContentChecksumIsCaughtByTheWALChecksums() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let name = ReplicaPaths.walSegment(r.gen, index: 1, offset: 0)
        let wal = try LZ4.decompress(try readFile(r.dir + "/replica/" + name))
        var object: [UInt8] = []
        let encoder = try LZ4FrameEncoder(contentChecksum: false) { object.append(contentsOf: $0) }
        try wal.withUnsafeBytes { try encoder.appendBlock(sizeWord: UInt32(wal.count) | 0x8000_0000, data: $0) }
        try encoder.finish()
        #expect(Array(object.prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73])
        try writeFile(r.dir + "/replica/" + name, object)
        let out = r.dir + "/out.db"
        // Intact, it restores.
        let (logger, _) = makeLogger()
        try Restorer.restore(client: r.client, options: RestoreOptions(outputPath: out), logger: logger)
        try FileSystem.remove(out)
        object[7 + 4 + 32 + 24 + 100] ^= 0xff  // a byte of frame 1's page, inside the stored block
        try writeFile(r.dir + "/replica/" + name, object)
        #expect(try LZ4.decompress(object).count == wal.count)
        try expectRestoreError(r.client, RestoreOptions(outputPath: out),
                               contains: "cannot apply wal: generations/\(r.gen.name)/wal/0000000000000001: frame 1 checksum mismatch")
        #expect(try outputFiles(out).isEmpty)
    }

    @Test func existingOutputIsUntouched() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let out = r.dir + "/out.db"
        try writeFile(out, Array("keep me".utf8))
        try expectRestoreError(r.client, RestoreOptions(outputPath: out), contains: "output file already exists: \(out)")
        #expect(try readFile(out) == Array("keep me".utf8))
        #expect(try outputFiles(out) == ["out.db"])
        // The final rename never replaces, even when the output appears after the early check.
        try writeFile(r.dir + "/a.tmp", [1])
        #expect(throws: (any Error).self) { try RestoreFiles.renameNoReplace(r.dir + "/a.tmp", to: out) }
        #expect(try readFile(out) == Array("keep me".utf8))
    }

    @Test func staleLeftoversAreRemoved() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let out = r.dir + "/out.db"
        for suffix in [".tmp", ".tmp-wal", ".tmp-shm", ".tmp-0000000000000003-wal", "-wal"] {
            try writeFile(out + suffix, Array("stale".utf8))
        }
        let (logger, _) = makeLogger()
        try Restorer.restore(client: r.client, options: RestoreOptions(outputPath: out), logger: logger)
        #expect(try outputFiles(out) == ["out.db"])
        #expect(try restoredRows(out) == r.history.rowsAfterIndex[2])
    }

    @Test func corruptSnapshotFailsQuickCheck() throws {
        let dir = try tempDir()
        defer { try? FileSystem.removeTree(dir) }
        let h = try makeHistory(in: dir, txsPerIndex: [2, 0], snapshotsAt: [0, 1])
        guard case var .snapshot(_, data) = h.objects.last! else { Issue.record("no snapshot"); return }
        data[4096] = 0  // page 2 (table t's root) gets an invalid page type
        let g = Generation(value: 5)
        try writeReplica(History(objects: [.snapshot(index: 1, data: data)]), root: dir + "/replica", generation: g)
        let out = dir + "/out.db"
        try expectRestoreError(FileReplicaClient(root: dir + "/replica"), RestoreOptions(outputPath: out),
                               contains: "restored database failed verification: \(out)")
        #expect(try outputFiles(out).isEmpty)
    }

    /// Wraps a client and records, whenever a segment is opened, how many assembled WAL files exist.
    private final class CountingClient: ReplicaClient, @unchecked Sendable {
        let inner: FileReplicaClient
        let outDir: String
        private let lock = NSLock()
        private(set) var maxFiles = 0
        init(_ inner: FileReplicaClient, outDir: String) { self.inner = inner; self.outDir = outDir }
        var type: String { "file" }
        var location: String { inner.location }
        func generations() throws -> [Generation] { try inner.generations() }
        func snapshots(generation: Generation) throws -> [SnapshotInfo] { try inner.snapshots(generation: generation) }
        func walSegments(generation: Generation) throws -> [WALSegmentInfo] { try inner.walSegments(generation: generation) }
        func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
            try inner.writeSnapshot(generation: generation, index: index, body: body)
        }
        func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
            try inner.writeWALSegment(position: position, body: body)
        }
        func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource { try inner.openSnapshot(snapshot) }
        func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource {
            let n = try FileSystem.list(outDir).filter { $0.hasSuffix("-wal") }.count
            lock.lock(); maxFiles = max(maxFiles, n); lock.unlock()
            Thread.sleep(forTimeInterval: 0.002)
            return try inner.openWALSegment(segment)
        }
        func deleteGeneration(_ generation: Generation) throws { try inner.deleteGeneration(generation) }
        func deleteSnapshot(_ snapshot: SnapshotInfo) throws { try inner.deleteSnapshot(snapshot) }
        func deleteWALSegments(_ segments: [WALSegmentInfo]) throws { try inner.deleteWALSegments(segments) }
        func objectName(snapshot: SnapshotInfo) -> String { inner.objectName(snapshot: snapshot) }
        func objectName(segment: WALSegmentInfo) -> String { inner.objectName(segment: segment) }
    }

    @Test func downloaderBoundsUnconsumedFilesAndDeliversInOrder() throws {
        let dir = try tempDir()
        defer { try? FileSystem.removeTree(dir) }
        let h = try makeHistory(in: dir, txsPerIndex: Array(repeating: 2, count: 10))
        let g = Generation(value: 11)
        try writeReplica(h, root: dir + "/replica", generation: g)
        let outDir = dir + "/out"
        try FileSystem.makeDirectories(outDir)
        let client = CountingClient(FileReplicaClient(root: dir + "/replica"), outDir: outDir)
        let plan = try RestorePlanner.plan(GenerationListing(generation: g, snapshots: try client.snapshots(generation: g),
                                                             segments: try client.walSegments(generation: g)))
        let d = WALDownloader(client: client, generation: g, indexes: plan.walIndexes, prefix: outDir + "/x.tmp", parallelism: 3)
        d.start()
        var seen: [UInt32] = []
        while let item = try d.next() {
            seen.append(item.index)
            try FileSystem.remove(item.path)  // (the restorer renames it away before applying)
            Thread.sleep(forTimeInterval: 0.005)  // a slow consumer
        }
        d.close()
        #expect(seen == Array(0..<10))
        // 3 downloading or waiting, plus the one just handed out that the consumer has not removed yet.
        #expect(client.maxFiles <= 3 + 1)
        #expect(try FileSystem.list(outDir).isEmpty)

        // After a failure in the middle, close() joins the workers and removes what was not handed out.
        try FileSystem.remove(dir + "/replica/" + ReplicaPaths.walSegment(g, index: 4, offset: 0))
        let plan2 = try RestorePlanner.plan(GenerationListing(generation: g, snapshots: try client.snapshots(generation: g),
                                                              segments: try client.walSegments(generation: g)), index: 3)
        var indexes = plan2.walIndexes
        indexes.append(contentsOf: plan.walIndexes[4...])
        let d2 = WALDownloader(client: client, generation: g, indexes: indexes, prefix: outDir + "/y.tmp", parallelism: 4)
        d2.start()
        var delivered: [UInt32] = []
        do {
            while let item = try d2.next() { delivered.append(item.index); try FileSystem.remove(item.path) }
            Issue.record("expected a download error")
        } catch {
            #expect(error.oneLine.contains(ReplicaPaths.walSegment(g, index: 4, offset: 0)))
        }
        d2.close()
        #expect(delivered == [0, 1, 2, 3])
        #expect(try FileSystem.list(outDir).isEmpty)
    }

    /// A downloader released late (its deinit can run on an exiting worker thread, after the restore moved on to
    /// the next candidate) must not remove the files a new attempt writes under the same names.
    @Test func aClosedDownloaderNeverRemovesFilesAgain() throws {
        let dir = try tempDir()
        defer { try? FileSystem.removeTree(dir) }
        let h = try makeHistory(in: dir, txsPerIndex: [2, 2, 2])
        let g = Generation(value: 12)
        try writeReplica(h, root: dir + "/replica", generation: g)
        let client = FileReplicaClient(root: dir + "/replica")
        let plan = try RestorePlanner.plan(GenerationListing(generation: g, snapshots: try client.snapshots(generation: g),
                                                             segments: try client.walSegments(generation: g)))
        var first: WALDownloader? = WALDownloader(client: client, generation: g, indexes: plan.walIndexes,
                                                  prefix: dir + "/o.tmp", parallelism: 2)
        first!.start()
        first!.close()
        let paths = first!.jobs.map(\.path)
        // The next attempt's files, under the same names.
        for p in paths { try writeFile(p, [1, 2, 3]) }
        first = nil
        for p in paths { #expect(FileSystem.exists(p), "\(p) was removed by a downloader already closed") }
    }

    @Test func noSnapshots() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        try FileSystem.removeTree(r.dir + "/replica/generations/\(r.gen.name)/snapshots")
        let out = r.dir + "/out.db"
        try expectRestoreError(r.client, RestoreOptions(outputPath: out), contains: "no matching backups found")
        try expectRestoreError(r.client, RestoreOptions(outputPath: out, generation: r.gen),
                               contains: "no snapshots available")
        do {
            _ = try Restorer.plan(client: r.client, options: RestoreOptions(outputPath: out))
        } catch {
            #expect(RestorePlanner.isNoMatchingBackups(error))
        }
        #expect(try outputFiles(out).isEmpty)
    }
}

// MARK: - Planner unit tests (no I/O)

@Suite("RestorePlanner")
struct RestorePlannerTests {
    let g1 = Generation(value: 1), g2 = Generation(value: 2), g3 = Generation(value: 3)
    func t(_ s: Double) -> Date { baseTime.addingTimeInterval(s) }
    func snap(_ g: Generation, _ i: UInt32, _ s: Double) -> SnapshotInfo {
        SnapshotInfo(generation: g, index: i, size: 1, createdAt: t(s))
    }

    /// A clock set back during replication gives later segments earlier times: a point-in-time plan still takes a
    /// prefix of the WAL in order (never a later segment without the earlier ones).
    @Test func pointInTimeWithAClockSetBackTakesAPrefix() throws {
        let listing = GenerationListing(generation: g1, snapshots: [snap(g1, 0, 100)], segments: [
            WALSegmentInfo(generation: g1, index: 0, offset: 0, size: 1, createdAt: t(101)),
            WALSegmentInfo(generation: g1, index: 0, offset: 4152, size: 1, createdAt: t(103)),
            // The clock went back an hour here.
            WALSegmentInfo(generation: g1, index: 1, offset: 0, size: 1, createdAt: t(-3500)),
            WALSegmentInfo(generation: g1, index: 1, offset: 4152, size: 1, createdAt: t(-3499)),
        ])
        let plan = try RestorePlanner.plan(listing, timestamp: t(102))
        #expect(plan.targetIndex == 0)
        #expect(plan.walIndexes.flatMap(\.segments).map(\.offset) == [0])
        // At 103 every segment qualifies by its recorded time: all of them, still in order (a prefix).
        let all = try RestorePlanner.plan(listing, timestamp: t(103))
        #expect(all.walIndexes.flatMap(\.segments).map { "\($0.index)/\($0.offset)" } == ["0/0", "0/4152", "1/0", "1/4152"])
    }
    func seg(_ g: Generation, _ i: UInt32, _ o: UInt64, _ s: Double) -> WALSegmentInfo {
        WALSegmentInfo(generation: g, index: i, offset: o, size: 1, createdAt: t(s))
    }

    @Test func timeBounds() throws {
        let l = GenerationListing(generation: g1, snapshots: [snap(g1, 2, 50), snap(g1, 0, 10)],
                                  segments: [seg(g1, 0, 0, 5), seg(g1, 3, 0, 90)])
        #expect(try RestorePlanner.bounds(of: l) == GenerationBounds(start: t(10), end: t(90)))
        #expect(RestorePlanner.updatedAt(of: l) == t(90))
        #expect(throws: (any Error).self) {
            try RestorePlanner.bounds(of: GenerationListing(generation: g1, snapshots: [], segments: [seg(g1, 0, 0, 1)]))
        }
    }

    @Test func latestGenerationSkipsGenerationsWithoutSnapshots() {
        let a = GenerationListing(generation: g1, snapshots: [snap(g1, 0, 10)], segments: [seg(g1, 0, 0, 40)])
        let b = GenerationListing(generation: g2, snapshots: [], segments: [seg(g2, 0, 0, 100)])
        let c = GenerationListing(generation: g3, snapshots: [snap(g3, 0, 40)], segments: [])
        #expect(RestorePlanner.latestGeneration([a, b, c])?.generation == g1)  // tie: first wins
        #expect(RestorePlanner.latestGeneration([b]) == nil)
        #expect(RestorePlanner.latestGeneration([a, c], containing: t(5)) == nil)
        #expect(RestorePlanner.latestGeneration([a, c], containing: t(20))?.generation == g1)
        #expect(RestorePlanner.replicaUpdatedAt([a, b, c]) == t(40))
    }

    @Test func latestReplicaSkipsEmptyReplicas() {
        let a = GenerationListing(generation: g1, snapshots: [snap(g1, 0, 10)], segments: [])
        let b = GenerationListing(generation: g2, snapshots: [snap(g2, 0, 30)], segments: [])
        let noSnap = GenerationListing(generation: g3, snapshots: [], segments: [seg(g3, 0, 0, 99)])
        #expect(RestorePlanner.latestReplica([[], [a], [noSnap], [b, a]]) == 3)
        #expect(RestorePlanner.latestReplica([[], [noSnap]]) == nil)
        #expect(RestorePlanner.latestReplica([[a], [b]], containing: t(10)) == 0)
    }

    @Test func indexPlanning() throws {
        let l = GenerationListing(generation: g1, snapshots: [snap(g1, 0, 0), snap(g1, 2, 0)],
                                  segments: [seg(g1, 0, 0, 1), seg(g1, 1, 0, 1), seg(g1, 2, 4152, 1), seg(g1, 2, 0, 1),
                                             seg(g1, 3, 0, 1)])
        #expect(try RestorePlanner.targetIndex(of: l) == 3)
        let p = try RestorePlanner.plan(l)
        #expect(p.snapshot.index == 2 && p.targetIndex == 3)
        #expect(p.walIndexes.map(\.index) == [2, 3] && p.walIndexes[0].segments.map(\.offset) == [0, 4152])
        #expect(try RestorePlanner.plan(l, index: 1).walIndexes.map(\.index) == [0, 1])
        let noEarly = GenerationListing(generation: g1, snapshots: [snap(g1, 5, 0)], segments: [])
        #expect(throws: (any Error).self) { try RestorePlanner.plan(noEarly, index: 4) }
        do { _ = try RestorePlanner.plan(noEarly, index: 4) } catch {
            #expect(error.oneLine == "cannot find snapshot index: no snapshots available at or before index 0000000000000004")
        }
        do { _ = try RestorePlanner.plan(l, index: 7) } catch {
            #expect(error.oneLine == "cannot download WAL: wal not found: generation=\(g1.name) index=0000000000000004")
        }
        #expect(try RestorePlanner.plan(noEarly).isSnapshotOnly)
    }
}

/// A damaged or unreadable replica does not stop a restore that another replica or an older generation can do.
@Suite("Restore fall-back")
struct RestoreFallbackTests {
    /// Damages the snapshot object of `g` under `root` (its LZ4 frame no longer decodes), keeping its mtime.
    private func damageSnapshot(root: String, g: Generation) throws {
        let path = root + "/" + ReplicaPaths.snapshot(g, index: 0)
        let info = try #require(try FileSystem.info(path))
        var bytes = try #require(FileManager.default.contents(atPath: path)).map { $0 }
        for i in stride(from: 12, to: bytes.count, by: 7) { bytes[i] ^= 0x5a }
        try writeFile(path, bytes)
        try FileSystem.setModified(path, to: info.modified)
    }

    @Test func aCorruptNewestReplicaFallsBackToTheHealthyOneAndSaysWhy() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        // The same objects on a second replica, then the first (configured first, so chosen first) damaged.
        try writeReplica(r.history, root: r.dir + "/copy", generation: r.gen)
        try damageSnapshot(root: r.dir + "/replica", g: r.gen)
        let replicas: [(name: String, client: any ReplicaClient)] = [("bad", r.client), ("good", FileReplicaClient(root: r.dir + "/copy"))]
        let (logger, log) = makeLogger()
        let out = r.dir + "/o.db"
        let choice = try Restorer.restore(replicas: replicas, options: RestoreOptions(outputPath: out), logger: logger)
        #expect(choice.name == "good")
        #expect(try restoredRows(out) == r.history.rowsAfterIndex[2])
        let lines = log.lines.joined(separator: "\n")
        #expect(lines.contains("restore: cannot restore from replica \"bad\" (\(r.client.location)) generation \(r.gen.name): cannot restore snapshot: \(ReplicaPaths.snapshot(r.gen, index: 0))"), "\(lines)")
        #expect(lines.contains("trying the next candidate"), "\(lines)")

        // -replica forces one: the damaged one alone fails, naming the object, and leaves nothing behind.
        try expectRestoreError(r.client, RestoreOptions(outputPath: r.dir + "/forced.db"),
                               contains: "cannot restore snapshot: \(ReplicaPaths.snapshot(r.gen, index: 0))")
        #expect(try outputFiles(r.dir + "/forced.db").isEmpty)
    }

    @Test func anUnreadableNewestGenerationFallsBackToTheOlderOne() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        // An older generation holding index 0 only, then the newest generation's snapshot damaged.
        let older = Generation(value: 1)
        try writeReplica(History(objects: Array(r.history.objects.prefix(4))), root: r.dir + "/replica", generation: older)
        for name in try FileSystem.list(r.dir + "/replica/generations/\(older.name)/wal/0000000000000000") {
            try FileSystem.setModified(r.dir + "/replica/generations/\(older.name)/wal/0000000000000000/" + name,
                                       to: baseTime.addingTimeInterval(-100))
        }
        try FileSystem.setModified(r.dir + "/replica/" + ReplicaPaths.snapshot(older, index: 0), to: baseTime.addingTimeInterval(-200))
        try damageSnapshot(root: r.dir + "/replica", g: r.gen)
        let (logger, log) = makeLogger()
        let out = r.dir + "/o.db"
        let plan = try Restorer.restore(client: r.client, options: RestoreOptions(outputPath: out), logger: logger)
        #expect(plan.generation == older)
        #expect(try restoredRows(out) == r.history.rowsAfterIndex[0])
        #expect(log.lines.contains { $0.contains("restored from replica \"file\"") && $0.contains("generation \(older.name) after skipping") })
        // A pinned generation never falls back to another one.
        try expectRestoreError(r.client, RestoreOptions(outputPath: r.dir + "/pinned.db", generation: r.gen),
                               contains: "cannot restore snapshot")
    }

    @Test func anUnlistableReplicaIsSkipped() throws {
        let r = try standardReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        // A store nobody answers for (connection refused on loopback port 1): listing it fails.
        var o = CurlHTTPOptions()
        o.maxAttempts = 1
        let broken = S3ReplicaClient(location: S3Location(bucket: "gone", prefix: "db", endpoint: "http://127.0.0.1:1"),
                                     credentials: AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s"), httpOptions: o)
        let (logger, log) = makeLogger()
        let choice = try Restorer.restore(replicas: [("broken", broken), ("main", r.client)],
                                          options: RestoreOptions(outputPath: r.dir + "/o.db"), logger: logger)
        #expect(choice.name == "main")
        #expect(log.lines.contains { $0.contains("restore: skipping replica \"broken\"") && $0.contains("cannot list") }, "\(log.lines)")
    }

    @Test func candidateOrder() {
        let g1 = Generation(value: 1), g2 = Generation(value: 2)
        func listing(_ g: Generation, _ t: Double) -> GenerationListing {
            GenerationListing(generation: g, snapshots: [SnapshotInfo(generation: g, index: 0, size: 1, createdAt: baseTime.addingTimeInterval(t))],
                              segments: [])
        }
        let a = [listing(g1, 10), listing(g2, 50)], b = [listing(g2, 50)], c = [listing(g1, 30)]
        let order = RestorePlanner.candidates([a, b, c]).map { "\($0.replica):\($0.listing.generation.value)" }
        // Latest generations newest first (ties in configuration order), then the older generations.
        #expect(order == ["0:2", "1:2", "2:1", "0:1"])
    }
}

// MARK: - Parallel snapshot decode, progress

/// A snapshot-only replica of a database of text rows large enough for many LZ4 blocks (about 1.5 MB).
private func largeSnapshotReplica() throws -> (dir: String, client: FileReplicaClient, gen: Generation, rows: Rows) {
    let dir = try tempDir()
    let path = dir + "/source.db"
    let db = try SQLiteConnection(path: path, create: true)
    try db.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
    try db.exec("BEGIN")
    for i in 1...3000 {
        try db.exec("INSERT INTO t VALUES (\(i), 'row \(i) ' || hex(randomblob(150 + \(i % 97))), zeroblob(100))")
    }
    try db.exec("COMMIT")
    _ = try db.checkpoint(.truncate)
    let rows = try db.queryRows("SELECT id, v, hex(b) FROM t ORDER BY id")
    db.close()
    let g = Generation(value: 0x1234)
    try writeReplica(History(objects: [.snapshot(index: 0, data: try readFile(path))]), root: dir + "/replica", generation: g)
    return (dir, FileReplicaClient(root: dir + "/replica"), g, rows)
}

extension RestoreTests {
    @Test func multiBlockSnapshotRestoresAndLogsProgress() throws {
        let r = try largeSnapshotReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let out = r.dir + "/out.db"
        let (logger, log) = makeLogger()
        // Interval zero: every update is reported (the CLI reports every 5 s, or on one line on a terminal).
        try Restorer.restore(client: r.client, options: RestoreOptions(outputPath: out, progress: .log(interval: .zero)),
                             logger: logger)
        #expect(try restoredRows(out) == r.rows)
        let progress = log.lines.filter { $0.hasPrefix("restore progress: restoring out.db: ") }
        #expect(!progress.isEmpty, "\(log.lines)")
        #expect(progress.last?.contains(" MB written, ") == true && progress.last?.contains(" MB downloaded (100%), ") == true,
                "\(progress)")
    }

    @Test func aCorruptBlockInTheMiddleOfASnapshotNamesTheObject() throws {
        let r = try largeSnapshotReplica()
        defer { try? FileSystem.removeTree(r.dir) }
        let name = ReplicaPaths.snapshot(r.gen, index: 0)
        var bytes = try readFile(r.dir + "/replica/" + name)
        #expect(bytes.count > 200_000)
        for i in (bytes.count / 2)..<(bytes.count / 2 + 3000) { bytes[i] = 0xFF }
        try writeFile(r.dir + "/replica/" + name, bytes)
        let out = r.dir + "/out.db"
        try expectRestoreError(r.client, RestoreOptions(outputPath: out, progress: .off),
                               contains: "cannot restore snapshot: \(name): corrupt lz4 frame")
        #expect(try outputFiles(out).isEmpty)
    }
}
