import CLZ4

/// Copies the blocks of one LZ4 frame into an `LZ4FrameEncoder` without decoding them (or, with `verify`, decoding
/// them only to check the frame's content checksum and count its bytes).
///
/// A replica object is one frame made of several shadow segments, each a frame of its own. Their blocks are
/// independent (FLG bit 5), so they can be put one after the other in the object's frame as they are; only the
/// content checksum of each segment cannot be carried over, so the object's frame has none. Readers that stop
/// after the first of several concatenated frames (upstream 0.3.13's) see the whole object.
public enum LZ4BlockCopier {
    /// A frame whose blocks cannot be copied (linked blocks, block checksums, a dictionary, not an LZ4 frame at
    /// all): thrown before anything was appended, so the caller can decode the frame instead.
    public struct NotCopyable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Appends the blocks of the one frame `source` holds to `encoder` (which must be without content checksum)
    /// and returns the frame's decoded length when `verify`, else nil.
    ///
    /// With `verify` every block is decoded into a scratch buffer and the frame's content checksum, when it has
    /// one, is checked: for bytes read back from a file. Without, only the frame's structure is checked (header
    /// checksum, block sizes within the frame's maximum, the end mark, nothing after the frame): for bytes that
    /// never left this process's memory since they were encoded. Throws `NotCopyable` before appending anything,
    /// `LZ4Error` for a damaged frame (possibly after appending some of its blocks).
    public static func copyFrame(from source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int,
                                 to encoder: LZ4FrameEncoder, verify: Bool) throws -> UInt64? {
        var reader = PullReader(source: source)
        defer { reader.deallocate() }
        guard let head = try reader.take(6) else { throw NotCopyable(description: "shorter than an lz4 frame header") }
        let magic = head.loadUnaligned(as: UInt32.self).littleEndian
        let flg = head[4], bd = head[5]
        guard magic == 0x184D_2204 else { throw NotCopyable(description: "not an lz4 frame") }
        // Version 01, independent blocks, no block checksum, no dictionary, reserved bits clear.
        guard flg & 0xC0 == 0x40, flg & 0x20 != 0, flg & 0x10 == 0, flg & 0x03 == 0, bd & 0x8F == 0,
              (4...7).contains(bd >> 4) else {
            throw NotCopyable(description: String(format: "lz4 frame flags %02X %02X", flg, bd))
        }
        let hasContentSize = flg & 0x08 != 0, hasChecksum = flg & 0x04 != 0
        let maxBlock = 1 << (8 + 2 * Int(bd >> 4))
        var descriptor = [flg, bd]
        var contentSize: UInt64?
        if hasContentSize {
            guard let size = try reader.take(8) else { throw LZ4Error.truncated }
            descriptor += Array(size)
            contentSize = size.loadUnaligned(as: UInt64.self).littleEndian
        }
        guard let hc = try reader.take(1) else { throw LZ4Error.truncated }
        let expected = descriptor.withUnsafeBytes { UInt8(truncatingIfNeeded: XXH32.digest($0) >> 8) }
        guard hc[0] == expected else { throw LZ4Error("corrupt lz4 frame: ERROR_headerChecksum_invalid") }

        var scratch: UnsafeMutableRawBufferPointer?
        defer { scratch?.deallocate() }
        var checksum = XXH32()
        var decoded: UInt64 = 0
        while true {
            guard let word = try reader.take(4) else { throw LZ4Error.truncated }
            let sizeWord = word.loadUnaligned(as: UInt32.self).littleEndian
            if sizeWord == 0 { break }
            let size = Int(sizeWord & 0x7FFF_FFFF)
            guard size <= maxBlock else {
                throw LZ4Error("corrupt lz4 frame: block of \(size) bytes in a frame of \(maxBlock)-byte blocks")
            }
            guard let block = try reader.take(size) else { throw LZ4Error.truncated }
            if size == 0 { continue }  // an empty stored block: nothing to carry over
            if verify {
                let plain: UnsafeRawBufferPointer
                if sizeWord & 0x8000_0000 != 0 {
                    plain = block
                } else {
                    if scratch == nil { scratch = .allocate(byteCount: maxBlock, alignment: 16) }
                    let n = LZ4_decompress_safe(block.baseAddress!.assumingMemoryBound(to: CChar.self),
                                                scratch!.baseAddress!.assumingMemoryBound(to: CChar.self),
                                                Int32(size), Int32(maxBlock))
                    guard n >= 0 else { throw LZ4Error("corrupt lz4 frame: ERROR_decompressionFailed") }
                    plain = UnsafeRawBufferPointer(rebasing: scratch![0..<Int(n)])
                }
                if hasChecksum { checksum.update(plain) }
                decoded += UInt64(plain.count)
            }
            try encoder.appendBlock(sizeWord: sizeWord, data: block)
        }
        if verify, let contentSize, contentSize != decoded {
            throw LZ4Error("corrupt lz4 frame: ERROR_frameSize_wrong")
        }
        if hasChecksum {
            guard let sum = try reader.take(4) else { throw LZ4Error.truncated }
            if verify && sum.loadUnaligned(as: UInt32.self).littleEndian != checksum.finish() {
                throw LZ4Error("corrupt lz4 frame: ERROR_contentChecksum_invalid")
            }
        }
        guard try reader.take(1) == nil else { throw LZ4Error("corrupt lz4 frame: data after the end of the frame") }
        return verify ? decoded : nil
    }

    /// Buffered reads of exact sizes from a pull source; a view returned by `take` is valid until the next call.
    private struct PullReader {
        let source: (UnsafeMutableRawBufferPointer) throws -> Int
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        var start = 0, end = 0, atEOF = false

        init(source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) { self.source = source }

        func deallocate() { buffer.deallocate() }

        /// The next `count` bytes, or nil when the source ends first.
        mutating func take(_ count: Int) throws -> UnsafeRawBufferPointer? {
            while end - start < count {
                if atEOF { return nil }
                if start > 0 {
                    // Move what is left to the front; grow when the request does not fit.
                    (buffer.baseAddress!).copyMemory(from: buffer.baseAddress! + start, byteCount: end - start)
                    end -= start
                    start = 0
                }
                if buffer.count < count {
                    let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
                    bigger.baseAddress!.copyMemory(from: buffer.baseAddress!, byteCount: end)
                    buffer.deallocate()
                    buffer = bigger
                }
                let n = try source(UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
                precondition(n >= 0 && n <= buffer.count - end, "LZ4BlockCopier source returned \(n)")
                if n == 0 { atEOF = true }
                end += n
            }
            defer { start += count }
            return UnsafeRawBufferPointer(rebasing: buffer[start..<start + count])
        }
    }
}
