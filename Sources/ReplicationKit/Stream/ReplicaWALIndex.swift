#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSQLite
import Foundation

/// What one commit of `ReplicaWAL` appended, in the terms of the wal-index.
struct WALIndexAppend: Equatable {
    /// Number (1-based) of the first appended frame in the WAL.
    var firstFrame: Int
    /// Database page number of each appended frame, in order.
    var pages: [UInt32]
    /// The last frame's commit field: the database size in pages after the commit.
    var databaseSize: UInt32
    /// The checksum chain after the last frame.
    var checksum: WALChecksum
    /// The WAL header's salts.
    var salt1: UInt32
    var salt2: UInt32
    var pageSize: Int

    /// Number of the last appended frame (the new `mxFrame`).
    var lastFrame: Int { firstFrame + pages.count - 1 }
}

/// The `-shm` wal-index of a streaming replica: publishes appended frames to readers the way SQLite's own writer
/// does, or, when the index is not in the state we expect, marks it stale so the next reader rebuilds it.
///
/// Layout (SQLite's documented WAL-index format, <https://sqlite.org/walformat.html>): the file is a sequence of
/// 32 KiB blocks. Block 0 starts with the 136-byte header: two identical 48-byte copies of the index header
/// (version, change counter, `isInit`, checksum byte order, page size, `mxFrame`, database size, the last frame's
/// checksum, the WAL salts, and a checksum of those 40 bytes) and the checkpoint information. Each block then holds
/// the page numbers of its frames (4,062 in block 0, 4,096 in the others; native 32-bit integers) and, at byte
/// 16,384, a hash table of 8,192 16-bit slots mapping a page number (`pgno * 383 mod 8192`, linear probing) to
/// the frame's 1-based position in the block.
///
/// Publishing is SQLite's own writer's sequence: while the WAL write lock is held (the applier's `BEGIN
/// IMMEDIATE`), the new frames' page numbers and hash slots are written past `mxFrame`, where no reader looks; then,
/// after a memory barrier, the header's second copy, a barrier, and the first. A reader compares both copies and
/// their checksum and retries on a torn read, so it sees either the old `mxFrame` or the new one with every entry
/// under it in place. Readers inside a read transaction keep their snapshot.
///
/// Before this, every publish marked the index stale, and the next reader re-read and re-checksummed the whole WAL
/// (SQLite's recovery): with 64 followers in one process that was most of the follower's CPU (`bench/RESULTS.md`).
///
/// The descriptor must stay open while this process has SQLite connections to the database: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, including SQLite's shm locks. The file never
/// shrinks while it is mapped: SQLite truncates a `-shm` only when it opens it with no other user, and the applier's
/// own connection is a user for as long as this object lives.
final class ReplicaWALIndex {
    static let blockSize = 32_768
    static let headerSize = 136
    static let headerCopySize = 48
    static let slots = 8_192
    static let firstBlockFrames = 4_062
    static let blockFrames = 4_096
    static let version: UInt32 = 3_007_000
    /// Offsets of the `isInit` byte in the two copies of the header.
    static let isInitOffsets: [UInt64] = [12, 60]

    private let fd: FileDescriptor
    /// Mapped 32 KiB blocks, in order, mapped on first use.
    private var blocks: [UnsafeMutableRawPointer] = []
    /// Publishes that fell back to a rebuild by the next reader (for tests and logs).
    private(set) var rebuilds = 0

    /// Opens the existing `-shm` file (SQLite creates it when a WAL-mode connection first reads).
    init(path: String) throws {
        fd = try FileDescriptor.open(path, flags: O_RDWR)
    }

    deinit { unmap() }

    /// Publishes `appended` (already durable in the WAL file) to readers. Returns false, having changed nothing a
    /// reader uses, when the index does not describe the WAL just before `appended` (never initialised, rebuilt or
    /// reset by someone else, another page size or byte order): the caller then calls `invalidate()`.
    func publish(_ appended: WALIndexAppend) throws -> Bool {
        guard !appended.pages.isEmpty, appended.databaseSize > 0 else { return false }
        guard try fd.size() >= UInt64(Self.headerSize) else { return false }
        let base = try block(0)
        guard var header = IndexHeader(base), IndexHeader(base + Self.headerCopySize) == header,
              header.isInit == 1, header.version == Self.version,
              header.bigEndianChecksum == (appended.checksum.bigEndian ? 1 : 0),
              header.encodedPageSize == IndexHeader.encode(pageSize: appended.pageSize),
              Int(header.maxFrame) == appended.firstFrame - 1
        else { return false }
        if header.maxFrame > 0 {
            guard header.salt1 == appended.salt1, header.salt2 == appended.salt2 else { return false }
        } else {
            // A WAL started afresh: SQLite's reset leaves nothing backfilled.
            guard base.load(fromByteOffset: 2 * Self.headerCopySize, as: UInt32.self) == 0 else { return false }
        }
        try removeEntries(after: appended.firstFrame - 1)
        var frame = appended.firstFrame
        for page in appended.pages {
            guard try insert(frame: frame, page: page) else { return false }
            frame += 1
        }
        header.change &+= 1
        header.maxFrame = UInt32(appended.lastFrame)
        header.databaseSize = appended.databaseSize
        header.frameChecksum = (appended.checksum.s0, appended.checksum.s1)
        header.salt1 = appended.salt1
        header.salt2 = appended.salt2
        rk_memory_barrier()
        header.store(to: base + Self.headerCopySize)
        rk_memory_barrier()
        header.store(to: base)
        return true
    }

    /// Whether every frame of the WAL has been copied into the database file (checkpoint information: the
    /// backfilled frame count equals `mxFrame`, and there are frames). A hint read without locks: SQLite's own
    /// checkpoint decides for itself.
    func isFullyBackfilled() throws -> Bool {
        guard try fd.size() >= UInt64(Self.headerSize) else { return false }
        let base = try block(0)
        let maxFrame = base.load(fromByteOffset: 16, as: UInt32.self)
        let backfilled = base.load(fromByteOffset: 2 * Self.headerCopySize, as: UInt32.self)
        return maxFrame > 0 && backfilled == maxFrame
    }

    /// Marks the wal-index stale so the next reader rebuilds it from the WAL file.
    func invalidate() throws {
        rebuilds += 1
        // A shorter file has no header yet: the next reader initialises it from the WAL anyway.
        guard try fd.size() >= UInt64(Self.headerSize) else { return }
        var zero: UInt8 = 0
        for offset in Self.isInitOffsets {
            try Syscall.retrying("write", path: fd.path) { pwrite(fd.raw, &zero, 1, off_t(offset)) }
        }
    }

    /// Unmaps the blocks and closes the descriptor (only after this process's SQLite connections to the database
    /// are closed).
    func close() throws {
        unmap()
        try fd.close()
    }

    // MARK: - Blocks

    /// Block holding frame `frame` (1-based), and the frame number just before the block's first frame.
    static func location(ofFrame frame: Int) -> (block: Int, zero: Int) {
        if frame <= firstBlockFrames { return (0, 0) }
        let b = 1 + (frame - firstBlockFrames - 1) / blockFrames
        return (b, firstBlockFrames + (b - 1) * blockFrames)
    }

    /// The page-number array and hash table of block `b`.
    private func tables(_ b: Int) throws -> (pages: UnsafeMutablePointer<UInt32>, hash: UnsafeMutablePointer<UInt16>) {
        let base = try block(b)
        let pages = (base + (b == 0 ? Self.headerSize : 0)).assumingMemoryBound(to: UInt32.self)
        let hash = (base + Self.blockFrames * 4).assumingMemoryBound(to: UInt16.self)
        return (pages, hash)
    }

    /// Maps block `b` (and those before it), extending the file with zeros first when it is shorter, as SQLite
    /// does: a reader maps only what the file already holds.
    private func block(_ b: Int) throws -> UnsafeMutableRawPointer {
        while blocks.count <= b {
            let n = blocks.count
            let start = UInt64(n * Self.blockSize), end = start + UInt64(Self.blockSize)
            let size = try fd.size()
            if size < end {
                // Real zero bytes rather than a hole, so a full disk fails here and not as SIGBUS on a store.
                let from = max(size, start)
                let zeros = [UInt8](repeating: 0, count: Int(end - from))
                try zeros.withUnsafeBytes { try fd.pwriteAll($0, at: from) }
            }
            let p = mmap(nil, Self.blockSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.raw, off_t(start))
            guard let p, p != UnsafeMutableRawPointer(bitPattern: -1) else {
                throw ReplicationError(.io, "map \(fd.path) block \(n): \(String(cString: strerror(errno)))",
                                       cause: .errno(errno))
            }
            blocks.append(p)
        }
        return blocks[b]
    }

    private func unmap() {
        for p in blocks { munmap(p, Self.blockSize) }
        blocks = []
    }

    // MARK: - Entries

    /// Removes the entries of frames after `maxFrame` left in its block (an earlier writer's abandoned frames):
    /// SQLite's own clean-up, needed only when the slot of the next frame is taken.
    private func removeEntries(after maxFrame: Int) throws {
        guard maxFrame > 0 else { return }
        let (b, zero) = Self.location(ofFrame: maxFrame)
        let limit = maxFrame - zero
        let capacity = b == 0 ? Self.firstBlockFrames : Self.blockFrames
        guard limit < capacity else { return }
        let (pages, hash) = try tables(b)
        guard pages[limit] != 0 else { return }
        for i in 0..<Self.slots where Int(hash[i]) > limit { hash[i] = 0 }
        (pages + limit).update(repeating: 0, count: capacity - limit)
    }

    /// Records that frame `frame` holds page `page`; false when the hash table is inconsistent (more collisions
    /// than entries), which SQLite would report as corruption.
    private func insert(frame: Int, page: UInt32) throws -> Bool {
        let (b, zero) = Self.location(ofFrame: frame)
        let (pages, hash) = try tables(b)
        let idx = frame - zero
        if idx == 1 {
            // The block's first frame: whatever it holds belongs to an earlier WAL.
            let capacity = b == 0 ? Self.firstBlockFrames : Self.blockFrames
            pages.update(repeating: 0, count: capacity)
            hash.update(repeating: 0, count: Self.slots)
        }
        var key = Int((page &* 383) & UInt32(Self.slots - 1))
        var collisions = idx
        while hash[key] != 0 {
            collisions -= 1
            if collisions < 0 { return false }
            key = (key + 1) & (Self.slots - 1)
        }
        pages[idx - 1] = page
        hash[key] = UInt16(idx)
        return true
    }
}

/// One copy of the wal-index header (48 bytes, native byte order; the salts are the WAL header's bytes).
struct IndexHeader: Equatable {
    var version: UInt32
    var unused: UInt32
    var change: UInt32
    var isInit: UInt8
    var bigEndianChecksum: UInt8
    var encodedPageSize: UInt16
    var maxFrame: UInt32
    var databaseSize: UInt32
    var frameChecksum: (UInt32, UInt32)
    var salt1: UInt32
    var salt2: UInt32

    static func == (a: IndexHeader, b: IndexHeader) -> Bool {
        a.version == b.version && a.unused == b.unused && a.change == b.change && a.isInit == b.isInit
            && a.bigEndianChecksum == b.bigEndianChecksum && a.encodedPageSize == b.encodedPageSize
            && a.maxFrame == b.maxFrame && a.databaseSize == b.databaseSize && a.frameChecksum == b.frameChecksum
            && a.salt1 == b.salt1 && a.salt2 == b.salt2
    }

    /// SQLite's 16-bit page size field: 65536 is stored as 1.
    static func encode(pageSize: Int) -> UInt16 { UInt16((pageSize & 0xff00) | (pageSize >> 16)) }

    /// Reads a copy; nil when its checksum does not match (torn, or never written).
    init?(_ p: UnsafeRawPointer) {
        version = p.load(fromByteOffset: 0, as: UInt32.self)
        unused = p.load(fromByteOffset: 4, as: UInt32.self)
        change = p.load(fromByteOffset: 8, as: UInt32.self)
        isInit = p.load(fromByteOffset: 12, as: UInt8.self)
        bigEndianChecksum = p.load(fromByteOffset: 13, as: UInt8.self)
        encodedPageSize = p.load(fromByteOffset: 14, as: UInt16.self)
        maxFrame = p.load(fromByteOffset: 16, as: UInt32.self)
        databaseSize = p.load(fromByteOffset: 20, as: UInt32.self)
        frameChecksum = (p.load(fromByteOffset: 24, as: UInt32.self), p.load(fromByteOffset: 28, as: UInt32.self))
        // Raw WAL header bytes: big-endian on disk.
        salt1 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
        salt2 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt32.self))
        let stored = (p.load(fromByteOffset: 40, as: UInt32.self), p.load(fromByteOffset: 44, as: UInt32.self))
        guard stored == Self.checksum(UnsafeRawBufferPointer(start: p, count: 40)) else { return nil }
    }

    /// The header's checksum: SQLite's WAL checksum over its first 40 bytes, in native byte order.
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> (UInt32, UInt32) {
        var sum = WALChecksum(bigEndian: false)  // native order on the little-endian machines we build for
        sum.update(bytes)
        return (sum.s0, sum.s1)
    }

    /// Writes this copy, with its checksum, at `p`.
    func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: version, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: unused, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: change, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: isInit, toByteOffset: 12, as: UInt8.self)
        p.storeBytes(of: bigEndianChecksum, toByteOffset: 13, as: UInt8.self)
        p.storeBytes(of: encodedPageSize, toByteOffset: 14, as: UInt16.self)
        p.storeBytes(of: maxFrame, toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: databaseSize, toByteOffset: 20, as: UInt32.self)
        p.storeBytes(of: frameChecksum.0, toByteOffset: 24, as: UInt32.self)
        p.storeBytes(of: frameChecksum.1, toByteOffset: 28, as: UInt32.self)
        p.storeBytes(of: salt1.bigEndian, toByteOffset: 32, as: UInt32.self)
        p.storeBytes(of: salt2.bigEndian, toByteOffset: 36, as: UInt32.self)
        let sum = Self.checksum(UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: 40))
        p.storeBytes(of: sum.0, toByteOffset: 40, as: UInt32.self)
        p.storeBytes(of: sum.1, toByteOffset: 44, as: UInt32.self)
    }
}
