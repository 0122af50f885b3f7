import CCrypto

/// The primitives of the age format over OpenSSL's libcrypto: X25519 (`EVP_PKEY_derive`), HKDF-SHA256 (RFC 5869,
/// one 32-byte block, over `HMAC`), ChaCha20-Poly1305 (`EVP_chacha20_poly1305`) and `RAND_bytes`
/// (https://www.openssl.org/docs/man3.0/man7/X25519.html, …/man3/EVP_EncryptInit.html).
enum AgePrimitives {
    /// A failure of libcrypto itself (not of the data): out of memory, a broken installation.
    static func libcryptoError(_ call: String) -> ReplicationError {
        let code = ERR_get_error()
        ERR_clear_error()
        return ReplicationError(.other, "age: \(call) failed in libcrypto (error 0x\(String(code, radix: 16)))")
    }

    /// `count` bytes from the system CSPRNG.
    static func random(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else { throw libcryptoError("RAND_bytes") }
        return out
    }

    /// The X25519 public key of a 32-byte secret scalar.
    static func x25519PublicKey(secret: [UInt8]) throws -> [UInt8] {
        precondition(secret.count == 32)
        guard let key = EVP_PKEY_new_raw_private_key(rk_evp_pkey_x25519(), nil, secret, 32) else {
            throw libcryptoError("EVP_PKEY_new_raw_private_key")
        }
        defer { EVP_PKEY_free(key) }
        var out = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_get_raw_public_key(key, &out, &length) == 1, length == 32 else {
            throw libcryptoError("EVP_PKEY_get_raw_public_key")
        }
        return out
    }

    /// X25519(secret, peer); nil when the peer is a low-order point (the shared secret would be all zeros).
    static func x25519(secret: [UInt8], peer: [UInt8]) throws -> [UInt8]? {
        precondition(secret.count == 32 && peer.count == 32)
        guard let key = EVP_PKEY_new_raw_private_key(rk_evp_pkey_x25519(), nil, secret, 32) else {
            throw libcryptoError("EVP_PKEY_new_raw_private_key")
        }
        defer { EVP_PKEY_free(key) }
        guard let peerKey = EVP_PKEY_new_raw_public_key(rk_evp_pkey_x25519(), nil, peer, 32) else {
            throw libcryptoError("EVP_PKEY_new_raw_public_key")
        }
        defer { EVP_PKEY_free(peerKey) }
        guard let ctx = EVP_PKEY_CTX_new(key, nil) else { throw libcryptoError("EVP_PKEY_CTX_new") }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_derive_init(ctx) == 1, EVP_PKEY_derive_set_peer(ctx, peerKey) == 1 else {
            ERR_clear_error()
            return nil
        }
        var out = [UInt8](repeating: 0, count: 32)
        var length = 32
        // OpenSSL refuses a low-order peer (all-zero result); the explicit check covers builds that do not.
        guard EVP_PKEY_derive(ctx, &out, &length) == 1, length == 32, out.contains(where: { $0 != 0 }) else {
            ERR_clear_error()
            return nil
        }
        return out
    }

    /// HKDF-SHA256 with a 32-byte output (an empty salt is HashLen zeros, RFC 5869 §2.2).
    static func hkdf(ikm: [UInt8], salt: [UInt8], info: String) -> [UInt8] { hkdf(ikm: ikm, salt: salt, info: Array(info.utf8)) }

    /// HKDF-SHA256 with a 32-byte output and binary `info`.
    static func hkdf(ikm: [UInt8], salt: [UInt8], info: [UInt8]) -> [UInt8] {
        let prk = Digest.hmacSHA256(key: salt.isEmpty ? [UInt8](repeating: 0, count: 32) : salt, data: ikm)
        return Digest.hmacSHA256(key: prk, data: info + [1])
    }

    /// Constant-time comparison of two MACs.
    static func equalMACs(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// ChaCha20-Poly1305 (RFC 8439) under one 32-byte key, reusing one OpenSSL cipher context; used by one thread.
final class ChaChaPoly {
    static let tagSize = 16
    private let key: [UInt8]
    private let ctx: OpaquePointer

    /// A cipher under `key` (32 bytes).
    init(key: [UInt8]) throws {
        precondition(key.count == 32)
        guard let c = EVP_CIPHER_CTX_new() else { throw AgePrimitives.libcryptoError("EVP_CIPHER_CTX_new") }
        self.key = key
        ctx = c
    }

    deinit { EVP_CIPHER_CTX_free(ctx) }

    /// Encrypts `input` into `output` (`input.count + 16` bytes: ciphertext, then tag) under a 12-byte nonce.
    func seal(nonce: [UInt8], _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        precondition(nonce.count == 12 && output.count == input.count + Self.tagSize)
        guard EVP_CipherInit_ex(ctx, rk_evp_chacha20_poly1305(), nil, key, nonce, 1) == 1 else {
            throw AgePrimitives.libcryptoError("EVP_EncryptInit_ex")
        }
        let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var n: Int32 = 0
        if input.count > 0 {
            guard EVP_EncryptUpdate(ctx, out, &n, input.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                    Int32(input.count)) == 1, Int(n) == input.count else {
                throw AgePrimitives.libcryptoError("EVP_EncryptUpdate")
            }
        }
        var tail: Int32 = 0
        guard EVP_EncryptFinal_ex(ctx, out + input.count, &tail) == 1, tail == 0,
              rk_evp_aead_get_tag(ctx, Int32(Self.tagSize), out + input.count) == 1 else {
            throw AgePrimitives.libcryptoError("EVP_EncryptFinal_ex")
        }
    }

    /// Decrypts and authenticates `input` (ciphertext then tag) into `output` (`input.count - 16` bytes); false
    /// when the tag does not verify (nothing in `output` may then be used).
    func open(nonce: [UInt8], _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Bool {
        precondition(nonce.count == 12 && input.count >= Self.tagSize && output.count == input.count - Self.tagSize)
        guard EVP_CipherInit_ex(ctx, rk_evp_chacha20_poly1305(), nil, key, nonce, 0) == 1 else {
            throw AgePrimitives.libcryptoError("EVP_DecryptInit_ex")
        }
        let length = input.count - Self.tagSize
        let inp = input.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var n: Int32 = 0
        if length > 0 {
            guard EVP_DecryptUpdate(ctx, output.baseAddress!.assumingMemoryBound(to: UInt8.self), &n, inp,
                                    Int32(length)) == 1, Int(n) == length else {
                throw AgePrimitives.libcryptoError("EVP_DecryptUpdate")
            }
        }
        guard rk_evp_aead_set_tag(ctx, Int32(Self.tagSize), UnsafeMutableRawPointer(mutating: inp + length)) == 1 else {
            throw AgePrimitives.libcryptoError("EVP_CTRL_AEAD_SET_TAG")
        }
        var tail: Int32 = 0
        var scratch: UInt8 = 0
        let ok = EVP_DecryptFinal_ex(ctx, &scratch, &tail) == 1
        if !ok { ERR_clear_error() }
        return ok
    }

    /// Seals a small message (the file key in a recipient stanza).
    func seal(nonce: [UInt8], _ message: [UInt8]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: message.count + Self.tagSize)
        try message.withUnsafeBytes { m in try out.withUnsafeMutableBytes { try seal(nonce: nonce, m, into: $0) } }
        return out
    }

    /// Opens a small message; nil when it does not authenticate.
    func open(nonce: [UInt8], _ sealed: [UInt8]) throws -> [UInt8]? {
        guard sealed.count >= Self.tagSize else { return nil }
        var out = [UInt8](repeating: 0, count: sealed.count - Self.tagSize)
        let ok = try sealed.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try open(nonce: nonce, s, into: $0) } }
        return ok ? out : nil
    }
}
