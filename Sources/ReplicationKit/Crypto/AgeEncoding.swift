import Foundation

/// Bech32 (BIP 173, not bech32m) as age uses it for keys: `age1…` recipients and `AGE-SECRET-KEY-1…` identities.
/// Unlike BIP 173 there is no 90-character limit; a string must be all lowercase or all uppercase.
enum Bech32 {
    private static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)
    private static let generator: [UInt32] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3]

    private static func polymod(_ values: [UInt8]) -> UInt32 {
        var chk: UInt32 = 1
        for v in values {
            let top = chk >> 25
            chk = (chk & 0x1ff_ffff) << 5 ^ UInt32(v)
            for i in 0..<5 where (top >> UInt32(i)) & 1 == 1 { chk ^= generator[i] }
        }
        return chk
    }

    private static func expand(_ hrp: [UInt8]) -> [UInt8] {
        hrp.map { $0 >> 5 } + [0] + hrp.map { $0 & 31 }
    }

    /// Regroups bits (8→5 with padding, or 5→8 strictly: leftover bits must be fewer than `from` and zero).
    private static func convert(_ data: [UInt8], from: Int, to: Int, pad: Bool) -> [UInt8]? {
        var acc = 0, bits = 0
        var out: [UInt8] = []
        let maxv = (1 << to) - 1
        for v in data {
            acc = (acc << from) | Int(v)
            bits += from
            while bits >= to {
                bits -= to
                out.append(UInt8((acc >> bits) & maxv))
            }
        }
        if pad {
            if bits > 0 { out.append(UInt8((acc << (to - bits)) & maxv)) }
        } else if bits >= from || (acc << (to - bits)) & maxv != 0 {
            return nil
        }
        return out
    }

    /// Encodes `data` under `hrp`; the result has the case of `hrp` (the checksum is over its lowercase form).
    static func encode(hrp: String, data: [UInt8]) -> String {
        let lower = Array(hrp.lowercased().utf8)
        let values = convert(data, from: 8, to: 5, pad: true)!
        let mod = polymod(expand(lower) + values + [0, 0, 0, 0, 0, 0]) ^ 1
        let checksum = (0..<6).map { UInt8((mod >> UInt32(5 * (5 - $0))) & 31) }
        let s = String(decoding: lower + [UInt8(ascii: "1")] + (values + checksum).map { charset[Int($0)] }, as: UTF8.self)
        return hrp == hrp.uppercased() && hrp != hrp.lowercased() ? s.uppercased() : s
    }

    /// Decodes a bech32 string into its lowercase human-readable part and data; nil when malformed or the checksum
    /// does not match. Never echoes the input (it may be a secret key).
    static func decode(_ s: String) -> (hrp: String, data: [UInt8])? {
        guard s == s.lowercased() || s == s.uppercased() else { return nil }
        let bytes = Array(s.lowercased().utf8)
        guard bytes.allSatisfy({ $0 >= 33 && $0 <= 126 }), let sep = bytes.lastIndex(of: UInt8(ascii: "1")),
              sep >= 1, bytes.count - sep - 1 >= 6 else { return nil }
        let hrp = Array(bytes[..<sep])
        var values: [UInt8] = []
        for c in bytes[(sep + 1)...] {
            guard let v = charset.firstIndex(of: c) else { return nil }
            values.append(UInt8(v))
        }
        guard polymod(expand(hrp) + values) == 1,
              let data = convert(Array(values.dropLast(6)), from: 5, to: 8, pad: false) else { return nil }
        return (String(decoding: hrp, as: UTF8.self), data)
    }
}

/// Base64 as the age header writes it: the standard alphabet without padding, canonical (Go's
/// `RawStdEncoding.Strict`).
enum AgeBase64 {
    /// Encodes without `=` padding.
    static func encode(_ bytes: [UInt8]) -> String {
        var s = Data(bytes).base64EncodedString()
        while s.hasSuffix("=") { s.removeLast() }
        return s
    }

    /// Decodes unpadded base64; nil for padding, line breaks, bad characters or non-zero trailing bits.
    static func decode<S: StringProtocol>(_ s: S) -> [UInt8]? {
        guard s.utf8.allSatisfy({ c in
            (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2b || c == 0x2f
        }), s.utf8.count % 4 != 1 else { return nil }
        let padded = String(s) + String(repeating: "=", count: (4 - s.utf8.count % 4) % 4)
        guard let d = Data(base64Encoded: padded) else { return nil }
        let bytes = [UInt8](d)
        return encode(bytes) == String(s) ? bytes : nil
    }
}
