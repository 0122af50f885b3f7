import Foundation
import Testing
@testable import ReplicationKit

/// The shadow log, the one-way seam between a database and its consumers: what consumers read, and how the one
/// report they make (the position they hold) decides which segment bytes stay in memory and which indexes stay
/// on disk. Real segment files in a temporary directory.
@Suite struct ShadowLogTests {
    final class Consumer: ShadowObserver, @unchecked Sendable {
        let wakes = Locked(0)
        func shadowDidChange() { wakes.withLock { $0 += 1 } }
    }

    final class Fixture {
        let dir: String
        let shadow: ShadowWAL
        let log: ShadowLog
        let g = Generation(name: "5a1e0cc3d0b0a9f1")!

        init() throws {
            dir = try WALFixture.tempDir("shadowlog")
            shadow = ShadowWAL(meta: MetaDirectory(databasePath: dir + "/db"))
            log = ShadowLog(meta: shadow.meta)
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }

        /// Writes and appends a segment of `count` bytes at (index, offset), as the database does.
        @discardableResult
        func write(index: UInt32, offset: UInt64, count: Int = 1000, generation: Generation? = nil) throws -> ShadowSegment {
            let gen = generation ?? g
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(offset)) }
            let s = try shadow.writeSegment(gen, index: index, offset: offset, keepCopy: true) { write in
                try WALFixture.feed(write, bytes)
            }
            log.append(s, generation: gen)
            return s
        }

        func kept(_ index: UInt32, _ offset: UInt64) throws -> Bool {
            let groups = try log.segments(generation: g, fromIndex: 0)
            return groups.flatMap(\.segments).first { $0.index == index && $0.offset == offset }?.compressed != nil
        }

        func pos(_ index: UInt32, _ offset: UInt64) -> WALPosition { WALPosition(generation: g, index: index, offset: offset) }
    }

    @Test func segmentsAreListedInOrderWithTheirKeptBytes() throws {
        let f = try Fixture()
        try f.write(index: 0, offset: 0, count: 32)
        try f.write(index: 0, offset: 32)
        try f.write(index: 1, offset: 0, count: 32)
        // A segment on disk that this process did not write (an earlier run's): listed, without bytes.
        _ = try f.shadow.writeSegment(f.g, index: 1, offset: 32) { try WALFixture.feed($0, [1, 2, 3]) }

        let groups = try f.log.segments(generation: f.g, fromIndex: 0)
        #expect(groups.map(\.index) == [0, 1])
        #expect(groups[0].segments.map(\.offset) == [0, 32])
        #expect(groups[1].segments.map(\.offset) == [0, 32])
        #expect(groups[0].segments.allSatisfy { $0.compressed != nil })
        #expect(groups[1].segments[1].compressed == nil)
        #expect(try f.log.segments(generation: f.g, fromIndex: 1).map(\.index) == [1])
        // The kept bytes decode to what was written, as the file does.
        let fromMemory = try f.log.open(groups[0].segments[1]).readAll()
        var fileOnly = groups[0].segments[1]
        fileOnly.compressed = nil
        #expect(fromMemory == (try f.log.open(fileOnly).readAll()))
        #expect(fromMemory.count == 1000)
        #expect(f.log.recentSegments(generation: f.g).count == 3)
        #expect(f.log.recentSegments(generation: Generation(name: "0000000000000001")!).isEmpty)
    }

    @Test func bytesStayUntilEveryConsumerHoldsPastThem() throws {
        let f = try Fixture()
        let a = Consumer(), b = Consumer()
        f.log.subscribe(a, retainsShadow: true)
        f.log.subscribe(b, retainsShadow: true)
        try f.write(index: 0, offset: 0, count: 32)
        try f.write(index: 0, offset: 32)
        try f.write(index: 0, offset: 1032)

        f.log.report(a, holds: f.pos(0, 1032))
        #expect(try f.kept(0, 0), "b has not reported: everything stays")
        f.log.report(b, holds: f.pos(0, 32))
        #expect(try !f.kept(0, 0))
        #expect(try f.kept(0, 32), "b still needs the segment it holds the start of")
        #expect(try f.kept(0, 1032))
        f.log.report(b, holds: nil)
        f.log.report(b, holds: f.pos(0, 2032))
        #expect(try !f.kept(0, 32))
        #expect(try f.kept(0, 1032), "a still needs it")
        f.log.unsubscribe(a)
        #expect(try !f.kept(0, 1032), "a consumer that left needs nothing")
    }

    @Test func recentSegmentsAfterAnAnchorAreASmallCopy() throws {
        let f = try Fixture()
        try f.write(index: 0, offset: 0, count: 32)
        try f.write(index: 0, offset: 32)
        try f.write(index: 0, offset: 1032)
        let after = f.log.recentSegments(generation: f.g, after: (0, 0), including: false, limit: 64)
        #expect(after?.map(\.offset) == [32, 1032])
        #expect(f.log.recentSegments(generation: f.g, after: (0, 0), including: true, limit: 64)?.map(\.offset) == [0, 32, 1032])
        #expect(f.log.recentSegments(generation: f.g, after: (0, 0), including: true, limit: 1)?.map(\.offset) == [0])
        #expect(f.log.recentSegments(generation: f.g, after: (0, 1032), including: false, limit: 64) == [])
        #expect(f.log.recentSegments(generation: f.g, after: (0, 500), including: false, limit: 64) == nil, "not a boundary")
        #expect(f.log.recentSegments(generation: Generation(name: "0000000000000001")!, after: (0, 0), including: true,
                                     limit: 64) == nil)
    }

    /// Releases look only past what an earlier release or the trimming of old entries already emptied, and stay
    /// exact across that trimming.
    @Test func releasesStayExactAcrossTrimming() throws {
        let f = try Fixture()
        let a = Consumer()
        f.log.subscribe(a, retainsShadow: false)
        let total = ShadowLog.recentLimit + 10
        for i in 0..<total {
            f.log.append(ShadowSegment(index: 0, offset: UInt64(i) * 100, path: "/nonexistent/\(i)", compressed: [1, 2, 3]),
                         generation: f.g)
            if i == 500 { f.log.report(a, holds: f.pos(0, 400 * 100)) }
        }
        var recent = f.log.recentSegments(generation: f.g)
        // Trimmed once, at recentLimit + 1 entries, down to recentKeep; 9 appended since.
        #expect(recent.count == ShadowLog.recentKeep + 9)
        #expect(recent.allSatisfy { ($0.compressed == nil) == ($0.offset < 400 * 100) },
                "released before the trim: exactly the entries before the position held")
        let holdAt = recent[recent.count - 5].offset
        f.log.report(a, holds: f.pos(0, holdAt))
        recent = f.log.recentSegments(generation: f.g)
        #expect(recent.filter { $0.compressed != nil }.map(\.offset) == recent.suffix(5).map(\.offset))
        f.log.report(a, holds: f.pos(0, UInt64(total) * 100))
        #expect(f.log.recentSegments(generation: f.g).allSatisfy { $0.compressed == nil })
    }

    @Test func heldIndexesCountOnlyShadowRetainingConsumers() throws {
        let f = try Fixture()
        let replica = Consumer(), stream = Consumer()
        f.log.subscribe(replica, retainsShadow: true)
        f.log.subscribe(stream, retainsShadow: false)
        #expect(f.log.heldIndexes == [nil], "a replica that has not reported needs everything")
        #expect(f.log.streamCount == 1)
        f.log.report(replica, holds: f.pos(3, 64))
        f.log.report(stream, holds: f.pos(1, 0))
        #expect(f.log.heldIndexes == [3])
        f.log.unsubscribe(stream)
        #expect(f.log.streamCount == 0)
        f.log.unsubscribe(replica)
        #expect(f.log.heldIndexes.isEmpty)
    }

    @Test func publishWakesSubscribersOnly() throws {
        let f = try Fixture()
        let a = Consumer(), b = Consumer()
        f.log.subscribe(a, retainsShadow: true)
        f.log.publish(f.pos(0, 32))
        #expect(f.log.position == f.pos(0, 32))
        #expect(a.wakes.current == 1)
        f.log.subscribe(b, retainsShadow: false)
        f.log.publish(nil, notify: false)
        #expect(f.log.position == nil)
        #expect(a.wakes.current == 1 && b.wakes.current == 0)
        f.log.unsubscribe(a)
        f.log.publish(f.pos(0, 64))
        #expect(a.wakes.current == 1 && b.wakes.current == 1)
    }

    @Test func keptBytesAreBoundedAndANewGenerationStartsOver() throws {
        let f = try Fixture()
        // Incompressible segments of 256 KiB: 20 of them exceed the 4 MiB bound, so the oldest lose their bytes.
        var rng = SystemRandomNumberGenerator()
        var offset: UInt64 = 0
        for _ in 0..<20 {
            let bytes = (0..<(256 * 1024)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let s = try f.shadow.writeSegment(f.g, index: 0, offset: offset, keepCopy: true) { try WALFixture.feed($0, bytes) }
            // writeSegment keeps copies up to its own limit; give the log the bytes to exercise its bound.
            var withBytes = s
            withBytes.compressed = try WALFixture.read(s.path)
            f.log.append(withBytes, generation: f.g)
            offset += UInt64(bytes.count)
        }
        let recent = f.log.recentSegments(generation: f.g)
        let keptTotal = recent.compactMap(\.compressed).reduce(0) { $0 + $1.count }
        #expect(keptTotal <= ShadowLog.keptBytesLimit)
        #expect(recent.last?.compressed != nil, "the newest keep their bytes")
        #expect(recent.first?.compressed == nil, "the oldest lose them")

        let other = Generation(name: "00000000000000aa")!
        try f.write(index: 0, offset: 0, count: 32, generation: other)
        #expect(f.log.recentSegments(generation: f.g).isEmpty)
        #expect(f.log.recentSegments(generation: other).count == 1)
    }
}

private extension LZ4FrameDecoder {
    func readAll() throws -> [UInt8] {
        var out: [UInt8] = []
        try forEachChunk { out += $0 }
        return out
    }
}
