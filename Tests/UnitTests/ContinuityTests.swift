import Foundation
import Testing
@testable import ReplicationKit

/// A cursor after three committed frames of a synthetic WAL (salts 100/7, page size 512), in index 5.
private struct Scenario {
    let wal: [UInt8]
    let cursor: ShadowCursor
    let fs = 24 + 512

    init(index: UInt32 = 5) throws {
        wal = WALFixture.makeWAL(salt1: 100, salt2: 7, frames: [(1, 0), (2, 2), (3, 3)])
        let h = try WALHeader(bytes: wal)
        let scan = try WALFixture.scan(wal)
        cursor = ShadowCursor(position: WALPosition(generation: Generation(value: 42), index: index, offset: UInt64(wal.count)),
                              header: h, checksum: scan.checksum, lastFrame: scan.lastCommitFrame.map(WALFrameFingerprint.init))
    }

    /// A cursor that holds only the header of this lifetime.
    var headerOnly: ShadowCursor {
        var c = cursor
        c.position.offset = 32
        c.checksum = c.header.checksumState
        c.lastFrame = nil
        return c
    }

    var lastFrame: [UInt8] { Array(wal[(wal.count - fs)...]) }

    /// The real WAL as observed: `size`, its header, and the frame before the cursor as it is on disk.
    func observe(size: Int? = nil, header: [UInt8]? = nil, frame: [UInt8]?? = nil) -> ContinuityCheck.Observation {
        let f: [UInt8]?
        switch frame {
        case .none: f = lastFrame
        case .some(let x): f = x
        }
        return ContinuityCheck.Observation(walSize: UInt64(size ?? wal.count), headerBytes: header ?? Array(wal[0..<32]),
                                           frameBeforeCursor: f.map(WALFrameFingerprint.init))
    }

    /// A restarted header (checkpoint sequence + 1) with the given salt-1.
    func restartedHeader(salt1: UInt32, salt2: UInt32 = 0xdead_beef) -> [UInt8] {
        WALFixture.header(sequence: 1, salt1: salt1, salt2: salt2)
    }
}

@Suite("ContinuityCheck.judge and CheckpointPolicy.decide")
struct ContinuityTests {
    typealias Verdict = ContinuityCheck.Verdict

    private func judge(_ c: ShadowCursor?, _ o: ContinuityCheck.Observation, proven: Bool = false) -> Verdict {
        ContinuityCheck.judge(cursor: c, observation: o, restartProven: proven)
    }

    private func isNewGeneration(_ v: Verdict) -> Bool {
        if case .newGeneration = v { return true }
        return false
    }

    @Test func noCursorMeansNoGeneration() throws {
        let s = try Scenario()
        #expect(judge(nil, s.observe()) == .newGeneration(reason: "no generation exists"))
        #expect(judge(nil, s.observe(), proven: true) == .newGeneration(reason: "no generation exists"))
        #expect(judge(nil, ContinuityCheck.Observation(walSize: 0, headerBytes: [], frameBeforeCursor: nil))
                == .newGeneration(reason: "no generation exists"))
    }

    @Test func maxIndexExceeded() throws {
        let atMax = try Scenario(index: maxWALIndex)
        #expect(judge(atMax.cursor, atMax.observe()) == .newGeneration(reason: "max index exceeded"))
        #expect(judge(atMax.cursor, atMax.observe(), proven: true) == .newGeneration(reason: "max index exceeded"))
        let below = try Scenario(index: maxWALIndex - 1)
        #expect(judge(below.cursor, below.observe()) == .continueIndex)
    }

    @Test func unchangedWALContinues() throws {
        let s = try Scenario()
        #expect(judge(s.cursor, s.observe()) == .continueIndex)
        // More (uncopied) data after the cursor is fine.
        #expect(judge(s.cursor, s.observe(size: s.wal.count + 10 * s.fs)) == .continueIndex)
        // A header-only cursor has no frame to compare.
        #expect(judge(s.headerOnly, s.observe(size: 32, frame: .some(nil))) == .continueIndex)
        #expect(judge(s.headerOnly, s.observe(size: 5000, frame: .some(nil))) == .continueIndex)
        // restartProven without a changed header changes nothing.
        #expect(judge(s.cursor, s.observe(), proven: true) == .continueIndex)
    }

    @Test func truncatedWAL() throws {
        let s = try Scenario()
        #expect(judge(s.cursor, s.observe(size: s.wal.count - 1, frame: .some(nil)))
                == .newGeneration(reason: "wal truncated by another process"))
        #expect(judge(s.cursor, s.observe(size: 0, header: [], frame: .some(nil)))
                == .newGeneration(reason: "wal truncated by another process"))
        #expect(judge(s.headerOnly, s.observe(size: 31, header: Array(s.wal[0..<31]), frame: .some(nil)))
                == .newGeneration(reason: "wal truncated by another process"))
        // Exactly at the end is not truncated.
        #expect(judge(s.cursor, s.observe(size: s.wal.count)) == .continueIndex)
    }

    @Test func restartWithNextSaltAndIntactFrameContinues() throws {
        let s = try Scenario()
        let h = s.restartedHeader(salt1: 101)
        #expect(judge(s.cursor, s.observe(header: h)) == .continueAfterRestart)
        // Salt-1 wraps around modulo 2^32.
        let wrap = WALFixture.makeWAL(salt1: .max, salt2: 7, frames: [(1, 1)])
        let wh = try WALHeader(bytes: wrap)
        let scan = try WALFixture.scan(wrap)
        let c = ShadowCursor(position: WALPosition(generation: Generation(value: 1), index: 0, offset: UInt64(wrap.count)),
                             header: wh, checksum: scan.checksum, lastFrame: scan.lastCommitFrame.map(WALFrameFingerprint.init))
        let o = ContinuityCheck.Observation(walSize: UInt64(wrap.count), headerBytes: s.restartedHeader(salt1: 0),
                                            frameBeforeCursor: scan.lastCommitFrame.map(WALFrameFingerprint.init))
        #expect(judge(c, o) == .continueAfterRestart)
    }

    @Test(arguments: [UInt32(100), 102, 99, 0x8000_0000])
    func restartWithOtherSaltStartsNewGeneration(salt1: UInt32) throws {
        let s = try Scenario()
        var h = s.restartedHeader(salt1: salt1)
        if salt1 == 100 { h = s.restartedHeader(salt1: 100, salt2: 8) }  // same salt-1, other salt-2
        #expect(isNewGeneration(judge(s.cursor, s.observe(header: h))))
    }

    @Test func headerOnlyCursorWithChangedHeaderStartsNewGeneration() throws {
        let s = try Scenario()
        let v = judge(s.headerOnly, s.observe(header: s.restartedHeader(salt1: 101), frame: .some(nil)))
        #expect(isNewGeneration(v))
    }

    @Test func unreadableHeaderStartsNewGeneration() throws {
        let s = try Scenario()
        var garbage = Array(s.wal[0..<32])
        garbage[0] = 0
        #expect(isNewGeneration(judge(s.cursor, s.observe(header: garbage))))
        var badSum = s.restartedHeader(salt1: 101)
        badSum[30] ^= 0xff
        #expect(isNewGeneration(judge(s.cursor, s.observe(header: badSum))))
    }

    @Test func overwrittenLastFrame() throws {
        let s = try Scenario()
        var other = s.lastFrame
        other[24 + 3] ^= 1
        #expect(judge(s.cursor, s.observe(frame: other)) == .newGeneration(reason: "wal overwritten by another process"))
        #expect(judge(s.cursor, s.observe(frame: .some(nil))) == .newGeneration(reason: "wal overwritten by another process"))
        #expect(judge(s.cursor, s.observe(frame: Array(other[0..<100])))
                == .newGeneration(reason: "wal overwritten by another process"))
        // Same after a restart with the next salt: the old tail is gone.
        #expect(judge(s.cursor, s.observe(header: s.restartedHeader(salt1: 101), frame: other))
                == .newGeneration(reason: "wal overwritten by another process"))
    }

    @Test func provenRestartContinuesEvenWhenTruncatedOrOverwritten() throws {
        let s = try Scenario()
        let h = s.restartedHeader(salt1: 0x5555)  // not salt+1: only the proof allows it
        // Truncated to a header only.
        #expect(judge(s.cursor, s.observe(size: 32, header: h, frame: .some(nil)), proven: true) == .continueAfterRestart)
        // Overwritten by new frames.
        var newWAL = h
        for i in 0..<6 { WALFixture.appendFrame(&newWAL, page: UInt32(i + 1), commit: UInt32(i + 1), fill: 0x77) }
        let overwritten = Array(newWAL[(s.wal.count - s.fs)..<s.wal.count])
        #expect(judge(s.cursor, s.observe(size: newWAL.count, header: h, frame: overwritten), proven: true)
                == .continueAfterRestart)
        // A header-only cursor with a changed header.
        #expect(judge(s.headerOnly, s.observe(header: h, frame: .some(nil)), proven: true) == .continueAfterRestart)
        // The proof only helps when the new header parses.
        var bad = h
        bad[5] ^= 1
        #expect(judge(s.cursor, s.observe(size: 32, header: bad, frame: .some(nil)), proven: true)
                == .newGeneration(reason: "wal truncated by another process"))
        #expect(isNewGeneration(judge(s.cursor, s.observe(header: bad), proven: true)))
        // An empty or missing WAL is not a parseable header either.
        #expect(judge(s.cursor, s.observe(size: 0, header: [], frame: .some(nil)), proven: true)
                == .newGeneration(reason: "wal truncated by another process"))
    }

    // MARK: CheckpointPolicy.decide

    private func options(min: Int = 1000, max: Int = 10000, interval: Duration = .seconds(60)) -> DatabaseOptions {
        var o = DatabaseOptions()
        o.minCheckpointPageCount = min
        o.maxCheckpointPageCount = max
        o.checkpointInterval = interval
        return o
    }

    private func walSize(_ pages: UInt64, pageSize: UInt64 = 4096) -> UInt64 { 32 + pages * (24 + pageSize) }

    private func decide(_ offset: UInt64, age: Duration = .zero, pageSize: Int = 4096,
                        _ o: DatabaseOptions) -> CheckpointMode? {
        CheckpointPolicy.decide(offset: offset, pageSize: pageSize, databaseAge: age, options: o)
    }

    @Test func walRestartsAfterForcedAndIdleCheckpointsAndPastEightTimesTheMinimum() {
        func restarts(_ mode: CheckpointMode, _ pages: UInt64, _ o: DatabaseOptions = DatabaseOptions()) -> Bool {
            CheckpointPolicy.restartsWAL(after: mode, offset: walSize(pages), pageSize: 4096, options: o)
        }
        // Size-based PASSIVE: no restart between the minimum and eight times it.
        #expect(!restarts(.passive, 1000) && !restarts(.passive, 7999))
        #expect(restarts(.passive, 8000) && restarts(.passive, 9000))
        // The time-based PASSIVE of an idle database (below the minimum) restarts.
        #expect(restarts(.passive, 2) && restarts(.passive, 999))
        // Forced checkpoints always restart.
        #expect(restarts(.truncate, 10000) && restarts(.restart, 1500) && restarts(.full, 1500))
        // The factor follows the configured minimum.
        #expect(!restarts(.passive, 120, options(min: 16)) && restarts(.passive, 128, options(min: 16)))
    }

    @Test func defaultsMatchSpec() {
        let d = DatabaseOptions()
        #expect(d.minCheckpointPageCount == 1000)
        #expect(d.maxCheckpointPageCount == 10000)
        #expect(d.checkpointInterval == .seconds(60))
        #expect(d.monitorDelayInterval == .milliseconds(10))
        #expect(d.shadowRetentionCount == 32)
    }

    @Test func pageCountThresholds() {
        let o = options()
        #expect(decide(0, o) == nil)
        #expect(decide(32, o) == nil)
        #expect(decide(walSize(1000) - 1, o) == nil)
        #expect(decide(walSize(1000), o) == .passive)
        #expect(decide(walSize(10000) - 1, o) == .passive)
        #expect(decide(walSize(10000), o) == .truncate)
        #expect(decide(walSize(20000), o) == .truncate)
        // Other page sizes scale the thresholds.
        #expect(decide(walSize(1000, pageSize: 1024) - 1, pageSize: 1024, o) == nil)
        #expect(decide(walSize(1000, pageSize: 1024), pageSize: 1024, o) == .passive)
        #expect(decide(walSize(10000, pageSize: 65536), pageSize: 65536, o) == .truncate)
        // Small custom thresholds.
        let small = options(min: 10, max: 20)
        #expect(decide(walSize(9), small) == nil)
        #expect(decide(walSize(10), small) == .passive)
        #expect(decide(walSize(20), small) == .truncate)
    }

    @Test func maxZeroDisablesForcedCheckpoint() {
        let o = options(max: 0)
        #expect(decide(walSize(10000), o) == .passive)
        #expect(decide(walSize(1_000_000), o) == .passive)
        #expect(decide(walSize(999), o) == nil)
    }

    @Test func intervalRule() {
        let o = options(interval: .seconds(60))
        // Older than the interval and more than one frame.
        #expect(decide(walSize(2), age: .seconds(61), o) == .passive)
        #expect(decide(walSize(1) + 1, age: .seconds(61), o) == .passive)
        // One frame only, or just a header.
        #expect(decide(walSize(1), age: .seconds(61), o) == nil)
        #expect(decide(32, age: .seconds(3600), o) == nil)
        // Not older than the interval.
        #expect(decide(walSize(5), age: .seconds(60), o) == nil)
        #expect(decide(walSize(5), age: .seconds(59), o) == nil)
        // Interval 0 disables the rule.
        #expect(decide(walSize(5), age: .seconds(86400), options(interval: .zero)) == nil)
        // Tiny interval (the "1 ns" case of REPLICATION §10.2).
        #expect(decide(walSize(2), age: .milliseconds(1), options(interval: .nanoseconds(1))) == .passive)
        // Page-count rules win over the interval rule.
        #expect(decide(walSize(10000), age: .seconds(61), o) == .truncate)
    }
}
