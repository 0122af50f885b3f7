/// The age payload: a 16-byte nonce, then ChaCha20-Poly1305 STREAM chunks of 64 KiB plaintext under
/// HKDF(file key, nonce, "payload"); chunk nonces are an 11-byte big-endian counter and a last-chunk flag byte.
enum AgePayload {
    static let chunkSize = 64 * 1024
    static let sealedChunkSize = chunkSize + ChaChaPoly.tagSize
    static let nonceSize = 16

    static func key(fileKey: [UInt8], nonce: [UInt8]) -> [UInt8] {
        AgePrimitives.hkdf(ikm: fileKey, salt: nonce, info: "payload")
    }

    static func chunkNonce(_ counter: UInt64, last: Bool) -> [UInt8] {
        [0, 0, 0] + (0..<8).map { UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64($0))) } + [last ? 1 : 0]
    }
}

/// Encrypts a byte stream to age recipients as it is written: the header and nonce first, then one sealed chunk per
/// 64 KiB. Holds one chunk in memory. Used by one thread.
final class AgeEncryptor {
    private let sink: (UnsafeRawBufferPointer) throws -> Void
    private let cipher: ChaChaPoly
    private var chunk = [UInt8](repeating: 0, count: AgePayload.chunkSize)
    private var filled = 0
    private var sealed = [UInt8](repeating: 0, count: AgePayload.sealedChunkSize)
    private var counter: UInt64 = 0
    private var finished = false

    /// Writes the header for `recipients` (at least one) and the payload nonce to `sink`.
    init(recipients: [AgeRecipient], sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!recipients.isEmpty, "age: encrypting needs at least one recipient")
        self.sink = sink
        let fileKey = try AgePrimitives.random(16)
        let header = AgeHeader.encode(stanzas: try recipients.map { try AgeX25519.wrap(fileKey: fileKey, to: $0) },
                                      fileKey: fileKey)
        let nonce = try AgePrimitives.random(AgePayload.nonceSize)
        cipher = try ChaChaPoly(key: AgePayload.key(fileKey: fileKey, nonce: nonce))
        try (header + nonce).withUnsafeBytes { try sink($0) }
    }

    /// Adds plaintext.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var at = 0
        while at < bytes.count {
            // A full chunk is sealed only once more data arrives: the last chunk must carry the last flag.
            if filled == AgePayload.chunkSize { try seal(last: false) }
            let n = min(AgePayload.chunkSize - filled, bytes.count - at)
            chunk.withUnsafeMutableBytes { c in
                c.baseAddress!.advanced(by: filled).copyMemory(from: bytes.baseAddress!.advanced(by: at), byteCount: n)
            }
            filled += n
            at += n
        }
    }

    /// Seals the last chunk (empty only when the whole plaintext is); call once.
    func finish() throws {
        precondition(!finished)
        finished = true
        try seal(last: true)
    }

    private func seal(last: Bool) throws {
        let n = filled
        let nonce = AgePayload.chunkNonce(counter, last: last)
        try chunk.withUnsafeBytes { c in
            try sealed.withUnsafeMutableBytes { s in
                let out = UnsafeMutableRawBufferPointer(rebasing: s[0..<(n + ChaChaPoly.tagSize)])
                try cipher.seal(nonce: nonce, UnsafeRawBufferPointer(rebasing: c[0..<n]), into: out)
                try sink(UnsafeRawBufferPointer(out))
            }
        }
        counter += 1
        filled = 0
    }

    /// Runs `body` with a sink that encrypts to `recipients` and passes the age file to `sink`.
    static func encrypting(to recipients: [AgeRecipient], sink: (UnsafeRawBufferPointer) throws -> Void,
                           _ body: ObjectBody) throws {
        try withoutActuallyEscaping(sink) { sink in
            let encryptor = try AgeEncryptor(recipients: recipients, sink: sink)
            try body { try encryptor.write($0) }
            try encryptor.finish()
        }
    }
}

/// Decrypts an age file read from another byte source, one 64 KiB chunk at a time; a failure (not age, wrong
/// identity, tampered, truncated) is a `ReplicationError` that starts with `context` (the object and replica).
final class AgeDecryptingSource: ByteSource {
    private let source: any ByteSource
    private let identities: [AgeIdentity]
    private let context: String
    /// Raw bytes read from `source` and not yet consumed.
    private var input: [UInt8] = []
    private var eof = false
    private var cipher: ChaChaPoly?
    private var counter: UInt64 = 0
    private var plain = [UInt8](repeating: 0, count: AgePayload.chunkSize)
    private var plainStart = 0, plainEnd = 0
    private var done = false
    private var readBuffer = [UInt8](repeating: 0, count: AgePayload.sealedChunkSize + 1)

    /// Decrypts `source` with the first of `identities` that matches a recipient of the file.
    init(_ source: any ByteSource, identities: [AgeIdentity], context: String) {
        self.source = source
        self.identities = identities
        self.context = context
    }

    func close() { source.close() }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        do {
            while plainStart == plainEnd {
                if done { return 0 }
                if cipher == nil { try readHeader() } else { try nextChunk() }
            }
        } catch let e as AgeFormatError {
            throw Self.error(e, context: context)
        }
        let n = min(buffer.count, plainEnd - plainStart)
        plain.withUnsafeBytes { p in
            buffer.baseAddress!.copyMemory(from: p.baseAddress!.advanced(by: plainStart), byteCount: n)
        }
        plainStart += n
        return n
    }

    /// Reads from `source` until `input` holds `count` bytes or the source ends.
    private func fill(_ count: Int) throws {
        while input.count < count && !eof {
            let want = min(readBuffer.count, count - input.count)
            let n = try readBuffer.withUnsafeMutableBytes { try source.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) }
            if n == 0 { eof = true } else { input += readBuffer[0..<n] }
        }
    }

    private func readHeader() throws {
        let intro = Array((AgeHeader.versionLine + "\n").utf8)
        try fill(intro.count)
        guard input.starts(with: intro) else { throw AgeFormatError.malformed(AgeHeader.notAge) }
        var scanned = 0
        let header = try AgeHeader.parse {
            while true {
                if let nl = input[scanned...].firstIndex(of: 0x0a) {
                    let line = Array(input[..<nl])
                    input.removeFirst(nl + 1)
                    scanned = 0
                    return line
                }
                scanned = input.count
                if eof { return nil }
                guard input.count <= AgeHeader.maxSize else {
                    throw AgeFormatError.malformed("header longer than \(AgeHeader.maxSize) bytes")
                }
                try fill(input.count + 4096)
            }
        }
        var fileKey: [UInt8]?
        search: for identity in identities {
            for stanza in header.stanzas {
                if let key = try AgeX25519.unwrap(stanza, with: identity), key.count == 16 {
                    fileKey = key
                    break search
                }
            }
        }
        guard let fileKey else { throw AgeFormatError.noMatchingIdentity }
        guard header.verify(fileKey: fileKey) else { throw AgeFormatError.tampered("header MAC does not verify") }
        try fill(AgePayload.nonceSize)
        guard input.count >= AgePayload.nonceSize else { throw AgeFormatError.truncated("in the payload nonce") }
        let nonce = Array(input[..<AgePayload.nonceSize])
        input.removeFirst(AgePayload.nonceSize)
        cipher = try ChaChaPoly(key: AgePayload.key(fileKey: fileKey, nonce: nonce))
    }

    private func nextChunk() throws {
        // One byte past a full sealed chunk tells whether this chunk is the last one.
        try fill(AgePayload.sealedChunkSize + 1)
        let last = input.count <= AgePayload.sealedChunkSize
        let size = min(input.count, AgePayload.sealedChunkSize)
        guard size >= ChaChaPoly.tagSize else { throw AgeFormatError.truncated("in payload chunk \(counter)") }
        if last && size == ChaChaPoly.tagSize && counter > 0 {
            throw AgeFormatError.malformed("empty last chunk after a full one")
        }
        let nonce = AgePayload.chunkNonce(counter, last: last)
        let ok = try input.withUnsafeBytes { i in
            try plain.withUnsafeMutableBytes { p in
                try cipher!.open(nonce: nonce, UnsafeRawBufferPointer(rebasing: i[0..<size]),
                                 into: UnsafeMutableRawBufferPointer(rebasing: p[0..<(size - ChaChaPoly.tagSize)]))
            }
        }
        guard ok else {
            // A full chunk that fails as "not last" is the end of a truncated file when nothing follows it.
            throw last ? AgeFormatError.truncated("or tampered at payload chunk \(counter)")
                       : AgeFormatError.tampered("payload chunk \(counter) does not authenticate")
        }
        input.removeFirst(size)
        plainStart = 0
        plainEnd = size - ChaChaPoly.tagSize
        counter += 1
        if last { done = true }
    }

    /// The one-line error for a format failure of the object described by `context`.
    static func error(_ e: AgeFormatError, context: String) -> ReplicationError {
        switch e {
        case .malformed(let why): return ReplicationError(.corrupt, "\(context): age: \(why)")
        case .truncated(let at): return ReplicationError(.corrupt, "\(context): age: truncated \(at)")
        case .tampered(let what): return ReplicationError(.corrupt, "\(context): age: \(what): the object was modified or damaged")
        case .noMatchingIdentity:
            return ReplicationError(.config, "\(context): age: no configured identity matches a recipient of the object "
                + "(wrong age.identities?)")
        }
    }
}
