/// The largest WAL index a generation may use; reaching it starts a new generation.
public let maxWALIndex: UInt32 = 0x7FFF_FFFF

/// A position in the replicated WAL stream: generation, WAL index, byte offset in that index's WAL file.
///
/// Positions are only comparable inside one generation (see `compare(_:)`).
public struct WALPosition: Hashable, Sendable, CustomStringConvertible {
    /// The generation this position belongs to.
    public var generation: Generation
    /// The WAL index (number of WAL restarts since the generation began).
    public var index: UInt32
    /// Byte offset inside the WAL file of `index`, counting the 32-byte header.
    public var offset: UInt64

    /// Creates a position.
    public init(generation: Generation, index: UInt32, offset: UInt64) {
        self.generation = generation
        self.index = index
        self.offset = offset
    }

    /// The position with its offset set to 0 (how snapshots are labelled).
    public var truncated: WALPosition { WALPosition(generation: generation, index: index, offset: 0) }

    /// v0.4 text form `<gen>/<index %016x>:<offset %016x>`.
    public var description: String {
        "\(generation.name)/\(Hex.format(index, width: 16)):\(Hex.format(offset, width: 16))"
    }

    /// Parses the v0.4 text form; returns nil when malformed.
    public init?(parsing text: String) {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let slash = t.firstIndex(of: "/"), let colon = t.lastIndex(of: ":"), slash < colon,
              let gen = Generation(name: String(t[..<slash])),
              let idx = Hex.parse(t[t.index(after: slash)..<colon]), idx <= UInt64(maxWALIndex),
              let off = Hex.parse(t[t.index(after: colon)...]), off <= UInt64(Int64.max) else { return nil }
        self.init(generation: gen, index: UInt32(idx), offset: off)
    }

    /// Orders two positions of the same generation by (index, offset); nil when generations differ.
    public func compare(_ other: WALPosition) -> ComparisonResult? {
        guard generation == other.generation else { return nil }
        if index != other.index { return index < other.index ? .orderedAscending : .orderedDescending }
        if offset != other.offset { return offset < other.offset ? .orderedAscending : .orderedDescending }
        return .orderedSame
    }
}

import Foundation
