/// What a sync keeps of the last frame it copied, to prove later that the real WAL still holds it there: the
/// 24-byte frame header as it is (page number, commit size, salts, and the running checksum over every frame up to
/// this one) and two XXH32 digests of the page.
///
/// Kept instead of the frame itself: an idle database held a whole frame (4 KiB or more) for this alone, and with
/// a thousand databases in one process that was 4 MB. The header's running checksum already covers the page; the
/// digests make an overwrite with other content that keeps the salts and checksums detectable as well.
public struct WALFrameFingerprint: Sendable, Equatable {
    private let header: (UInt64, UInt64, UInt64)
    private let pageDigest: UInt64
    /// Size of the frame (header and page).
    public let frameSize: Int

    /// The fingerprint of `frame` (a whole frame: 24-byte header and page; a short read gives a fingerprint that
    /// matches no whole frame).
    public init(_ frame: UnsafeRawBufferPointer) {
        var h: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &h) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: frame.prefix(walFrameHeaderSize))) }
        header = h
        let page = UnsafeRawBufferPointer(rebasing: frame[min(frame.count, walFrameHeaderSize)...])
        pageDigest = UInt64(XXH32.digest(page, seed: 0)) << 32 | UInt64(XXH32.digest(page, seed: 0x5741_4c46))
        frameSize = frame.count
    }

    /// The fingerprint of the frame in `frame`.
    public init(_ frame: [UInt8]) {
        self = frame.withUnsafeBytes { WALFrameFingerprint($0) }
    }

    public static func == (a: WALFrameFingerprint, b: WALFrameFingerprint) -> Bool {
        a.header == b.header && a.pageDigest == b.pageDigest && a.frameSize == b.frameSize
    }
}
