/// One step of a `/stream` body as `StreamRecordReader` sees it.
public enum StreamRecordEvent {
    /// A record's header was read; its `size` payload bytes follow.
    case begin(StreamRecordHeader)
    /// The next payload bytes of the current record (valid only during the callback; any chunking).
    case payload(UnsafeRawBufferPointer)
    /// The current record's payload is complete (sent right after `begin` for an empty record).
    case end(StreamRecordHeader)
}

/// Splits a `/stream` response body into records, whatever the sizes of the pieces the network delivers.
///
/// A pure state machine: it validates the framing (headers, heartbeat and segment sizes) and leaves applying the
/// records to its caller. After an error (its own or the handler's) the reader is not reused.
public struct StreamRecordReader: Sendable {
    /// Largest WAL segment record accepted (a follower holds one whole segment in memory).
    public static let maxSegmentSize: UInt64 = 1 << 30

    private var headerBytes: [UInt8] = []
    private var record: StreamRecordHeader?
    private var remaining: UInt64 = 0

    /// Creates a reader at the start of a body.
    public init() {}

    /// Whether the bytes so far end exactly between two records (no partial header or payload).
    public var isAtRecordBoundary: Bool { headerBytes.isEmpty && record == nil }

    /// Consumes the next piece of the body, handing each event to `handle` in order.
    ///
    /// - Throws: `.corrupt` for a malformed header, a heartbeat with a payload or a WAL segment of 0 or more than
    ///   `maxSegmentSize` bytes; anything `handle` throws.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer, _ handle: (StreamRecordEvent) throws -> Void) throws {
        var i = 0
        while i < bytes.count {
            guard let h = record else {
                let n = min(StreamRecordHeader.encodedSize - headerBytes.count, bytes.count - i)
                headerBytes.append(contentsOf: bytes[i..<(i + n)])
                i += n
                if headerBytes.count == StreamRecordHeader.encodedSize {
                    let header = try StreamRecordHeader.decode(headerBytes)
                    headerBytes = []
                    try begin(header, handle)
                }
                continue
            }
            let n = Int(min(remaining, UInt64(bytes.count - i)))
            try handle(.payload(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + n)])))
            i += n
            remaining -= UInt64(n)
            if remaining == 0 {
                record = nil
                try handle(.end(h))
            }
        }
    }

    private mutating func begin(_ h: StreamRecordHeader, _ handle: (StreamRecordEvent) throws -> Void) throws {
        switch h.kind {
        case .heartbeat:
            guard h.size == 0 else { throw ReplicationError(.corrupt, "heartbeat record with a payload") }
        case .snapshot:
            break
        case .walSegment:
            guard h.size > 0, h.size <= Self.maxSegmentSize else {
                throw ReplicationError(.corrupt, "wal segment record of \(h.size) bytes")
            }
        }
        try handle(.begin(h))
        if h.size == 0 {
            try handle(.end(h))
        } else {
            record = h
            remaining = h.size
        }
    }
}
