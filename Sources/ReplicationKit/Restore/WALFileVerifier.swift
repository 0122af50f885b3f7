import Foundation

/// Checks a downloaded WAL file before SQLite sees it, because SQLite silently ignores everything after a bad frame.
enum WALFileVerifier {
    /// Size of the SQLite database header that holds the page size.
    static let databaseHeaderSize = 100

    /// The page size recorded in a database header (bytes 16–17, big-endian; the value 1 means 65536).
    static func databasePageSize(header: [UInt8]) throws -> Int {
        guard header.count >= databaseHeaderSize,
              header.starts(with: Array("SQLite format 3".utf8) + [0]) else {
            throw ReplicationError(.corrupt, "not an sqlite database (invalid header)")
        }
        let raw = Int(header[16]) << 8 | Int(header[17])
        let size = raw == 1 ? 65536 : raw
        guard size >= 512, size <= 65536, size & (size - 1) == 0 else {
            throw ReplicationError(.corrupt, "invalid database page size \(raw)")
        }
        return size
    }

    /// Verifies the WAL file at `path` and returns its number of frames.
    ///
    /// Checks the header (magic, checksum, version), that its page size is `pageSize`, that the length is
    /// 32 + k·frameSize, that every frame carries the header's salts and continues the checksum chain, and that
    /// the last frame commits a transaction. A header-only file (no frames) is valid.
    ///
    /// `objectAt` names the replica object that holds a given WAL offset: a frame that breaks the chain is named
    /// with it. (Replica objects made of copied blocks carry no LZ4 content checksum, so a damaged byte in one
    /// is found here, by the frames' checksums, rather than by the decoder.)
    static func verify(path: String, pageSize: Int, objectAt: ((UInt64) -> String?)? = nil) throws -> Int {
        let fd = try FileDescriptor.openForReading(path)
        defer { try? fd.close() }
        let size = try fd.size()
        let headerBytes = try fd.pread(count: walHeaderSize, at: 0)
        guard headerBytes.count == walHeaderSize else {
            throw ReplicationError(.corrupt, "wal file too short (\(size) bytes)")
        }
        let header = try WALHeader(bytes: headerBytes)
        guard header.version == 3_007_000 else {
            throw ReplicationError(.corrupt, "unsupported wal format version \(header.version)")
        }
        guard Int(header.pageSize) == pageSize else {
            throw ReplicationError(.corrupt, "wal page size \(header.pageSize) does not match database page size \(pageSize)")
        }
        let frameSize = header.frameSize
        let body = size - UInt64(walHeaderSize)
        guard body % UInt64(frameSize) == 0 else {
            let last = objectAt?(size - 1).map { " (the last object: \($0))" } ?? ""
            throw ReplicationError(.corrupt, "wal size \(size) is not 32 + a whole number of \(frameSize)-byte frames\(last)")
        }
        let frameCount = Int(body / UInt64(frameSize))
        var reader = WALFrameReader(pageSize: pageSize, chain: WALFrameChain(header: header, checksum: header.checksumState))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: frameSize, alignment: 8)
        defer { buffer.deallocate() }
        var offset = UInt64(walHeaderSize)
        while reader.frames < frameCount {
            let frameStart = offset
            let next: WALFrameHeader?
            do {
                next = try reader.next(into: buffer, { chunk in
                    let n = try fd.pread(into: chunk, at: offset)
                    offset += UInt64(n)
                    return n
                })
            } catch let e as ReplicationError {
                guard let object = objectAt?(frameStart) else { throw e }
                throw ReplicationError(e.code, "\(e.message) (wal offset \(frameStart), in \(object))", cause: e.cause)
            }
            guard next != nil else {
                throw ReplicationError(.corrupt, "frame \(reader.frames + 1) truncated (file changed while verifying)")
            }
        }
        let lastCommit = reader.committedFrames
        guard lastCommit == frameCount else {
            throw ReplicationError(.corrupt, "wal does not end with a commit frame (\(frameCount) frames, last commit at frame \(lastCommit))")
        }
        return frameCount
    }
}
