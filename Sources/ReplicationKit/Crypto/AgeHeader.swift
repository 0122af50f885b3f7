/// One recipient stanza of an age header: `-> TYPE ARGS…` and its body.
struct AgeStanza: Equatable {
    var args: [String]
    var body: [UInt8]
}

/// Why an age file could not be read; `AgeDecryptingSource` turns it into a `ReplicationError` naming the object.
enum AgeFormatError: Error, Equatable {
    /// Not an age v1 file, or its header is malformed (the reason).
    case malformed(String)
    /// The data ends early (where).
    case truncated(String)
    /// The header MAC or a payload chunk does not authenticate (which).
    case tampered(String)
    /// No identity unwraps any recipient stanza.
    case noMatchingIdentity
}

/// The age v1 header (https://age-encryption.org/v1): version line, recipient stanzas, HMAC-SHA256 MAC.
enum AgeHeader {
    static let versionLine = "age-encryption.org/v1"
    /// Lines of a stanza body hold 48 bytes (64 base64 characters); a shorter line ends the body.
    static let columns = 64
    /// Headers longer than this are refused (a real one with a few recipients is a few hundred bytes).
    static let maxSize = 1 << 20
    static let notAge = "not an age-encrypted object (no age-encryption.org/v1 header; written without age, or armored?)"

    /// The header for `stanzas`, authenticated under `fileKey`.
    static func encode(stanzas: [AgeStanza], fileKey: [UInt8]) -> [UInt8] {
        var text = versionLine + "\n"
        for s in stanzas {
            text += "-> " + s.args.joined(separator: " ") + "\n"
            var b64 = Substring(AgeBase64.encode(s.body))
            while b64.count >= columns {
                text += b64.prefix(columns) + "\n"
                b64 = b64.dropFirst(columns)
            }
            text += b64 + "\n"
        }
        text += "---"
        let mac = Digest.hmacSHA256(key: macKey(fileKey), data: Array(text.utf8))
        return Array((text + " " + AgeBase64.encode(mac) + "\n").utf8)
    }

    static func macKey(_ fileKey: [UInt8]) -> [UInt8] { AgePrimitives.hkdf(ikm: fileKey, salt: [], info: "header") }

    /// A parsed header: its stanzas, its MAC and the bytes the MAC covers.
    struct Parsed {
        var stanzas: [AgeStanza]
        var mac: [UInt8]
        var macInput: [UInt8]

        /// Checks the MAC under `fileKey`.
        func verify(fileKey: [UInt8]) -> Bool {
            AgePrimitives.equalMACs(Digest.hmacSHA256(key: AgeHeader.macKey(fileKey), data: macInput), mac)
        }
    }

    /// Parses a header from `nextLine`, which returns one line without its `\n` (nil at the end of the data).
    static func parse(_ nextLine: () throws -> [UInt8]?) throws -> Parsed {
        var consumed: [UInt8] = []
        func line(_ at: String) throws -> [UInt8] {
            guard let l = try nextLine() else { throw AgeFormatError.truncated("in the header (\(at))") }
            consumed += l + [0x0a]
            guard consumed.count <= maxSize else { throw AgeFormatError.malformed("header longer than \(maxSize) bytes") }
            return l
        }
        guard try line("version line") == Array(versionLine.utf8) else {
            throw AgeFormatError.malformed(notAge)
        }
        var stanzas: [AgeStanza] = []
        while true {
            let l = try line("stanza \(stanzas.count + 1)")
            if l.starts(with: Array("--- ".utf8)) {
                let macInput = Array(consumed.dropLast(l.count + 1)) + Array("---".utf8)
                guard let mac = AgeBase64.decode(String(decoding: l.dropFirst(4), as: UTF8.self)), mac.count == 32 else {
                    throw AgeFormatError.malformed("bad header MAC line")
                }
                return Parsed(stanzas: stanzas, mac: mac, macInput: macInput)
            }
            guard l.starts(with: Array("-> ".utf8)) else {
                throw AgeFormatError.malformed("expected a stanza (->) or the MAC line (---) in the header")
            }
            let args = l.dropFirst(3).split(separator: 0x20, omittingEmptySubsequences: false)
                .map { String(decoding: $0, as: UTF8.self) }
            guard !args.isEmpty, args.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 33 && $0 <= 126 } }) else {
                throw AgeFormatError.malformed("bad stanza arguments")
            }
            var b64 = ""
            while true {
                let bodyLine = try line("stanza \(stanzas.count + 1) body")
                guard bodyLine.count <= columns else { throw AgeFormatError.malformed("stanza body line too long") }
                b64 += String(decoding: bodyLine, as: UTF8.self)
                if bodyLine.count < columns { break }
            }
            guard let body = AgeBase64.decode(b64) else { throw AgeFormatError.malformed("bad base64 in a stanza body") }
            stanzas.append(AgeStanza(args: args, body: body))
        }
    }
}

/// The X25519 recipient type: the file key is wrapped under HKDF(X25519(ephemeral, recipient)).
enum AgeX25519 {
    static let label = "age-encryption.org/v1/X25519"

    /// A stanza wrapping `fileKey` to `recipient`.
    static func wrap(fileKey: [UInt8], to recipient: AgeRecipient) throws -> AgeStanza {
        let ephemeral = try AgePrimitives.random(32)
        let share = try AgePrimitives.x25519PublicKey(secret: ephemeral)
        // A low-order recipient key gives no shared secret; age refuses it too.
        guard let shared = try AgePrimitives.x25519(secret: ephemeral, peer: recipient.publicKey) else {
            throw ReplicationError(.config, "age: recipient \(recipient) is not a usable X25519 key (low-order point)")
        }
        let key = AgePrimitives.hkdf(ikm: shared, salt: share + recipient.publicKey, info: label)
        let body = try ChaChaPoly(key: key).seal(nonce: [UInt8](repeating: 0, count: 12), fileKey)
        return AgeStanza(args: ["X25519", AgeBase64.encode(share)], body: body)
    }

    /// The file key from `stanza` when `identity` unwraps it; nil when the stanza is for someone else.
    static func unwrap(_ stanza: AgeStanza, with identity: AgeIdentity) throws -> [UInt8]? {
        guard stanza.args.first == "X25519" else { return nil }
        guard stanza.args.count == 2, let share = AgeBase64.decode(stanza.args[1]), share.count == 32,
              stanza.body.count == 32 else { throw AgeFormatError.malformed("invalid X25519 recipient stanza") }
        guard let shared = try AgePrimitives.x25519(secret: identity.secret, peer: share) else {
            throw AgeFormatError.malformed("X25519 stanza with a low-order share")
        }
        let key = AgePrimitives.hkdf(ikm: shared, salt: share + identity.recipient.publicKey, info: label)
        return try ChaChaPoly(key: key).open(nonce: [UInt8](repeating: 0, count: 12), stanza.body)
    }
}
