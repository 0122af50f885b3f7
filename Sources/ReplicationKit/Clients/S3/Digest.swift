import CCrypto

/// Incremental message digests (SHA-256, MD5) and HMAC-SHA256 over OpenSSL's libcrypto.
///
/// The corresponding C functions are `EVP_DigestInit_ex`, `EVP_DigestUpdate`, `EVP_DigestFinal_ex` and `HMAC`
/// (https://www.openssl.org/docs/man3.0/man3/EVP_DigestInit.html).
final class Digest {
    /// Which algorithm a digest computes.
    enum Algorithm { case sha256, md5 }

    private let ctx: OpaquePointer

    /// Starts a digest; allocation failure is fatal (OpenSSL only fails here when out of memory).
    init(_ algorithm: Algorithm) {
        guard let c = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        let md = algorithm == .sha256 ? rk_evp_sha256() : rk_evp_md5()
        precondition(EVP_DigestInit_ex(c, md, nil) == 1, "EVP_DigestInit_ex failed")
        ctx = c
    }

    deinit { EVP_MD_CTX_free(ctx) }

    /// Adds bytes to the digest.
    func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(ctx, bytes.baseAddress, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    /// Adds bytes to the digest.
    func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// Ends the digest and returns it; call once.
    func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var n: UInt32 = 0
        precondition(EVP_DigestFinal_ex(ctx, &out, &n) == 1, "EVP_DigestFinal_ex failed")
        return Array(out.prefix(Int(n)))
    }

    /// SHA-256 of `bytes`.
    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        let d = Digest(.sha256)
        d.update(bytes)
        return d.finish()
    }

    /// SHA-256 of the UTF-8 bytes of `s`.
    static func sha256(_ s: String) -> [UInt8] { sha256(Array(s.utf8)) }

    /// MD5 of `bytes` (only for S3's `Content-MD5` integrity header).
    static func md5(_ bytes: [UInt8]) -> [UInt8] {
        let d = Digest(.md5)
        d.update(bytes)
        return d.finish()
    }

    /// HMAC-SHA256 of `data` under `key`.
    static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var n: UInt32 = 0
        let r = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                HMAC(rk_evp_sha256(), k.baseAddress, Int32(k.count),
                     d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count, &out, &n)
            }
        }
        precondition(r != nil && n == 32, "HMAC-SHA256 failed")
        return out
    }

    /// Lowercase hex of `bytes`.
    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Standard base64 of `bytes` (for `Content-MD5`).
    static func base64(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out = [UInt8]()
        var i = 0
        while i < bytes.count {
            let b0 = Int(bytes[i]), b1 = i + 1 < bytes.count ? Int(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? Int(bytes[i + 2]) : 0
            out.append(table[b0 >> 2])
            out.append(table[((b0 & 3) << 4) | (b1 >> 4)])
            out.append(i + 1 < bytes.count ? table[((b1 & 0xf) << 2) | (b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? table[b2 & 0x3f] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// SHA-256 of the empty payload, hex.
    static let emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}
