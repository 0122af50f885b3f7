#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A replica stored in a local directory (`file://` URLs and plain paths).
///
/// Every object is written to `<name>.tmp`, fsynced, renamed and its directory fsynced.
public final class FileReplicaClient: ReplicaClient {
    /// The replica directory.
    public let root: String
    /// Mode for files created on the replica.
    public let fileMode: mode_t
    /// Mode for directories created on the replica.
    public let directoryMode: mode_t

    public var type: String { "file" }
    public var location: String { root }

    /// Creates a client for the directory `root`.
    public init(root: String, fileMode: mode_t = 0o600, directoryMode: mode_t = 0o700) {
        self.root = root
        self.fileMode = fileMode
        self.directoryMode = directoryMode
    }

    private func full(_ relative: String) -> String { root + "/" + relative }

    public func objectName(snapshot s: SnapshotInfo) -> String {
        ReplicaPaths.snapshot(s.generation, index: s.index, layout: s.layout)
    }

    public func objectName(segment s: WALSegmentInfo) -> String {
        ReplicaPaths.walSegment(s.generation, index: s.index, offset: s.offset, layout: s.layout)
    }

    public func generations() throws -> [Generation] {
        let dir = full(ReplicaPaths.generationsDir)
        var out: [Generation] = []
        for name in try FileSystem.list(dir) {
            guard let g = Generation(name: name), try FileSystem.info(dir + "/" + name)?.isDirectory == true else { continue }
            out.append(g)
        }
        return out.sorted()
    }

    public func snapshots(generation: Generation) throws -> [SnapshotInfo] {
        let dir = full(ReplicaPaths.generation(generation) + "/snapshots")
        var out: [SnapshotInfo] = []
        for name in try FileSystem.list(dir) {
            guard let (index, layout) = ReplicaPaths.parseSnapshotName(name),
                  let info = try FileSystem.info(dir + "/" + name), !info.isDirectory else { continue }
            out.append(SnapshotInfo(generation: generation, index: index, size: info.size,
                                    createdAt: info.modified, layout: layout))
        }
        return out.sorted { ($0.index, $0.layout == .v04 ? 1 : 0) < ($1.index, $1.layout == .v04 ? 1 : 0) }
    }

    public func walSegments(generation: Generation) throws -> [WALSegmentInfo] {
        let dir = full(ReplicaPaths.generation(generation) + "/wal")
        var out: [WALSegmentInfo] = []
        for name in try FileSystem.list(dir) {
            let path = dir + "/" + name
            guard let info = try FileSystem.info(path) else { continue }
            if info.isDirectory {
                // v0.4: an index directory holding `<offset>.wal.lz4` files. Only the 16-digit names we (and
                // upstream) write are listed, so every listed segment can be opened and deleted by its name.
                guard let index = Hex.parseStrict(Substring(name), width: 16), index <= UInt64(maxWALIndex) else { continue }
                for file in try FileSystem.list(path) {
                    guard file.utf8.count == 16 + ".wal.lz4".utf8.count,
                          let offset = ReplicaPaths.parseV04OffsetName(file),
                          let fi = try FileSystem.info(path + "/" + file), !fi.isDirectory else { continue }
                    out.append(WALSegmentInfo(generation: generation, index: UInt32(index), offset: offset,
                                              size: fi.size, createdAt: fi.modified, layout: .v04))
                }
            } else if let (index, offset) = ReplicaPaths.parseV03SegmentName(name) {
                out.append(WALSegmentInfo(generation: generation, index: index, offset: offset,
                                          size: info.size, createdAt: info.modified, layout: .v03))
            }
        }
        return out.sorted { ($0.index, $0.offset) < ($1.index, $1.offset) }
    }

    private func write(relative: String, body: ObjectBody) throws -> FileInfo {
        let path = full(relative)
        let dir = (path as NSString).deletingLastPathComponent
        try FileSystem.makeDirectories(dir, mode: directoryMode)
        try FileSystem.writeAtomically(path, mode: fileMode) { fd in
            try body { bytes in try fd.writeAll(bytes) }
        }
        guard let info = try FileSystem.info(path) else {
            throw ReplicationError(.io, "write \(path): file vanished after rename")
        }
        return info
    }

    public func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
        let info = try write(relative: ReplicaPaths.snapshot(generation, index: index), body: body)
        return SnapshotInfo(generation: generation, index: index, size: info.size, createdAt: info.modified)
    }

    public func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
        let rel = ReplicaPaths.walSegment(position.generation, index: position.index, offset: position.offset)
        let info = try write(relative: rel, body: body)
        return WALSegmentInfo(generation: position.generation, index: position.index, offset: position.offset,
                              size: info.size, createdAt: info.modified)
    }

    public func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource {
        FileByteSource(try FileDescriptor.openForReading(full(objectName(snapshot: snapshot))))
    }

    public func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource {
        FileByteSource(try FileDescriptor.openForReading(full(objectName(segment: segment))))
    }

    public func deleteGeneration(_ generation: Generation) throws {
        try FileSystem.removeTree(full(ReplicaPaths.generation(generation)))
    }

    public func deleteSnapshot(_ snapshot: SnapshotInfo) throws {
        try FileSystem.remove(full(objectName(snapshot: snapshot)))
    }

    public func deleteWALSegments(_ segments: [WALSegmentInfo]) throws {
        var dirs = Set<String>()
        for s in segments {
            let path = full(objectName(segment: s))
            try FileSystem.remove(path)
            if s.layout == .v04 { dirs.insert((path as NSString).deletingLastPathComponent) }
        }
        // Empty index directories are pruned so listings stay small; a non-empty one is left alone.
        for d in dirs { FileSystem.removeEmptyDirectory(d) }
    }
}

/// A `ByteSource` over an owned file descriptor.
public final class FileByteSource: ByteSource {
    private let fd: FileDescriptor

    /// Wraps `fd`; the source owns and closes it.
    public init(_ fd: FileDescriptor) { self.fd = fd }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try fd.read(into: buffer) }

    public func close() { try? fd.close() }
}
