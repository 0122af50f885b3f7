import Foundation
import Testing
import TestFixtures
@testable import ReplicationKit

/// What an idle database keeps (issue 15): a fingerprint of the last copied frame instead of the frame, and a heap
/// trim once databases idle. Real SQLite files where a database is involved.
@Suite struct IdleMemoryTests {
    /// A WAL frame's fingerprint tells frames apart by header and by page, and matches only a whole frame.
    @Test func frameFingerprintSeesHeaderAndPage() {
        let wal = WALFixture.makeWAL(frames: [(1, 0), (2, 2)])
        let fs = 24 + 512
        let frame = Array(wal[(32 + fs)..<(32 + 2 * fs)])
        let fp = WALFrameFingerprint(frame)
        #expect(fp == WALFrameFingerprint(frame))
        #expect(fp.frameSize == fs)
        #expect(fp != WALFrameFingerprint(Array(wal[32..<(32 + fs)])), "another frame")
        for at in [0, 7, 16, 23, 24, 300, fs - 1] {
            var other = frame
            other[at] ^= 0x40
            #expect(fp != WALFrameFingerprint(other), "byte \(at) changed")
        }
        #expect(fp != WALFrameFingerprint(Array(frame[0..<100])), "a short read")
        #expect(fp != WALFrameFingerprint(Array(frame[0..<10])), "shorter than a frame header")
    }

    /// The buffered scan of a sync keeps the last commit frame when its buffer fills and starts over (it copies
    /// the frame out once, not at every commit).
    @Test func bufferedScanKeepsLastCommitAcrossRefills() throws {
        let frames: [(UInt32, UInt32)] = (1...9).map { ($0, $0 % 3 == 0 ? $0 : 0) } + [(10, 0)]
        let wal = WALFixture.makeWAL(frames: frames)
        let h = try WALHeader(bytes: wal)
        let fs = h.frameSize
        for frameCount in [1, 2, 4, 16] {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: frameCount * fs, alignment: 16)
            defer { buffer.deallocate() }
            let (r, _) = try wal.withUnsafeBytes { bytes in
                try WALScanner(header: h).findCommittedEnd(from: 32, checksum: h.checksumState, buffer: buffer,
                                                           firstRead: fs) { buf, off in
                    let start = min(Int(off), bytes.count), n = min(buf.count, bytes.count - start)
                    buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + n)]))
                    return n
                }
            }
            #expect(r.committedEnd == UInt64(32 + 9 * fs), "buffer of \(frameCount) frames")
            #expect(r.lastCommitFrame == Array(wal[(32 + 8 * fs)..<(32 + 9 * fs)]), "buffer of \(frameCount) frames")
        }
    }

    /// A database that goes idle asks for a heap trim.
    @Test func idleDatabasesTrimTheHeap() throws {
        let envs = try (0..<3).map { _ in try DBTestEnv(idleConnectionDelay: .milliseconds(100)) }
        let before = HeapTrim.runs
        var dbs: [Database] = []
        for env in envs {
            try env.insert(2)
            let db = try env.open()
            try db.sync()
            dbs.append(db)
        }
        #expect(IdleConnectionsTests.eventually { dbs.allSatisfy { $0.openConnections == 1 } }, "the databases did not idle")
        #expect(IdleConnectionsTests.eventually(5) { HeapTrim.runs > before }, "no heap trim after the databases idled")
    }

    /// The requests of a burst collapse into one trim after it (other suites' databases may add a few).
    @Test func heapTrimRequestsCollapse() {
        let before = HeapTrim.runs
        for _ in 0..<50 { HeapTrim.request() }
        #expect(IdleConnectionsTests.eventually(5) { HeapTrim.runs > before }, "no heap trim after 50 requests")
        #expect(HeapTrim.runs - before < 10, "\(HeapTrim.runs - before) trims for one burst of 50 requests")
    }
}
