import Foundation

/// The 40-byte big-endian header in front of every record of a `/stream` response (INTERFACES §3.5).
public struct StreamRecordHeader: Equatable, Sendable, CustomStringConvertible {
    /// What the payload holds.
    public enum Kind: UInt32, Sendable {
        /// The primary's database, raw pages, `size` bytes.
        case snapshot = 1
        /// One shadow-WAL segment exactly as stored: an LZ4 frame of WAL bytes starting at `offset`.
        case walSegment = 2
        /// No payload; sent on an idle stream only to clients that asked for it (`heartbeat=` query parameter),
        /// so a silent connection can be told apart from a dead one. Upstream clients never receive it.
        case heartbeat = 3
    }

    /// Encoded size of a header.
    public static let encodedSize = 40

    public var kind: Kind
    /// Reserved, always 0.
    public var flags: UInt32 = 0
    public var generation: Generation
    public var index: UInt32
    /// Byte offset in the WAL of `index` where the payload's WAL bytes begin; for a snapshot produced by this
    /// project, the shadow offset the snapshot's content includes (upstream always sends 0 there).
    public var offset: UInt64
    /// Payload bytes that follow the header.
    public var size: UInt64

    /// Creates a header.
    public init(kind: Kind, generation: Generation, index: UInt32, offset: UInt64, size: UInt64) {
        self.kind = kind
        self.generation = generation
        self.index = index
        self.offset = offset
        self.size = size
    }

    /// The position the record starts at.
    public var position: WALPosition { WALPosition(generation: generation, index: index, offset: offset) }

    public var description: String {
        let k: String
        switch kind {
        case .snapshot: k = "snapshot"
        case .walSegment: k = "wal"
        case .heartbeat: k = "heartbeat"
        }
        return "\(k) \(position) size=\(size)"
    }

    /// The 40 header bytes.
    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.encodedSize)
        func put<T: FixedWidthInteger>(_ v: T) {
            withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) }
        }
        put(kind.rawValue)
        put(flags)
        put(generation.value)
        put(UInt64(index))
        put(offset)
        put(size)
        return out
    }

    /// Parses 40 header bytes.
    /// - Throws: `.corrupt` for an unknown record type, a non-zero flags field or an index beyond 2^31−1.
    public static func decode(_ bytes: some Collection<UInt8>) throws -> StreamRecordHeader {
        let b = Array(bytes)
        guard b.count == encodedSize else {
            throw ReplicationError(.corrupt, "stream record header is \(b.count) bytes, expected \(encodedSize)")
        }
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v: T = 0
            for i in 0..<MemoryLayout<T>.size { v = (v << 8) | T(b[at + i]) }
            return v
        }
        let type = get(0, UInt32.self)
        guard let kind = Kind(rawValue: type) else {
            throw ReplicationError(.corrupt, "invalid stream record type: 0x\(Hex.format(type, width: 2))")
        }
        let flags = get(4, UInt32.self)
        guard flags == 0 else {
            throw ReplicationError(.corrupt, "invalid stream record flags: 0x\(Hex.format(flags, width: 8))")
        }
        let index = get(16, UInt64.self)
        guard index <= UInt64(maxWALIndex) else {
            throw ReplicationError(.corrupt, "stream record index \(Hex.format(index, width: 16)) is out of range")
        }
        let offset = get(24, UInt64.self), size = get(32, UInt64.self)
        guard offset <= UInt64(Int64.max), size <= UInt64(Int64.max) else {
            throw ReplicationError(.corrupt, "stream record offset or size is out of range")
        }
        return StreamRecordHeader(kind: kind, generation: Generation(value: get(8, UInt64.self)),
                                  index: UInt32(index), offset: offset, size: size)
    }
}
