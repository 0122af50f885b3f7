import Foundation
import Testing
import TestFixtures
import Logging
@testable import ReplicationKit

/// An in-memory byte source that hands out at most `step` bytes per read (to exercise partial reads).
private final class MemorySource: ByteSource {
    let data: [UInt8]
    let step: Int
    var at = 0
    init(_ data: [UInt8], step: Int = 1 << 20) { self.data = data; self.step = step }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, step, data.count - at)
        data.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
        at += n
        return n
    }
    func close() {}
}

/// The `age` / `age-keygen` command-line tools (Debian package `age`), the oracle of these tests.
enum AgeCLI {
    static let age = "/usr/bin/age", keygenPath = "/usr/bin/age-keygen"

    /// True when both tools are installed; otherwise a skip line (a failure under CI=true).
    static func available(_ test: String) -> Bool {
        if FileManager.default.isExecutableFile(atPath: age) && FileManager.default.isExecutableFile(atPath: keygenPath) {
            return true
        }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("the age CLI is not installed (apt-get install age, scripts/install-deps.sh); required under CI=true")
        } else {
            print("SKIP \(test): the age CLI is not installed (apt-get install age)")
        }
        return false
    }

    /// Runs a tool with `input` on stdin; returns exit status, stdout and stderr.
    static func run(_ tool: String, _ arguments: [String], input: [UInt8] = []) throws -> (status: Int32, out: [UInt8], err: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agecli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let inFile = dir.appendingPathComponent("in"), outFile = dir.appendingPathComponent("out"),
            errFile = dir.appendingPathComponent("err")
        try Data(input).write(to: inFile)
        _ = FileManager.default.createFile(atPath: outFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errFile.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        p.standardInput = try FileHandle(forReadingFrom: inFile)
        p.standardOutput = try FileHandle(forWritingTo: outFile)
        p.standardError = try FileHandle(forWritingTo: errFile)
        try p.run()
        p.waitUntilExit()
        return (p.terminationStatus, [UInt8](try Data(contentsOf: outFile)),
                String(decoding: try Data(contentsOf: errFile), as: UTF8.self))
    }

    /// A new key pair from `age-keygen`: the identity file text and the recipient.
    static func keygen() throws -> (identity: String, recipient: String) {
        let r = try run(keygenPath, [])
        let text = String(decoding: r.out, as: UTF8.self)
        let pub = text.split(separator: "\n").first { $0.hasPrefix("# public key: ") }.map { String($0.dropFirst(14)) }
        return (text, pub ?? "")
    }

    /// Writes `text` to a temporary file and returns its path (the caller removes it).
    static func tempFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("agekey-\(UUID().uuidString)").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// Encrypts with our encoder.
func ageEncrypt(_ plain: [UInt8], to recipients: [AgeRecipient], writeSize: Int = 10_000) throws -> [UInt8] {
    var out: [UInt8] = []
    try AgeEncryptor.encrypting(to: recipients, sink: { out += $0 }) { sink in
        var at = 0
        repeat {
            let n = min(writeSize, plain.count - at)
            try plain.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[at..<(at + n)])) }
            at += n
        } while at < plain.count
    }
    return out
}

/// Decrypts with our decoder, reading in `readSize` pieces.
func ageDecrypt(_ sealed: [UInt8], with identities: [AgeIdentity], readSize: Int = 7_000, step: Int = 1 << 20) throws -> [UInt8] {
    let src = AgeDecryptingSource(MemorySource(sealed, step: step), identities: identities, context: "obj on file replica /r")
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: readSize)
    while true {
        let n = try buf.withUnsafeMutableBytes { try src.read(into: $0) }
        if n == 0 { return out }
        out += buf[0..<n]
    }
}

private func pattern(_ n: Int, seed: UInt8 = 7) -> [UInt8] {
    (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ ($0 >> 9)) }
}

@Suite("age encoding units")
struct AgeUnitTests {
    @Test func bech32RoundTripAndChecksum() throws {
        let key = pattern(32)
        let s = Bech32.encode(hrp: "age", data: key)
        #expect(s.hasPrefix("age1") && s.count == 62)
        #expect(AgeRecipient(s)?.publicKey == key)
        var broken = Array(s)
        broken[10] = broken[10] == "q" ? "p" : "q"
        #expect(AgeRecipient(String(broken)) == nil)
        #expect(AgeRecipient(s.uppercased())?.publicKey == key)
        let mixed = String(s.prefix(5)) + s.dropFirst(5).uppercased()
        #expect(AgeRecipient(mixed) == nil)
        let secret = Bech32.encode(hrp: "AGE-SECRET-KEY-", data: key)
        #expect(secret.hasPrefix("AGE-SECRET-KEY-1") && secret == secret.uppercased())
        #expect(AgeIdentity(secret) != nil)
        #expect(AgeRecipient(secret) == nil && AgeIdentity(s) == nil)
    }

    @Test func base64IsUnpaddedAndCanonical() {
        #expect(AgeBase64.encode([1, 2]) == "AQI")
        #expect(AgeBase64.decode("AQI") == [1, 2])
        #expect(AgeBase64.decode("AQI=") == nil)
        #expect(AgeBase64.decode("AQJ") == nil)  // non-zero trailing bits
        #expect(AgeBase64.decode("A") == nil)
        #expect(AgeBase64.decode("") == [])
    }

    /// RFC 7748 §6.1 (X25519 Diffie-Hellman) and RFC 5869 test case 1 (HKDF-SHA256, first 32 bytes).
    @Test func primitivesMatchPublishedVectors() throws {
        func hex(_ s: String) -> [UInt8] {
            stride(from: 0, to: s.count, by: 2).map { UInt8(s.dropFirst($0).prefix(2), radix: 16)! }
        }
        let a = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        let b = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
        let aPub = try AgePrimitives.x25519PublicKey(secret: a)
        #expect(aPub == hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
        let shared = try AgePrimitives.x25519(secret: b, peer: aPub)
        #expect(shared == hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"))
        #expect(try AgePrimitives.x25519(secret: a, peer: [UInt8](repeating: 0, count: 32)) == nil)
        let okm = AgePrimitives.hkdf(ikm: [UInt8](repeating: 0x0b, count: 22), salt: hex("000102030405060708090a0b0c"),
                                     info: hex("f0f1f2f3f4f5f6f7f8f9"))
        #expect(okm == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"))
    }

    @Test func roundTripsAcrossChunkBoundaries() throws {
        let id = try AgeIdentity.generate()
        for size in [0, 1, 65535, 65536, 65537, 2 * 65536, 3 * 65536 + 17] {
            let plain = pattern(size)
            let sealed = try ageEncrypt(plain, to: [id.recipient])
            let chunks = max(1, (size + 65535) / 65536)
            #expect(sealed.count > size + 16 + 16 * chunks, "size \(size)")
            #expect(try ageDecrypt(sealed, with: [id], step: 1000) == plain, "size \(size)")
        }
    }

    @Test func keyListsFollowTheAgeFileFormat() throws {
        let a = try AgeIdentity.generate(), b = try AgeIdentity.generate()
        let text = "# created: today\n# public key: \(a.recipient)\n\(a.secretKeyString)\n\n\(b.secretKeyString)\r\n"
        #expect(try AgeKeyList.identities(text).map(\.recipient) == [a.recipient, b.recipient])
        #expect(try AgeKeyList.recipients("\(a.recipient)\n# x\n\(b.recipient)") == [a.recipient, b.recipient])
        #expect(throws: AgeKeyListError.self) { try AgeKeyList.identities("# nothing\n") }
        do {
            _ = try AgeKeyList.identities("AGE-SECRET-KEY-1QQQQ\n")
            Issue.record("a malformed identity was accepted")
        } catch {
            #expect(error.message == "line 1: not an age X25519 identity (AGE-SECRET-KEY-1…), or its checksum does not match")
        }
        #expect(String(describing: a) == "age identity for \(a.recipient)")
    }

    @Test func badInputsAreOneClearError() throws {
        let id = try AgeIdentity.generate(), other = try AgeIdentity.generate()
        let plain = pattern(200_000)
        let sealed = try ageEncrypt(plain, to: [id.recipient])
        func message(_ bytes: [UInt8], _ ids: [AgeIdentity]) -> String? {
            do { _ = try ageDecrypt(bytes, with: ids); return nil } catch { return error.oneLine }
        }
        #expect(message(sealed, [other]) == "obj on file replica /r: age: no configured identity matches a recipient of the object (wrong age.identities?)")
        let headerEnd = sealed.firstRange(of: Array("\n--- ".utf8))!.upperBound
        var mac = sealed
        mac[headerEnd + 2] = mac[headerEnd + 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(message(mac, [id])?.contains("header MAC does not verify") == true, "\(message(mac, [id]) ?? "")")
        var chunk = sealed
        chunk[sealed.count - 70_000] ^= 1
        #expect(message(chunk, [id]) == "obj on file replica /r: age: payload chunk 1 does not authenticate: the object was modified or damaged")
        #expect(message(Array(sealed.dropLast(1)), [id])?.contains("age: truncated or tampered at payload chunk 3") == true)
        // Cut at a chunk boundary: the remaining full chunk is not flagged last.
        let cut = Array(sealed.prefix(sealed.count - (plain.count - 3 * 65536) - 16))
        #expect(message(cut, [id])?.contains("age: truncated or tampered at payload chunk 2") == true)
        #expect(message(Array(sealed.prefix(40)), [id]) == "obj on file replica /r: age: truncated in the header (stanza 1)")
        #expect(message([0x04, 0x22, 0x4d, 0x18, 0x60, 0x40], [id]) == "obj on file replica /r: age: \(AgeHeader.notAge)")
        #expect(message(Array("age-encryption.org/v1\nworld\n".utf8), [id])?.contains("expected a stanza") == true)
        #expect(message(Array(sealed.prefix(headerEnd + 45 + 8)), [id]) == "obj on file replica /r: age: truncated in the payload nonce")
        #expect(message(Array(sealed.prefix(headerEnd + 44)), [id]) == "obj on file replica /r: age: truncated in the payload nonce")
    }
}

@Suite("age interop with the age CLI", .serialized)
struct AgeCLIInteropTests {
    @Test func ageCLIDecryptsWhatWeEncrypt() throws {
        guard AgeCLI.available("age CLI interop") else { return }
        let k1 = try AgeCLI.keygen(), k2 = try AgeCLI.keygen()
        let r1 = try #require(AgeRecipient(k1.recipient)), r2 = try #require(AgeRecipient(k2.recipient))
        let f1 = try AgeCLI.tempFile(k1.identity), f2 = try AgeCLI.tempFile(k2.identity)
        defer { try? FileManager.default.removeItem(atPath: f1); try? FileManager.default.removeItem(atPath: f2) }
        for size in [0, 5, 65536, 65537, 4 * 65536, 300_001] {
            let plain = pattern(size, seed: UInt8(size % 251))
            let sealed = try ageEncrypt(plain, to: [r1, r2])
            for f in [f1, f2] {
                let r = try AgeCLI.run(AgeCLI.age, ["-d", "-i", f], input: sealed)
                #expect(r.status == 0 && r.out == plain, "size \(size): \(r.err)")
            }
        }
        // The CLI refuses what we refuse.
        var tampered = try ageEncrypt(pattern(1000), to: [r1])
        tampered[tampered.count - 5] ^= 0x40
        #expect(try AgeCLI.run(AgeCLI.age, ["-d", "-i", f1], input: tampered).status != 0)
    }

    @Test func weDecryptWhatTheAgeCLIEncrypts() throws {
        guard AgeCLI.available("age CLI interop") else { return }
        let k1 = try AgeCLI.keygen(), k2 = try AgeCLI.keygen(), stranger = try AgeCLI.keygen()
        let ids1 = try AgeKeyList.identities(k1.identity), ids2 = try AgeKeyList.identities(k2.identity)
        #expect(ids1[0].recipient.description == k1.recipient)
        for size in [0, 1, 65535, 65536, 3 * 65536, 200_000] {
            let plain = pattern(size, seed: 3)
            let r = try AgeCLI.run(AgeCLI.age, ["-r", k1.recipient, "-r", k2.recipient], input: plain)
            #expect(r.status == 0, "\(r.err)")
            #expect(try ageDecrypt(r.out, with: ids1, step: 4099) == plain, "size \(size)")
            #expect(try ageDecrypt(r.out, with: ids2) == plain, "size \(size)")
            #expect(throws: ReplicationError.self) { try ageDecrypt(r.out, with: try AgeKeyList.identities(stranger.identity)) }
        }
        // Armored (PEM) output is not what Litestream writes: refused with a clear reason.
        let armored = try AgeCLI.run(AgeCLI.age, ["-a", "-r", k1.recipient], input: pattern(10))
        #expect(throws: ReplicationError.self) { try ageDecrypt(armored.out, with: ids1) }
    }
}

@Suite("age replica client")
struct AgeReplicaClientTests {
    private func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agerc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Objects are stored encrypted (listed with their stored size), read back decrypted; a client without
    /// identities cannot read, one without recipients cannot write.
    @Test func encryptsOnWriteAndDecryptsOnOpen() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let id = try AgeIdentity.generate()
        let base = FileReplicaClient(root: dir)
        let client = AgeReplicaClient(base, config: AgeConfig(recipients: [id.recipient], identities: [id]))
        let g = try #require(Generation(name: "0123456789abcdef"))
        let snapshotBytes = pattern(150_000), walBytes = pattern(70_000, seed: 9)
        let info = try client.writeSnapshot(generation: g, index: 1) { sink in try snapshotBytes.withUnsafeBytes { try sink($0) } }
        let seg = try client.writeWALSegment(position: WALPosition(generation: g, index: 1, offset: 0)) { sink in
            try walBytes.withUnsafeBytes { try sink($0) }
        }
        let stored = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + client.objectName(snapshot: info))))
        #expect(stored.starts(with: Array("age-encryption.org/v1\n".utf8)))
        #expect(info.size == UInt64(stored.count) && stored.count > snapshotBytes.count)
        #expect(try client.snapshots(generation: g).map(\.size) == [info.size])
        #expect(try ReplicaClientConformance.bytes(of: client.openSnapshot(info)) == snapshotBytes)
        #expect(try ReplicaClientConformance.bytes(of: client.openWALSegment(seg)) == walBytes)
        #expect(try ageDecrypt(stored, with: [id]) == snapshotBytes)
        #expect(client.canReadObjects)

        let writeOnly = AgeReplicaClient(base, config: AgeConfig(recipients: [id.recipient], identities: []))
        #expect(!writeOnly.canReadObjects)
        do {
            _ = try writeOnly.openSnapshot(info)
            Issue.record("opened without identities")
        } catch {
            #expect(error.oneLine == "file replica \(dir): the replica is age-encrypted and age has no identities: add age.identities (the AGE-SECRET-KEY-1… key of a recipient) to read it")
        }
        let readOnly = AgeReplicaClient(base, config: AgeConfig(recipients: [], identities: [id]))
        #expect(throws: ReplicationError.self) {
            _ = try readOnly.writeSnapshot(generation: g, index: 2) { sink in try [1].withUnsafeBytes { try sink($0) } }
        }
        #expect(try base.snapshots(generation: g).count == 1)
    }

    /// The replicator takes a lease on an encrypted replica's store (the lease object itself is not encrypted), and
    /// refuses identities without recipients before anything is opened.
    @Test func replicatorChecks() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let id = try AgeIdentity.generate()
        func config(_ age: String) throws -> Configuration {
            try Configuration.parse(yaml: """
                dbs:
                  - path: \(dir)/app.db
                    lease: {ttl: 30s}
                    replicas:
                      - url: file://\(dir)/replica
                        age: {\(age)}
                """, sourceName: "test.yml", expandEnv: false, environment: [:])
        }
        let replicator = try Replicator(config: try config("recipients: [\(id.recipient)]"), logger: Logger(label: "test"))
        #expect(replicator.leases.count == 1)
        #expect(replicator.entries.first?.replicas.first?.client.canReadObjects == false)
        do {
            _ = try Replicator(config: try config("identities: [\(id.secretKeyString)]"), logger: Logger(label: "test"))
            Issue.record("identities without recipients were accepted for replication")
        } catch {
            #expect(error.oneLine.contains("age has identities but no recipients: replicating would write unencrypted objects"))
            #expect(!error.oneLine.contains(id.secretKeyString))
        }
    }
}
