/// Streaming XXH32 (the checksum of the LZ4 frame format: header, block and content checksums).
///
/// liblz4 keeps its copy private, and the parallel snapshot decoder has to hash the decoded content in order
/// itself. Not thread-safe: one owner at a time.
struct XXH32 {
    private static let p1: UInt32 = 2_654_435_761
    private static let p2: UInt32 = 2_246_822_519
    private static let p3: UInt32 = 3_266_489_917
    private static let p4: UInt32 = 668_265_263
    private static let p5: UInt32 = 374_761_393

    private let seed: UInt32
    private var v1: UInt32, v2: UInt32, v3: UInt32, v4: UInt32
    private var total: UInt64 = 0
    /// Up to 15 bytes not yet consumed by a 16-byte stripe.
    private var tail: (UInt64, UInt64) = (0, 0)
    private var tailCount = 0

    init(seed: UInt32 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
    }

    /// The digest of `bytes` in one call.
    static func digest(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        var h = XXH32(seed: seed)
        h.update(bytes)
        return h.finish()
    }

    @inline(__always) private static func round(_ acc: UInt32, _ input: UInt32) -> UInt32 {
        let a = acc &+ input &* p2
        return ((a << 13) | (a >> 19)) &* p1
    }

    @inline(__always) private static func rotl(_ x: UInt32, _ r: UInt32) -> UInt32 { (x << r) | (x >> (32 - r)) }

    /// Feeds `bytes`.
    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return }
        var n = bytes.count
        total += UInt64(n)
        if tailCount > 0 {
            let take = min(16 - tailCount, n)
            withUnsafeMutableBytes(of: &tail) { t in
                (t.baseAddress! + tailCount).copyMemory(from: p, byteCount: take)
            }
            tailCount += take
            p += take
            n -= take
            if tailCount < 16 { return }
            withUnsafeBytes(of: tail) { t in stripe(t.baseAddress!) }
            tailCount = 0
        }
        var a = v1, b = v2, c = v3, d = v4
        while n >= 16 {
            a = Self.round(a, UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
            b = Self.round(b, UInt32(littleEndian: (p + 4).loadUnaligned(as: UInt32.self)))
            c = Self.round(c, UInt32(littleEndian: (p + 8).loadUnaligned(as: UInt32.self)))
            d = Self.round(d, UInt32(littleEndian: (p + 12).loadUnaligned(as: UInt32.self)))
            p += 16
            n -= 16
        }
        v1 = a; v2 = b; v3 = c; v4 = d
        if n > 0 {
            withUnsafeMutableBytes(of: &tail) { t in t.baseAddress!.copyMemory(from: p, byteCount: n) }
            tailCount = n
        }
    }

    private mutating func stripe(_ p: UnsafeRawPointer) {
        v1 = Self.round(v1, UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
        v2 = Self.round(v2, UInt32(littleEndian: (p + 4).loadUnaligned(as: UInt32.self)))
        v3 = Self.round(v3, UInt32(littleEndian: (p + 8).loadUnaligned(as: UInt32.self)))
        v4 = Self.round(v4, UInt32(littleEndian: (p + 12).loadUnaligned(as: UInt32.self)))
    }

    /// The digest of everything fed so far (the state is left unchanged).
    func finish() -> UInt32 {
        var h: UInt32
        if total >= 16 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
        } else {
            h = seed &+ Self.p5
        }
        h = h &+ UInt32(truncatingIfNeeded: total)
        withUnsafeBytes(of: tail) { t in
            var i = 0
            while i + 4 <= tailCount {
                h = h &+ UInt32(littleEndian: (t.baseAddress! + i).loadUnaligned(as: UInt32.self)) &* Self.p3
                h = Self.rotl(h, 17) &* Self.p4
                i += 4
            }
            while i < tailCount {
                h = h &+ UInt32(t[i]) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                i += 1
            }
        }
        h ^= h >> 15
        h = h &* Self.p2
        h ^= h >> 13
        h = h &* Self.p3
        h ^= h >> 16
        return h
    }
}
