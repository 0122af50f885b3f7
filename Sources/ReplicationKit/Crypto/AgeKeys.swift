import Foundation

/// An age X25519 recipient (`age1…`): the public key objects are encrypted to.
public struct AgeRecipient: Sendable, Equatable, CustomStringConvertible {
    /// The 32-byte X25519 public key.
    public let publicKey: [UInt8]

    /// Parses `age1…`; nil when it is not a well-formed X25519 recipient.
    public init?(_ text: String) {
        guard let (hrp, data) = Bech32.decode(text), hrp == "age", data.count == 32 else { return nil }
        publicKey = data
    }

    init(publicKey: [UInt8]) { self.publicKey = publicKey }

    /// The `age1…` encoding.
    public var description: String { Bech32.encode(hrp: "age", data: publicKey) }
}

/// An age X25519 identity (`AGE-SECRET-KEY-1…`): the secret key objects are decrypted with. Its description shows
/// only the matching recipient, so it can never reach a log line by accident.
public struct AgeIdentity: Sendable, CustomStringConvertible {
    /// The 32-byte X25519 secret scalar.
    let secret: [UInt8]
    /// The matching recipient.
    public let recipient: AgeRecipient

    /// Parses `AGE-SECRET-KEY-1…`; nil when it is not a well-formed X25519 identity.
    public init?(_ text: String) {
        guard text.hasPrefix("AGE-SECRET-KEY-1"), let (hrp, data) = Bech32.decode(text), hrp == "age-secret-key-",
              data.count == 32, let pub = try? AgePrimitives.x25519PublicKey(secret: data) else { return nil }
        secret = data
        recipient = AgeRecipient(publicKey: pub)
    }

    private init(secret: [UInt8]) throws {
        self.secret = secret
        recipient = AgeRecipient(publicKey: try AgePrimitives.x25519PublicKey(secret: secret))
    }

    /// A new random identity.
    public static func generate() throws -> AgeIdentity { try AgeIdentity(secret: try AgePrimitives.random(32)) }

    /// The `AGE-SECRET-KEY-1…` encoding: secret material, for key files only.
    public var secretKeyString: String { Bech32.encode(hrp: "AGE-SECRET-KEY-", data: secret) }

    /// The public side only.
    public var description: String { "age identity for \(recipient)" }
}

/// Reads the recipient and identity lists of a replica's `age` block as Litestream 0.3.13 does (`age.ParseRecipients`
/// / `age.ParseIdentities` on each string): every string may hold several keys, one a line; blank lines and lines
/// starting with `#` are skipped; a string without any key is an error. Errors name the line, never its text.
public enum AgeKeyList {
    /// The recipients in `text`.
    public static func recipients(_ text: String) throws(AgeKeyListError) -> [AgeRecipient] {
        try parse(text, what: "recipients", expected: "an age X25519 recipient (age1…)") { AgeRecipient($0) }
    }

    /// The identities in `text`.
    public static func identities(_ text: String) throws(AgeKeyListError) -> [AgeIdentity] {
        try parse(text, what: "secret keys", expected: "an age X25519 identity (AGE-SECRET-KEY-1…)") { AgeIdentity($0) }
    }

    private static func parse<T>(_ text: String, what: String, expected: String,
                                 _ make: (String) -> T?) throws(AgeKeyListError) -> [T] {
        var out: [T] = []
        // "\r\n" is one Character in Swift: split on both forms.
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        for (i, line) in lines.enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let key = make(trimmed) else {
                throw AgeKeyListError(message: "line \(i + 1): not \(expected), or its checksum does not match")
            }
            out.append(key)
        }
        guard !out.isEmpty else { throw AgeKeyListError(message: "no \(what) found") }
        return out
    }
}

/// Why a key list did not parse (never contains key text).
public struct AgeKeyListError: Error, Sendable {
    public let message: String
}
