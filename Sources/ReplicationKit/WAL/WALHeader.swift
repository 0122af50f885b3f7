/// Size of the WAL file header in bytes.
public let walHeaderSize = 32
/// Size of a WAL frame header in bytes.
public let walFrameHeaderSize = 24

/// The 32-byte SQLite WAL header (all fields big-endian).
public struct WALHeader: Equatable, Sendable {
    /// 0x377F0682 (little-endian checksums) or 0x377F0683 (big-endian checksums).
    public var magic: UInt32
    /// File format version, 3007000.
    public var version: UInt32
    /// Database page size.
    public var pageSize: UInt32
    /// Checkpoint sequence number.
    public var checkpointSequence: UInt32
    public var salt1: UInt32
    public var salt2: UInt32
    public var checksum1: UInt32
    public var checksum2: UInt32
    /// The raw 32 bytes as read.
    public var bytes: [UInt8]

    /// Whether checksum words are read big-endian.
    public var bigEndianChecksums: Bool { magic == 0x377F_0683 }

    /// Parses and validates a header (magic, header checksum, and a page size that is a power of two in 512...65536).
    public init(bytes: [UInt8]) throws {
        guard bytes.count >= walHeaderSize else {
            throw ReplicationError(.corrupt, "short wal header (n=\(bytes.count))")
        }
        let b = Array(bytes[0..<walHeaderSize])
        magic = BigEndian.u32(b, 0)
        guard magic == 0x377F_0682 || magic == 0x377F_0683 else {
            throw ReplicationError(.corrupt, "invalid wal header magic: \(String(magic, radix: 16))")
        }
        version = BigEndian.u32(b, 4)
        pageSize = BigEndian.u32(b, 8)
        checkpointSequence = BigEndian.u32(b, 12)
        salt1 = BigEndian.u32(b, 16)
        salt2 = BigEndian.u32(b, 20)
        checksum1 = BigEndian.u32(b, 24)
        checksum2 = BigEndian.u32(b, 28)
        self.bytes = b
        var s = WALChecksum(bigEndian: magic == 0x377F_0683)
        b.withUnsafeBytes { s.update(UnsafeRawBufferPointer(rebasing: $0[0..<24])) }
        guard s.s0 == checksum1 && s.s1 == checksum2 else {
            throw ReplicationError(.corrupt, "invalid wal header checksum: (\(s.s0),\(s.s1)) != (\(checksum1),\(checksum2))")
        }
        // As SQLite's own WAL recovery: any other page size makes frames the checksum (8-byte words) cannot cover.
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            throw ReplicationError(.corrupt, "invalid wal header page size: \(pageSize)")
        }
    }

    /// Size of one frame (frame header + page).
    public var frameSize: Int { walFrameHeaderSize + Int(pageSize) }

    /// The running checksum state after the header.
    public var checksumState: WALChecksum {
        WALChecksum(bigEndian: bigEndianChecksums, s0: checksum1, s1: checksum2)
    }
}

/// The 24-byte header in front of every WAL frame.
public struct WALFrameHeader: Equatable, Sendable {
    /// Page number this frame holds.
    public var pageNumber: UInt32
    /// For a commit frame, the database size in pages after the commit; 0 otherwise.
    public var commitSize: UInt32
    public var salt1: UInt32
    public var salt2: UInt32
    public var checksum1: UInt32
    public var checksum2: UInt32

    /// Parses the first 24 bytes of `bytes` starting at `offset`.
    public init(_ bytes: UnsafeRawBufferPointer, at offset: Int = 0) {
        pageNumber = BigEndian.u32(bytes, offset)
        commitSize = BigEndian.u32(bytes, offset + 4)
        salt1 = BigEndian.u32(bytes, offset + 8)
        salt2 = BigEndian.u32(bytes, offset + 12)
        checksum1 = BigEndian.u32(bytes, offset + 16)
        checksum2 = BigEndian.u32(bytes, offset + 20)
    }

    /// Whether this frame ends a transaction.
    public var isCommit: Bool { commitSize != 0 }
}

/// SQLite's WAL checksum: a running pair of 32-bit sums over 8-byte chunks.
public struct WALChecksum: Equatable, Sendable {
    public var s0: UInt32
    public var s1: UInt32
    /// Whether input words are big-endian (magic 0x377F0683).
    public let bigEndian: Bool

    /// Starts a checksum from (0, 0) or from a previous state.
    public init(bigEndian: Bool, s0: UInt32 = 0, s1: UInt32 = 0) {
        self.bigEndian = bigEndian
        self.s0 = s0
        self.s1 = s1
    }

    /// Adds `bytes` (length a multiple of 8) to the running sums.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count % 8 == 0, "WAL checksum input must be a multiple of 8 bytes")
        var a = s0, b = s1
        var i = 0
        let n = bytes.count
        if bigEndian {
            while i < n {
                a = a &+ BigEndian.u32(bytes, i) &+ b
                b = b &+ BigEndian.u32(bytes, i + 4) &+ a
                i += 8
            }
        } else {
            while i < n {
                a = a &+ bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self).littleEndian &+ b
                b = b &+ bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self).littleEndian &+ a
                i += 8
            }
        }
        s0 = a
        s1 = b
    }
}

/// Big-endian loads and stores from byte buffers.
public enum BigEndian {
    @inline(__always)
    static func u32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        b.loadUnaligned(fromByteOffset: o, as: UInt32.self).bigEndian
    }
    @inline(__always)
    static func u32(_ b: [UInt8], _ o: Int) -> UInt32 {
        b.withUnsafeBytes { u32($0, o) }
    }
    @inline(__always)
    static func u64(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt64 {
        b.loadUnaligned(fromByteOffset: o, as: UInt64.self).bigEndian
    }
    /// Appends `v` as 4 big-endian bytes.
    public static func append(_ v: UInt32, to out: inout [UInt8]) {
        out.append(UInt8(v >> 24)); out.append(UInt8((v >> 16) & 0xff))
        out.append(UInt8((v >> 8) & 0xff)); out.append(UInt8(v & 0xff))
    }
    /// Appends `v` as 8 big-endian bytes.
    public static func append(_ v: UInt64, to out: inout [UInt8]) {
        append(UInt32(v >> 32), to: &out); append(UInt32(v & 0xffff_ffff), to: &out)
    }
}
