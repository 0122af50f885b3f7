import CCrypto
import Foundation

/// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signatures over OpenSSL's libcrypto, for Google service-account JWTs.
///
/// The C calls are `d2i_AutoPrivateKey` (PKCS#8 or PKCS#1 DER), `EVP_DigestSignInit`/`EVP_DigestSign` and, for
/// tests, `d2i_PublicKey`/`EVP_DigestVerify` (https://www.openssl.org/docs/man3.0/man3/EVP_DigestSignInit.html).
/// Error texts never contain key material.
final class RS256Key: @unchecked Sendable {
    // @unchecked: the EVP_PKEY is immutable after loading and OpenSSL 3 allows concurrent signing with one key.
    private let pkey: OpaquePointer

    /// Loads a PEM private key (`-----BEGIN PRIVATE KEY-----` PKCS#8 as Google issues, or `BEGIN RSA PRIVATE KEY`).
    /// - Throws: `ReplicationError(.config)` naming `what` (never the key) when it does not parse.
    init(privateKeyPEM pem: String, what: String) throws {
        guard let der = Self.pemBody(pem) else {
            throw ReplicationError(.config, "\(what): private_key is not a PEM private key")
        }
        let key: OpaquePointer? = der.withUnsafeBufferPointer { buf -> OpaquePointer? in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_AutoPrivateKey(nil, &p, buf.count)
        }
        guard let key else {
            ERR_clear_error()
            throw ReplicationError(.config, "\(what): private_key cannot be read by OpenSSL (not an unencrypted RSA key)")
        }
        pkey = key
    }

    /// Loads a PKCS#1 `RSAPublicKey` (DER) for verification.
    init?(publicKeyPKCS1DER der: [UInt8]) {
        let key: OpaquePointer? = der.withUnsafeBufferPointer { buf -> OpaquePointer? in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_PublicKey(EVP_PKEY_RSA, nil, &p, buf.count)
        }
        guard let key else { ERR_clear_error(); return nil }
        pkey = key
    }

    deinit { EVP_PKEY_free(pkey) }

    /// The DER bytes inside a PEM block (headers and whitespace removed), nil when it is not base64 PEM.
    static func pemBody(_ pem: String) -> [UInt8]? {
        let lines = pem.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN ") }),
              let end = lines[begin...].firstIndex(where: { $0.hasPrefix("-----END ") }), end > begin + 1 else { return nil }
        guard let data = Data(base64Encoded: lines[(begin + 1)..<end].joined()) else { return nil }
        return [UInt8](data)
    }

    /// The RS256 signature of `message`.
    /// - Throws: `ReplicationError(.other)` when OpenSSL refuses (e.g. not an RSA key).
    func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, rk_evp_sha256(), nil, pkey) == 1 else {
            ERR_clear_error()
            throw ReplicationError(.other, "RS256: EVP_DigestSignInit failed (is the key RSA?)")
        }
        var length = 0
        guard message.withUnsafeBufferPointer({ EVP_DigestSign(ctx, nil, &length, $0.baseAddress, $0.count) }) == 1 else {
            ERR_clear_error()
            throw ReplicationError(.other, "RS256: EVP_DigestSign failed")
        }
        var sig = [UInt8](repeating: 0, count: length)
        let rc = message.withUnsafeBufferPointer { m in
            sig.withUnsafeMutableBufferPointer { EVP_DigestSign(ctx, $0.baseAddress, &length, m.baseAddress, m.count) }
        }
        guard rc == 1 else {
            ERR_clear_error()
            throw ReplicationError(.other, "RS256: EVP_DigestSign failed")
        }
        return Array(sig.prefix(length))
    }

    /// Whether `signature` is a valid RS256 signature of `message` under this key.
    func verify(_ message: [UInt8], signature: [UInt8]) -> Bool {
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, rk_evp_sha256(), nil, pkey) == 1 else { ERR_clear_error(); return false }
        let rc = message.withUnsafeBufferPointer { m in
            signature.withUnsafeBufferPointer { EVP_DigestVerify(ctx, $0.baseAddress, $0.count, m.baseAddress, m.count) }
        }
        ERR_clear_error()
        return rc == 1
    }
}

/// Base64url without padding (RFC 7515 §2), as JWTs use.
enum Base64URL {
    /// Encodes `bytes`.
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Decodes a base64url string (padding optional); nil when malformed.
    static func decode(_ s: some StringProtocol) -> [UInt8]? {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        t += String(repeating: "=", count: (4 - t.count % 4) % 4)
        return Data(base64Encoded: t).map { [UInt8]($0) }
    }
}

/// A Google service-account JWT assertion (RFC 7523) for the OAuth2 `jwt-bearer` grant.
enum ServiceAccountJWT {
    /// `header.claims.signature`, with claims `iss`, `scope`, `aud`, `iat`, `exp = iat + 3600` (and `kid` in the
    /// header when the key file names one).
    static func make(email: String, scope: String, audience: String, keyID: String?, issuedAt: Date,
                     key: RS256Key) throws -> String {
        var header: [String: String] = ["alg": "RS256", "typ": "JWT"]
        if let k = keyID, !k.isEmpty { header["kid"] = k }
        let iat = Int(issuedAt.timeIntervalSince1970)
        let claims: [String: Any] = ["iss": email, "scope": scope, "aud": audience, "iat": iat, "exp": iat + 3600]
        let h = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes])
        let c = try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys, .withoutEscapingSlashes])
        let input = Base64URL.encode([UInt8](h)) + "." + Base64URL.encode([UInt8](c))
        return input + "." + Base64URL.encode(try key.sign(Array(input.utf8)))
    }
}
