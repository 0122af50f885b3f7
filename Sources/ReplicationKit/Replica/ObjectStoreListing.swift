import Foundation

/// Turns the flat object listings of the object stores (S3, GCS, Azure Blob) into the replica's snapshots and WAL
/// segments, with the name rules every object-store backend shares (INTERFACES §5.1): v0.4 names of exactly 16
/// hex digits, the v0.3 flat layout readable, anything else ignored; results sorted.
enum ObjectStoreListing {
    /// Snapshots among `objects` (name, size, created) listed under `base`, the generation's `snapshots/` prefix.
    static func snapshots<S: Sequence>(generation: Generation, base: String, objects: S)
        -> [SnapshotInfo] where S.Element == (name: String, size: UInt64, created: Date) {
        var out: [SnapshotInfo] = []
        for o in objects where o.name.hasPrefix(base) {
            guard let (index, layout) = ReplicaPaths.parseSnapshotName(String(o.name.dropFirst(base.count))) else { continue }
            out.append(SnapshotInfo(generation: generation, index: index, size: o.size, createdAt: o.created, layout: layout))
        }
        return out.sorted { ($0.index, $0.layout == .v04 ? 1 : 0) < ($1.index, $1.layout == .v04 ? 1 : 0) }
    }

    /// WAL segments among `objects` listed under `base`, the generation's `wal/` prefix: v0.4
    /// `<index16>/<offset16>.wal.lz4` (exactly 16 hex digits each, as upstream's object-store backends) and v0.3
    /// `<index8>_<offset8>.wal.lz4`.
    static func segments<S: Sequence>(generation: Generation, base: String, objects: S)
        -> [WALSegmentInfo] where S.Element == (name: String, size: UInt64, created: Date) {
        var out: [WALSegmentInfo] = []
        for o in objects where o.name.hasPrefix(base) {
            let parts = o.name.dropFirst(base.count).split(separator: "/", omittingEmptySubsequences: false)
            if parts.count == 2 {
                guard let index = Hex.parseStrict(parts[0], width: 16), index <= UInt64(maxWALIndex),
                      parts[1].utf8.count == 16 + ".wal.lz4".utf8.count,
                      let offset = ReplicaPaths.parseV04OffsetName(String(parts[1])) else { continue }
                out.append(WALSegmentInfo(generation: generation, index: UInt32(index), offset: offset, size: o.size,
                                          createdAt: o.created, layout: .v04))
            } else if parts.count == 1, let (index, offset) = ReplicaPaths.parseV03SegmentName(String(parts[0])) {
                out.append(WALSegmentInfo(generation: generation, index: index, offset: offset, size: o.size,
                                          createdAt: o.created, layout: .v03))
            }
        }
        return out.sorted { ($0.index, $0.offset) < ($1.index, $1.offset) }
    }
}
