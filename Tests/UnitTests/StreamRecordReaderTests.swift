import Testing
@testable import ReplicationKit

@Suite("StreamRecordReader (/stream framing)")
struct StreamRecordReaderTests {
    /// Events as values: payload pieces of one record merged.
    enum Event: Equatable {
        case begin(StreamRecordHeader.Kind, UInt64)
        case payload([UInt8])
        case end(StreamRecordHeader.Kind)
    }

    static func read(_ body: [UInt8], pieces: Int) throws -> (events: [Event], atBoundary: Bool) {
        var reader = StreamRecordReader()
        var events: [Event] = []
        var at = 0
        while at < body.count {
            let n = min(pieces, body.count - at)
            try body[at..<(at + n)].withUnsafeBytes { piece in
                try reader.consume(piece) { e in
                    switch e {
                    case .begin(let h): events.append(.begin(h.kind, h.size))
                    case .end(let h): events.append(.end(h.kind))
                    case .payload(let p):
                        if case .payload(let prev) = events.last {
                            events[events.count - 1] = .payload(prev + Array(p))
                        } else {
                            events.append(.payload(Array(p)))
                        }
                    }
                }
            }
            at += n
        }
        return (events, reader.isAtRecordBoundary)
    }

    static func record(_ kind: StreamRecordHeader.Kind, _ payload: [UInt8]) -> [UInt8] {
        StreamRecordHeader(kind: kind, generation: Generation(value: 0x0123_4567_89AB_CDEF), index: 3, offset: 0,
                           size: UInt64(payload.count)).encoded() + payload
    }

    @Test(arguments: [1, 7, 40, 41, 1000])
    func sameRecordsWhateverTheReadSizes(pieces: Int) throws {
        let body = Self.record(.snapshot, [1, 2, 3]) + Self.record(.heartbeat, []) + Self.record(.walSegment, [9, 8])
        let (events, atBoundary) = try Self.read(body, pieces: pieces)
        #expect(events == [.begin(.snapshot, 3), .payload([1, 2, 3]), .end(.snapshot),
                           .begin(.heartbeat, 0), .end(.heartbeat),
                           .begin(.walSegment, 2), .payload([9, 8]), .end(.walSegment)])
        #expect(atBoundary)
        let (_, cut) = try Self.read(Array(body.dropLast()), pieces: pieces)
        #expect(!cut)
    }

    @Test func framingErrors() {
        var heartbeat = StreamRecordHeader(kind: .heartbeat, generation: Generation(value: 1), index: 0, offset: 0, size: 1)
        #expect(throws: ReplicationError.self) { try Self.read(heartbeat.encoded() + [0], pieces: 64) }
        heartbeat.kind = .walSegment
        heartbeat.size = 0
        #expect(throws: ReplicationError.self) { try Self.read(heartbeat.encoded(), pieces: 64) }
        heartbeat.size = StreamRecordReader.maxSegmentSize + 1
        #expect(throws: ReplicationError.self) { try Self.read(heartbeat.encoded(), pieces: 64) }
        var bad = Self.record(.snapshot, [])
        bad[3] = 9
        #expect(throws: ReplicationError.self) { try Self.read(bad, pieces: 64) }
    }
}
