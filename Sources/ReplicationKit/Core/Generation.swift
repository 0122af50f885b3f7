import Foundation

/// A generation: one unbroken chain of "snapshot + every WAL byte after it", named by 16 lowercase hex digits.
public struct Generation: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The 64-bit value whose zero-padded lowercase hex rendering is the generation's name.
    public let value: UInt64

    /// Creates a generation from its numeric value.
    public init(value: UInt64) { self.value = value }

    /// Parses a name of exactly 16 lowercase hex characters; returns nil for anything else.
    public init?(name: String) {
        guard name.utf8.count == 16,
              name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }),
              let v = UInt64(name, radix: 16) else { return nil }
        self.value = v
    }

    /// Draws a new generation name from the system CSPRNG.
    public static func random() -> Generation {
        var rng = SystemRandomNumberGenerator()
        return Generation(value: rng.next())
    }

    /// The 16-hex-digit name used in paths, listings and logs.
    public var name: String { Hex.format(value, width: 16) }
    public var description: String { name }
    public static func < (a: Generation, b: Generation) -> Bool { a.value < b.value }
}

/// Hex helpers; hex appears only in names and logs.
public enum Hex {
    /// Lowercase hex, zero-padded to at least `width` digits.
    public static func format<T: BinaryInteger>(_ v: T, width: Int) -> String {
        let s = String(v, radix: 16)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// Parses lowercase or uppercase hex of any length (lenient, as upstream's file backend does).
    public static func parse(_ s: Substring) -> UInt64? {
        guard !s.isEmpty, s.utf8.allSatisfy({ isHexDigit($0) }) else { return nil }
        return UInt64(s, radix: 16)
    }

    /// Parses exactly `width` lowercase hex digits (the strict object-store rule).
    public static func parseStrict(_ s: Substring, width: Int) -> UInt64? {
        guard s.utf8.count == width,
              s.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        return UInt64(s, radix: 16)
    }

    static func isHexDigit(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)
    }
}
