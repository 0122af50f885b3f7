import Foundation

extension Replica {
    /// Recomputes the replica position from the backend (REPLICATION §7.1).
    func computePosition(generation g: Generation) throws -> WALPosition {
        try client.endPosition(generation: g).position
    }

    /// Counts the decompressed bytes of an object.
    func decompressedLength(_ open: () throws -> any ByteSource) throws -> UInt64 {
        let src = try open()
        defer { src.close() }
        return try LZ4FrameDecoder { try src.read(into: $0) }.forEachChunk { _ in }
    }

    /// Uploads shadow segments from the replica position on, one replica object per WAL index.
    func uploadWAL(generation g: Generation) throws {
        guard var pos = position else { return }
        let current = log.position
        let groups = try log.segments(generation: g, fromIndex: pos.index)
        guard let first = groups.first, first.0 == pos.index, !first.1.isEmpty else {
            throw ReplicationError(.notFound, "shadow wal no longer holds \(pos)")
        }
        for (index, segs) in groups where !segs.isEmpty {
            if index > pos.index {
                guard index == pos.index + 1 else {
                    throw ReplicationError(.corrupt, "replica skipped position: replica=\(pos) next index=\(Hex.format(index, width: 16))")
                }
                pos = WALPosition(generation: g, index: index, offset: 0)
            }
            if let c = current, c.generation == g, c.index == index, pos.offset >= c.offset { break }
            guard let startAt = segs.lastIndex(where: { $0.offset <= pos.offset }) else {
                throw ReplicationError(.notFound, "shadow wal no longer holds \(pos)")
            }
            let pending = Array(segs[startAt...])
            if !pending.contains(where: { $0.offset >= pos.offset }) {
                // The position is inside or at the end of the last segment: measure it to know which.
                let end = pending[0].offset + (try pending[0].length
                    ?? decompressedLength { FileByteSource(try FileDescriptor.openForReading(pending[0].path)) })
                if end == pos.offset { continue }
                if end < pos.offset {
                    throw ReplicationError(.conflict, "replica is ahead of the local shadow wal at \(pos)")
                }
            }
            pos = try uploadIndex(generation: g, index: index, from: pos.offset, segments: pending)
            position = pos
            publishPosition()
        }
    }

    /// Concatenates shadow segments (skipping bytes before `from`) into one LZ4 frame stored at (index, from).
    ///
    /// A segment the upload starts at or before is copied block by block (`ShadowLog.copyBlocks`): its blocks are
    /// independent, so they go into the object's frame as they are, without being decoded and encoded again. Only
    /// a segment the upload starts inside is decoded, and its bytes from `from` on encoded. The object's frame has
    /// no content checksum (one cannot be computed over blocks never decoded); the WAL frames inside carry SQLite's
    /// checksum chain, which every restore verifies.
    ///
    /// Every segment is flushed to stable storage (file, then directories) before the object is committed, so
    /// the replica never holds WAL bytes that a machine crash could take from the shadow WAL.
    private func uploadIndex(generation g: Generation, index: UInt32, from: UInt64,
                             segments: [ShadowSegment]) throws -> WALPosition {
        var end = segments[0].offset
        var written: UInt64 = 0
        let start = WALPosition(generation: g, index: index, offset: from)
        do {
            _ = try client.writeWALSegment(position: start) { sinkNow in
                try withoutActuallyEscaping(sinkNow) { sink in
                    let encoder = try LZ4FrameEncoder(contentChecksum: false, sink: sink)
                    var buf: [UInt8] = []
                    for s in segments {
                        guard s.offset == end else {
                            throw ReplicationError(.corrupt, "non-contiguous segment: expected=\(Hex.format(end, width: 16)) current=\(Hex.format(s.offset, width: 16))")
                        }
                        if s.offset >= from, let n = try log.copyBlocks(of: s, durable: true, to: encoder) {
                            written += n
                            end = s.offset + n
                            continue
                        }
                        let decoder = try log.open(s, durable: true)
                        if buf.isEmpty { buf = [UInt8](repeating: 0, count: 256 * 1024) }
                        var segOffset = s.offset
                        while true {
                            let n = try buf.withUnsafeMutableBytes { try decoder.read(into: $0) }
                            if n == 0 { break }
                            let chunkEnd = segOffset + UInt64(n)
                            if chunkEnd > from {
                                let skip = from > segOffset ? Int(from - segOffset) : 0
                                try buf.withUnsafeBytes { try encoder.write(UnsafeRawBufferPointer(rebasing: $0[skip..<n])) }
                                written += UInt64(n - skip)
                            }
                            segOffset = chunkEnd
                        }
                        end = segOffset
                    }
                    try log.syncDirectories(of: segments)
                    try encoder.finish()
                }
            }
        } catch {
            throw (error as? ReplicationError)?.wrapped("write index segments: index=\(Hex.format(index, width: 16))") ?? error
        }
        metrics.addWALBytes(written)
        logger.info("wal segment written: \(start) sz=\(written)")
        return WALPosition(generation: g, index: index, offset: end)
    }
}
