import Foundation

/// Which naming scheme a replica object uses.
public enum ReplicaLayout: Sendable, Equatable {
    /// v0.4: `snapshots/<index %016x>.snapshot.lz4`, `wal/<index %016x>/<offset %016x>.wal.lz4`.
    case v04
    /// v0.3.x: `snapshots/<index %08x>.snapshot.lz4`, `wal/<index %08x>_<offset %08x>.wal.lz4` (read-only).
    case v03
}

/// A snapshot object stored on a replica.
public struct SnapshotInfo: Sendable, Equatable {
    public var generation: Generation
    public var index: UInt32
    /// Stored (compressed) size in bytes.
    public var size: UInt64
    /// The backend's timestamp of the object.
    public var createdAt: Date
    public var layout: ReplicaLayout

    /// Creates a snapshot description.
    public init(generation: Generation, index: UInt32, size: UInt64, createdAt: Date, layout: ReplicaLayout = .v04) {
        self.generation = generation
        self.index = index
        self.size = size
        self.createdAt = createdAt
        self.layout = layout
    }
}

/// A WAL segment object stored on a replica.
public struct WALSegmentInfo: Sendable, Equatable {
    public var generation: Generation
    public var index: UInt32
    public var offset: UInt64
    /// Stored (compressed) size in bytes.
    public var size: UInt64
    /// The backend's timestamp of the object.
    public var createdAt: Date
    public var layout: ReplicaLayout

    /// Creates a segment description.
    public init(generation: Generation, index: UInt32, offset: UInt64, size: UInt64, createdAt: Date,
                layout: ReplicaLayout = .v04) {
        self.generation = generation
        self.index = index
        self.offset = offset
        self.size = size
        self.createdAt = createdAt
        self.layout = layout
    }

    /// The segment's starting position.
    public var position: WALPosition { WALPosition(generation: generation, index: index, offset: offset) }
}

/// A pull-based byte source: fills the buffer, returns the count, 0 at the end.
public protocol ByteSource: AnyObject {
    /// Reads up to `buffer.count` bytes; 0 means end of data.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Releases the underlying resource.
    func close()
}

/// Writes the body of an object: called with a sink that receives the object's bytes in order.
public typealias ObjectBody = (_ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

/// Storage for one replica destination (a directory, a bucket prefix, …), in the Litestream replica layout.
///
/// Methods block; callers run them on dedicated threads or dispatch queues, never on the Swift cooperative pool.
/// Listings are sorted: generations by name, snapshots by index, segments by (index, offset).
public protocol ReplicaClient: AnyObject, Sendable {
    /// Backend type name: `file`, `s3`, `gs`, `abs`, `sftp`.
    var type: String { get }
    /// How the replica describes itself in logs and errors (no secrets).
    var location: String { get }

    /// Generation names present on the replica.
    func generations() throws -> [Generation]
    /// Snapshots of a generation (both layouts).
    func snapshots(generation: Generation) throws -> [SnapshotInfo]
    /// WAL segments of a generation (both layouts).
    func walSegments(generation: Generation) throws -> [WALSegmentInfo]
    /// Stores a snapshot (v0.4 layout); `body` produces the compressed object bytes.
    func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo
    /// Stores a WAL segment (v0.4 layout); `body` produces the compressed object bytes.
    func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo
    /// Opens a snapshot's compressed bytes.
    func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource
    /// Opens a WAL segment's compressed bytes.
    func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource
    /// Deletes a whole generation.
    func deleteGeneration(_ generation: Generation) throws
    /// Deletes one snapshot; a missing one is not an error.
    func deleteSnapshot(_ snapshot: SnapshotInfo) throws
    /// Deletes WAL segments; missing ones are not an error.
    func deleteWALSegments(_ segments: [WALSegmentInfo]) throws
    /// The name of an object, relative to the replica root, for error messages (`generations/…/x.wal.lz4`).
    func objectName(snapshot: SnapshotInfo) -> String
    /// The name of a WAL segment object, relative to the replica root.
    func objectName(segment: WALSegmentInfo) -> String
    /// False when objects can be written but not read back (an age replica configured with recipients only).
    var canReadObjects: Bool { get }
}

extension ReplicaClient {
    public var canReadObjects: Bool { true }
}

/// A client that wraps another (the lease fence, age encryption) and changes only some of its operations: every
/// requirement it does not implement passes through to `base`.
public protocol WrappingReplicaClient: ReplicaClient {
    /// The client that does the work.
    var base: any ReplicaClient { get }
}

extension WrappingReplicaClient {
    public var type: String { base.type }
    public var location: String { base.location }
    public var canReadObjects: Bool { base.canReadObjects }
    public func generations() throws -> [Generation] { try base.generations() }
    public func snapshots(generation: Generation) throws -> [SnapshotInfo] { try base.snapshots(generation: generation) }
    public func walSegments(generation: Generation) throws -> [WALSegmentInfo] { try base.walSegments(generation: generation) }
    public func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
        try base.writeSnapshot(generation: generation, index: index, body: body)
    }
    public func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
        try base.writeWALSegment(position: position, body: body)
    }
    public func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource { try base.openSnapshot(snapshot) }
    public func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource { try base.openWALSegment(segment) }
    public func deleteGeneration(_ generation: Generation) throws { try base.deleteGeneration(generation) }
    public func deleteSnapshot(_ snapshot: SnapshotInfo) throws { try base.deleteSnapshot(snapshot) }
    public func deleteWALSegments(_ segments: [WALSegmentInfo]) throws { try base.deleteWALSegments(segments) }
    public func objectName(snapshot: SnapshotInfo) -> String { base.objectName(snapshot: snapshot) }
    public func objectName(segment: WALSegmentInfo) -> String { base.objectName(segment: segment) }
}

/// Path math of the replica layout, shared by every backend.
public enum ReplicaPaths {
    /// `generations`
    public static let generationsDir = "generations"

    /// `generations/<gen>`
    public static func generation(_ g: Generation) -> String { "generations/\(g.name)" }

    /// `generations/<gen>/snapshots/<index>.snapshot.lz4` in the given layout.
    public static func snapshot(_ g: Generation, index: UInt32, layout: ReplicaLayout = .v04) -> String {
        let w = layout == .v04 ? 16 : 8
        return "generations/\(g.name)/snapshots/\(Hex.format(index, width: w)).snapshot.lz4"
    }

    /// The segment object name in the given layout.
    public static func walSegment(_ g: Generation, index: UInt32, offset: UInt64, layout: ReplicaLayout = .v04) -> String {
        switch layout {
        case .v04:
            return "generations/\(g.name)/wal/\(Hex.format(index, width: 16))/\(Hex.format(offset, width: 16)).wal.lz4"
        case .v03:
            return "generations/\(g.name)/wal/\(Hex.format(index, width: 8))_\(Hex.format(offset, width: 8)).wal.lz4"
        }
    }

    /// Parses a snapshot base name in either layout: `(index, layout)`.
    public static func parseSnapshotName(_ name: String) -> (UInt32, ReplicaLayout)? {
        guard name.hasSuffix(".snapshot.lz4") else { return nil }
        let stem = name.dropLast(".snapshot.lz4".count)
        if let v = Hex.parseStrict(stem, width: 16), v <= UInt64(maxWALIndex) { return (UInt32(v), .v04) }
        if let v = Hex.parseStrict(stem, width: 8), v <= UInt64(maxWALIndex) { return (UInt32(v), .v03) }
        return nil
    }

    /// Parses a v0.3 flat WAL name `<index8>_<offset8>.wal.lz4`.
    public static func parseV03SegmentName(_ name: String) -> (UInt32, UInt64)? {
        guard name.hasSuffix(".wal.lz4") else { return nil }
        let stem = name.dropLast(".wal.lz4".count)
        let parts = stem.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Hex.parseStrict(parts[0], width: 8), i <= UInt64(maxWALIndex),
              let o = Hex.parseStrict(parts[1], width: 8) else { return nil }
        return (UInt32(i), o)
    }

    /// Parses a v0.4 WAL file name `<offset>.wal.lz4` (lenient hex, as upstream's file backend).
    public static func parseV04OffsetName(_ name: String) -> UInt64? {
        guard name.hasSuffix(".wal.lz4") else { return nil }
        let stem = name.dropLast(".wal.lz4".count)
        guard let o = Hex.parse(stem), o <= UInt64(Int64.max) else { return nil }
        return o
    }
}
