/// What a streaming replica does with a WAL segment record, decided from positions alone (no I/O).
public enum StreamSegmentDecision: Equatable, Sendable {
    /// The segment continues the stored position: apply it.
    case apply
    /// The segment is already contained in the local database: ignore it.
    case skip
    /// The segment cannot follow the stored position (other generation, gap, no snapshot yet); the message says why.
    case conflict(String)

    /// Decides for a segment starting at `segment` when the local database ends at `stored` (nil: nothing applied).
    ///
    /// Inside one generation a segment is accepted at exactly the stored offset of the stored index, or at offset 0
    /// of any later index (the primary restarted its WAL); earlier segments are skipped, anything else is a gap.
    public static func decide(segment: WALPosition, stored: WALPosition?) -> StreamSegmentDecision {
        guard let stored else { return .conflict("wal segment \(segment) before any snapshot") }
        guard segment.generation == stored.generation else {
            return .conflict("wal segment \(segment) is not of the local generation \(stored.generation)")
        }
        if segment.index < stored.index || (segment.index == stored.index && segment.offset < stored.offset) {
            return .skip
        }
        if segment.index == stored.index {
            return segment.offset == stored.offset ? .apply : .conflict("wal segment \(segment) leaves a gap after \(stored)")
        }
        return segment.offset == 0 ? .apply : .conflict("wal segment \(segment) leaves a gap after \(stored)")
    }
}

/// Progress of a snapshot record being turned into WAL frames (pages 1…N, commit field N on page N).
struct StreamSnapshotProgress {
    /// The record's header.
    let header: StreamRecordHeader
    /// Pages the complete snapshot holds (`size / pageSize`).
    let pageCount: UInt64
    /// Payload bytes received so far.
    var received: UInt64 = 0
    /// Page number of the page being filled.
    var nextPage: UInt64 = 1
    /// Bytes of that page already in the page buffer.
    var filled = 0

    /// Starts tracking `header` for a database of `pageSize`-byte pages.
    init(header: StreamRecordHeader, pageSize: Int) {
        self.header = header
        pageCount = header.size / UInt64(pageSize)
    }

    /// Why the received payload cannot become the database, or nil when it is complete and well-formed.
    func incompleteReason(pageSize: Int) -> String? {
        let size = header.size
        if received != size { return "snapshot \(header.position) ended after \(received) of \(size) bytes" }
        if size == 0 { return "snapshot \(header.position) is empty" }
        if size % UInt64(pageSize) != 0 {
            return "snapshot \(header.position) size \(size) is not a multiple of the page size \(pageSize)"
        }
        return nil
    }
}
