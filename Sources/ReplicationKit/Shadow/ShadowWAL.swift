#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One shadow WAL segment on disk.
public struct ShadowSegment: Sendable, Equatable {
    public var index: UInt32
    public var offset: UInt64
    /// Path of the compressed segment file.
    public var path: String
    /// The file's content, when the segment was just written and is small (kept for live stream clients).
    public var compressed: [UInt8]? = nil
    /// The WAL bytes it holds (its decompressed length), when this process wrote it.
    public var length: UInt64? = nil

    /// Segments are the same when they name the same file (the in-memory copy is a cache).
    public static func == (a: ShadowSegment, b: ShadowSegment) -> Bool {
        a.index == b.index && a.offset == b.offset && a.path == b.path
    }
}

/// The local, LZ4-compressed staging copy of the WAL (`<db>-litestream/generations/<g>/wal/<i>/<o>.wal.lz4`).
///
/// Methods block; they run on the database's serial queue.
public struct ShadowWAL: Sendable {
    /// The metadata directory paths.
    public let meta: MetaDirectory
    /// Mode for files created under the metadata directory.
    public var fileMode: mode_t = 0o600
    /// Mode for directories created under the metadata directory.
    public var directoryMode: mode_t = 0o700

    /// Largest compressed segment whose bytes `writeSegment` returns along with the file.
    static let inMemoryLimit = 256 * 1024

    /// Creates the shadow WAL view for a database.
    public init(meta: MetaDirectory) { self.meta = meta }

    /// Reads the current generation from the `generation` file (nil when absent or malformed).
    public func currentGeneration() throws -> Generation? {
        guard let bytes = try FileSystem.readSmallFile(meta.generationFile) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return Generation(name: text)
    }

    /// Writes the `generation` file atomically (temp file, fsync, rename, directory fsync).
    public func setCurrentGeneration(_ g: Generation) throws {
        try FileSystem.makeDirectories(meta.root, mode: directoryMode)
        try FileSystem.writeAtomically(meta.generationFile, mode: fileMode) { fd in
            try fd.writeAll(Array((g.name + "\n").utf8))
        }
    }

    /// Deletes the `generation` file so the next sync starts a new generation.
    public func clearGeneration() throws {
        try FileSystem.remove(meta.generationFile)
    }

    /// Index numbers present in a generation, ascending.
    public func indexes(_ g: Generation) throws -> [UInt32] {
        try FileSystem.list(meta.walDir(g)).compactMap { name -> UInt32? in
            guard let v = Hex.parse(Substring(name)), v <= UInt64(maxWALIndex) else { return nil }
            return UInt32(v)
        }.sorted()
    }

    /// Segments of one index, sorted by offset (lenient names; `.tmp` files are ignored).
    public func segments(_ g: Generation, index: UInt32) throws -> [ShadowSegment] {
        let dir = meta.indexDir(g, index)
        return try FileSystem.list(dir).compactMap { name -> ShadowSegment? in
            guard let off = ReplicaPaths.parseV04OffsetName(name) else { return nil }
            return ShadowSegment(index: index, offset: off, path: dir + "/" + name)
        }.sorted { $0.offset < $1.offset }
    }

    /// Writes a segment from `bytes` (raw WAL bytes starting at `offset`): compress to `.tmp`, rename. With
    /// `keepCopy` the returned segment also carries the compressed bytes when they are small.
    ///
    /// Durability is deferred: a replica fsyncs segments (`openSegment(_:durable:)`) before it uploads them.
    public func writeSegment(_ g: Generation, index: UInt32, offset: UInt64, keepCopy: Bool = false,
                             body: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> ShadowSegment {
        let dir = meta.indexDir(g, index)
        try FileSystem.makeDirectories(dir, mode: directoryMode)
        let path = meta.segmentPath(g, index, offset)
        let tmp = path + ".tmp"
        let fd = try FileDescriptor.create(tmp, mode: fileMode)
        // Small segments are also kept in memory for live stream clients (saves them opening the file).
        var copy: [UInt8]? = keepCopy ? [] : nil
        var length: UInt64 = 0
        do {
            // With content checksum, although every byte was just verified against SQLite's checksum chain: the
            // readers of a segment that do not check that chain rely on it. A live follower (`StreamApplier`)
            // takes the frames of a streamed segment and writes its own salts and checksums, and a replica that
            // uploads a segment read back from its file (after a restart) copies its blocks; the XXH32 is what
            // catches a segment damaged on disk or on the way.
            let encoder = try LZ4FrameEncoder { bytes in
                try fd.writeAll(bytes)
                if copy != nil {
                    if copy!.count + bytes.count <= Self.inMemoryLimit { copy!.append(contentsOf: bytes) } else { copy = nil }
                }
            }
            try body { try encoder.write($0) }
            try encoder.finish()
            length = encoder.bytesIn
            try fd.close()
            try FileSystem.rename(tmp, to: path)
        } catch {
            try? fd.close()
            try? FileSystem.remove(tmp)
            throw error
        }
        return ShadowSegment(index: index, offset: offset, path: path, compressed: copy, length: length)
    }

    /// Opens a segment for streaming decompression; with `durable`, flushes the file to stable storage first
    /// (its directory is flushed by `syncDirectories`). With the segment's bytes at hand (`s.compressed`, kept
    /// in memory since this process wrote them), those are decoded instead of the file, without verifying the
    /// checksum again; a `durable` file is still flushed.
    public func openSegment(_ s: ShadowSegment, durable: Bool = false) throws -> LZ4FrameDecoder {
        let fd = s.compressed == nil || durable ? try FileDescriptor.openForReading(s.path) : nil
        if durable { try fd!.sync() }
        guard let bytes = s.compressed else { return try LZ4FrameDecoder { buf in try fd!.read(into: buf) } }
        try fd?.close()
        var at = 0
        return try LZ4FrameDecoder(verifyChecksums: false) { buf in
            let n = min(buf.count, bytes.count - at)
            bytes.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
            at += n
            return n
        }
    }

    /// Appends the segment's LZ4 blocks as they are to `encoder` (a frame without content checksum) and returns the
    /// WAL bytes they hold; with `durable`, flushes the file to stable storage first. Bytes kept in memory are
    /// copied without decoding (as `openSegment` decodes them without verifying); a file's blocks are decoded
    /// once to check its content checksum and measure it. nil, with nothing appended, when the segment's frame
    /// is not one whose blocks can be copied (`LZ4BlockCopier.NotCopyable`): decode it with `openSegment` instead.
    public func copyBlocks(of s: ShadowSegment, durable: Bool, to encoder: LZ4FrameEncoder) throws -> UInt64? {
        let fd = s.compressed == nil || durable ? try FileDescriptor.openForReading(s.path) : nil
        defer { try? fd?.close() }
        if durable { try fd!.sync() }
        do {
            guard let bytes = s.compressed else {
                return try LZ4BlockCopier.copyFrame(from: { try fd!.read(into: $0) }, to: encoder, verify: true)
            }
            var at = 0
            let measured = try LZ4BlockCopier.copyFrame(from: { buf in
                let n = min(buf.count, bytes.count - at)
                bytes.withUnsafeBytes { buf.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
                at += n
                return n
            }, to: encoder, verify: s.length == nil)
            return s.length ?? measured
        } catch is LZ4BlockCopier.NotCopyable {
            return nil
        } catch let error as LZ4Error {
            throw LZ4Error("shadow segment \(s.path): \(error.message)")
        }
    }

    /// Flushes the directories of the given segments to stable storage.
    public func syncDirectories(of segments: [ShadowSegment]) throws {
        for d in Set(segments.map { ($0.path as NSString).deletingLastPathComponent }).sorted() {
            try FileSystem.syncDirectory(d)
        }
    }

    /// Decompresses a whole segment (segments are bounded by the WAL size).
    public func readSegment(_ s: ShadowSegment) throws -> [UInt8] {
        var out: [UInt8] = []
        try openSegment(s).forEachChunk { out.append(contentsOf: $0) }
        return out
    }

    /// Deletes every `.tmp` file under the metadata directory (leftovers of a crash).
    public func removeTemporaryFiles() throws {
        func walk(_ dir: String) throws {
            for name in try FileSystem.list(dir) {
                let path = dir + "/" + name
                guard let info = try FileSystem.info(path) else { continue }
                if info.isDirectory { try walk(path) } else if name.hasSuffix(".tmp") { try FileSystem.remove(path) }
            }
        }
        try walk(meta.root)
    }

    /// Deletes every generation directory except `keep`.
    public func removeGenerations(except keep: Generation?) throws -> [String] {
        var removed: [String] = []
        for name in try FileSystem.list(meta.generationsDir) where name != keep?.name {
            try FileSystem.removeTree(meta.generationsDir + "/" + name)
            removed.append(name)
        }
        return removed
    }

    /// Deletes one shadow index directory.
    public func removeIndex(_ g: Generation, _ index: UInt32) throws {
        try FileSystem.removeTree(meta.indexDir(g, index))
    }
}
