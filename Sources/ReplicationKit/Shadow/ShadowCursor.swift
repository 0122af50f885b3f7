/// Where the shadow WAL of the current index ends, and what is needed to continue it.
public struct ShadowCursor: Sendable, Equatable {
    /// End of the last committed transaction copied (the real-WAL offset of the next uncopied frame).
    public var position: WALPosition
    /// Header of the real WAL lifetime this index copies.
    public var header: WALHeader
    /// Running checksum at `position`.
    public var checksum: WALChecksum
    /// The last copied frame's fingerprint, used to prove the real WAL was not overwritten behind us.
    public var lastFrame: WALFrameFingerprint?
    /// Whether this index has no segment yet: the next segment written starts at offset 0 with `header`, so the
    /// header of a restarted WAL travels with its first frames instead of in a segment (and object) of its own.
    public var headerPending = false
}

extension ShadowWAL {
    /// Rebuilds the cursor from the segments on disk (REPLICATION §6.2), verifying the checksum chain.
    ///
    /// Returns nil when the generation has no segments at all.
    public func recoverCursor(_ g: Generation) throws -> ShadowCursor? {
        // The highest index that holds at least one segment.
        var chosen: (UInt32, [ShadowSegment])?
        for index in try indexes(g).reversed() {
            let segs = try segments(g, index: index)
            if !segs.isEmpty { chosen = (index, segs); break }
        }
        guard let (index, segs) = chosen else { return nil }
        guard segs[0].offset == 0 else {
            throw ReplicationError(.corrupt, "shadow index \(g.name)/\(Hex.format(index, width: 16)) has no segment at offset 0")
        }
        var header: WALHeader?
        var checksum = WALChecksum(bigEndian: false)
        var lastFrame: WALFrameFingerprint?
        var end: UInt64 = 0
        for seg in segs {
            guard seg.offset == end else {
                throw ReplicationError(.corrupt, "shadow segment \(seg.path): expected offset \(Hex.format(end, width: 16))")
            }
            var bytes = try readSegment(seg)
            let segLength = UInt64(bytes.count)
            if seg.offset == 0 {
                let h = try WALHeader(bytes: bytes)
                header = h
                checksum = h.checksumState
                bytes.removeFirst(min(bytes.count, walHeaderSize))
            }
            guard let h = header else { break }
            let fs = h.frameSize
            guard bytes.count % fs == 0 else {
                throw ReplicationError(.corrupt, "shadow segment \(seg.path): short wal frame (n=\(bytes.count % fs))")
            }
            let scan = try WALScanner(header: h).scan(from: 0, checksum: checksum) { count, off in
                let start = Int(off)
                return Array(bytes[start..<min(bytes.count, start + count)])
            }
            guard scan.committedEnd == UInt64(bytes.count) else {
                throw ReplicationError(.corrupt, "shadow segment \(seg.path): invalid frame at byte \(scan.committedEnd)")
            }
            checksum = scan.checksum
            if let f = scan.lastCommitFrame { lastFrame = WALFrameFingerprint(f) }
            end += segLength
        }
        guard let h = header else { return nil }
        return ShadowCursor(position: WALPosition(generation: g, index: index, offset: end),
                            header: h, checksum: checksum, lastFrame: end > UInt64(walHeaderSize) ? lastFrame : nil)
    }
}
