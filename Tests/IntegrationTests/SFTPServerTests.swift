import Foundation
import Logging
import Testing
import TestFixtures
@testable import ReplicationKit

/// The private sshd of `scripts/start-sftp.sh`, from its RK_SFTP_* variables.
struct SFTPTestServer {
    var host: String, port: Int, user: String, password: String
    var key: String, ecdsaKey: String, passKey: String, passphrase: String
    var hostKeyLine: String, fingerprint: String, knownHosts: String, root: String
    /// An sftp config (`RK_SFTP_CONFIG`) for the launcher tests.
    var config: String
    var secrets: [String]


    /// A fresh absolute replica directory under the server's root, with key auth and the pinned host key.
    func destination(port: Int? = nil, dir: String = "t-\(UUID().uuidString)") -> SFTPDestination {
        SFTPDestination(host: "127.0.0.1:\(port ?? self.port)", user: user, keyPath: key, path: root + "/" + dir,
                        hostKey: hostKeyLine)
    }

    func assertNoSecret(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        TestServers.expectNoSecrets(secrets, in: text, "the output", sourceLocation: sourceLocation)
    }

    /// Files under `dir` on the server's disk (the server is this machine), relative to it.
    static func files(under dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).filter {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: dir + "/" + $0, isDirectory: &isDir) && !isDir.boolValue
        }.sorted()
    }
}

/// `Tests/Tools/sftp_proxy.py` in front of sshd: counts connections, cuts or drops them on command.
final class SFTPProxy {
    let process = Process()
    let dir: String
    private(set) var port = 0

    init(upstreamPort: Int) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sftp-proxy-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tool = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tools/sftp_proxy.py").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", tool, "--upstream", "127.0.0.1:\(upstreamPort)", "--control", dir + "/control",
                             "--stats", dir + "/stats", "--port-file", dir + "/port", "--max-seconds", "300"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let s = try? String(contentsOfFile: dir + "/port", encoding: .utf8), let p = Int(s) { port = p; return }
            usleep(20_000)
        }
        throw ReplicationError(.io, "sftp_proxy did not start")
    }

    deinit {
        kill(process.processIdentifier, SIGKILL)  // SIGKILL: the runner's blocked-signal mask is inherited
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Sets the mode and waits until the proxy has taken it.
    func mode(_ m: String) throws {
        try m.write(toFile: dir + "/control", atomically: true, encoding: .utf8)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, stats["mode"] as? String != m { usleep(10_000) }
    }

    var stats: [String: Any] {
        guard let d = FileManager.default.contents(atPath: dir + "/stats"),
              let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return [:] }
        return o
    }

    var connections: Int { stats["connections"] as? Int ?? -1 }
}

@Suite("SFTP client against sshd", .serialized)
struct SFTPServerTests {
    enum Auth: String, CaseIterable { case key, password, passphraseKey, ecdsaKey, both }

    @Test(arguments: Auth.allCases)
    func conformance(auth: Auth) throws {
        guard let s = SFTPTestServer.get() else { return }
        var d = s.destination()
        switch auth {
        case .key: break
        case .password: d.keyPath = nil; d.password = s.password
        case .passphraseKey: d.keyPath = s.passKey; d.keyPassphrase = s.passphrase
        case .ecdsaKey: d.keyPath = s.ecdsaKey
        case .both: d.password = s.password
        }
        let c = try SFTPReplicaClient(destination: d)
        try ReplicaClientConformance.check(c)
        #expect(SFTPTestServer.files(under: d.path!).isEmpty)  // no temporary files left behind
    }

    @Test func exactSizesAndTimesAndOverwrite() throws {
        guard let s = SFTPTestServer.get() else { return }
        let d = s.destination()
        let c = try SFTPReplicaClient(destination: d)
        let g = try #require(Generation(name: "00000000000000aa"))
        _ = try c.writeSnapshot(generation: g, index: 1, body: ReplicaClientConformance.body(Array(repeating: 7, count: 5000)))
        _ = try c.writeWALSegment(position: WALPosition(generation: g, index: 3, offset: 0), body: ReplicaClientConformance.body([1, 2]))
        // Overwriting an existing object replaces it.
        _ = try c.writeSnapshot(generation: g, index: 1, body: ReplicaClientConformance.body(Array(repeating: 9, count: 4321)))
        let snap = try #require(try c.snapshots(generation: g).first)
        let seg = try #require(try c.walSegments(generation: g).first)
        for (rel, size, created) in [(c.objectName(snapshot: snap), snap.size, snap.createdAt),
                                     (c.objectName(segment: seg), seg.size, seg.createdAt)] {
            let attrs = try FileManager.default.attributesOfItem(atPath: d.path! + "/" + rel)
            #expect((attrs[.size] as? NSNumber)?.uint64Value == size)
            let mtime = try #require(attrs[.modificationDate] as? Date)
            #expect(created.timeIntervalSince1970 == mtime.timeIntervalSince1970.rounded(.down), "\(rel)")
        }
        #expect(snap.size == 4321)
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(snap)) == Array(repeating: 9, count: 4321))
        #expect(SFTPTestServer.files(under: d.path!).allSatisfy { !$0.hasSuffix(".tmp") })
        try c.deleteGeneration(g)
        #expect(!FileManager.default.fileExists(atPath: d.path! + "/generations/" + g.name))
    }

    @Test func relativePathIsUnderTheLoginDirectory() throws {
        guard let s = SFTPTestServer.get() else { return }
        var d = s.destination()
        let rel = "rel-\(UUID().uuidString)/db"
        d.path = rel
        let c = try SFTPReplicaClient(destination: d)
        let g = try #require(Generation(name: "00000000000000ab"))
        _ = try c.writeSnapshot(generation: g, index: 0, body: ReplicaClientConformance.body([1]))
        #expect(FileManager.default.fileExists(atPath: s.root + "/" + rel + "/generations/\(g.name)/snapshots/0000000000000000.snapshot.lz4"))
        try c.deleteGeneration(g)
        #expect(try c.generations().isEmpty)
    }

    @Test func knownHostsFilePlainAndHashed() throws {
        guard let s = SFTPTestServer.get() else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sftp-kh-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let hashed = dir + "/hashed"
        try FileManager.default.copyItem(atPath: s.knownHosts, toPath: hashed)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        p.arguments = ["-q", "-H", "-f", hashed]
        p.standardError = FileHandle.nullDevice
        try p.run(); p.waitUntilExit()
        #expect(try String(contentsOfFile: hashed, encoding: .utf8).hasPrefix("|1|"))
        for file in [s.knownHosts, hashed] {
            var d = s.destination()
            d.hostKey = nil
            d.knownHostsPath = file
            let c = try SFTPReplicaClient(destination: d)
            #expect(try c.generations().isEmpty)
            _ = try c.writeSnapshot(generation: try #require(Generation(name: "00000000000000ac")), index: 0, body: ReplicaClientConformance.body([1]))
            #expect(try c.generations().count == 1)
        }
    }

    @Test func hostKeyMismatchIsRefusedAndNothingIsWritten() throws {
        guard let s = SFTPTestServer.get() else { return }
        // Another ed25519 key: same type, different key.
        let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcPtvN7WjSC7KkQcdVWiWy+4w+jweZj09J8dm4bZH7i"
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sftp-mm-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[127.0.0.1]:\(s.port) \(other)\n".write(toFile: dir + "/kh", atomically: true, encoding: .utf8)
        var pinned = s.destination(), viaFile = s.destination()
        pinned.hostKey = other
        viaFile.hostKey = nil
        viaFile.knownHostsPath = dir + "/kh"
        for d in [pinned, viaFile] {
            let c = try SFTPReplicaClient(destination: d)
            let g = try #require(Generation(name: "00000000000000ad"))
            do {
                _ = try c.writeSnapshot(generation: g, index: 0, body: ReplicaClientConformance.body([1, 2, 3]))
                Issue.record("expected a host key mismatch")
            } catch {
                let text = error.oneLine
                print("host key mismatch -> \(text)")
                #expect(text.contains("host key mismatch"), "\(text)")
                #expect(text.contains("server offered \(s.fingerprint)"), "\(text)")
                #expect(text.contains("curl error 60"), "\(text)")
                s.assertNoSecret(text)
            }
            #expect(!FileManager.default.fileExists(atPath: d.path!))  // nothing written, not even a directory
        }
    }

    @Test func insecureFlagConnectsAndWarnsAtEveryStart() throws {
        guard let s = SFTPTestServer.get() else { return }
        let lines = DBTestLogLines()
        var d = s.destination()
        d.hostKey = nil
        d.insecureSkipHostKeyCheck = true
        for _ in 0..<2 {
            let c = try SFTPReplicaClient(destination: d, logger: Logger(label: "t") { _ in DBTestLogHandler(sink: lines) })
            #expect(try c.generations().isEmpty)
        }
        #expect(lines.lines.filter { $0.contains("host key verification is OFF") }.count == 2)
    }

    @Test func droppedUploadLeavesNoObjectUnderTheFinalName() throws {
        guard let s = SFTPTestServer.get() else { return }
        let proxy = try SFTPProxy(upstreamPort: s.port)
        let d = s.destination(port: proxy.port)
        let c = try SFTPReplicaClient(destination: d)
        let g = try #require(Generation(name: "00000000000000ae"))
        #expect(try c.generations().isEmpty)  // connected
        var data = [UInt8](repeating: 0, count: 4 << 20)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: (i &* 2654435761) >> 13) }
        try proxy.mode("cut:1000000")
        do {
            _ = try c.writeSnapshot(generation: g, index: 5, body: ReplicaClientConformance.body(data))
            Issue.record("expected the upload to fail")
        } catch {
            print("cut upload -> \(error.oneLine)")
            #expect(error.oneLine.contains("curl error"), "\(error.oneLine)")
        }
        #expect((proxy.stats["cut"] as? Int ?? 0) >= 1)
        let final = d.path! + "/" + ReplicaPaths.snapshot(g, index: 5)
        #expect(!FileManager.default.fileExists(atPath: final))
        try proxy.mode("pass")
        #expect(try c.snapshots(generation: g).isEmpty)
        _ = try c.writeSnapshot(generation: g, index: 5, body: ReplicaClientConformance.body(data))
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(try c.snapshots(generation: g)[0])) == data)
        #expect(SFTPTestServer.files(under: d.path!).allSatisfy { !$0.hasSuffix(".tmp") }, "\(SFTPTestServer.files(under: d.path!))")
    }

    @Test func oneConnectionForManyOperationsAndRedialAfterADrop() throws {
        guard let s = SFTPTestServer.get() else { return }
        let proxy = try SFTPProxy(upstreamPort: s.port)
        let c = try SFTPReplicaClient(destination: s.destination(port: proxy.port))
        let g = try #require(Generation(name: "00000000000000af"))
        for i in 0..<10 {
            _ = try c.writeWALSegment(position: WALPosition(generation: g, index: 0, offset: UInt64(i) * 4096),
                                      body: ReplicaClientConformance.body([UInt8(i)]))
        }
        #expect(try c.walSegments(generation: g).count == 10)
        _ = try ReplicaClientConformance.bytes(of: c.openWALSegment(try c.walSegments(generation: g)[3]))
        #expect(proxy.connections == 1, "\(proxy.stats)")
        try proxy.mode("drop")
        try proxy.mode("pass")
        #expect(try c.walSegments(generation: g).count == 10)  // re-dialled transparently
        #expect(proxy.connections == 2, "\(proxy.stats)")
        try c.deleteGeneration(g)
    }

    @Test func unreachableHostAndWrongPasswordAreOneLineWithoutSecrets() throws {
        guard let s = SFTPTestServer.get() else { return }
        var bad = s.destination()
        bad.keyPath = nil
        bad.password = "wrong-\(s.password)"
        var down = s.destination(port: 1)
        down.password = s.password
        for (d, code) in [(bad, "curl error 67"), (down, "curl error 7")] {
            let c = try SFTPReplicaClient(destination: d)
            let started = Date()
            do { _ = try c.generations(); Issue.record("expected an error") } catch {
                let text = error.oneLine
                print("error -> \(text)")
                #expect(text.contains(code), "\(text)")
                #expect(text.contains("sftp replica sftp://\(s.user)@127.0.0.1:"), "\(text)")
                #expect(!text.contains("\n"))
                s.assertNoSecret(text)
                #expect(!text.contains(bad.password!))
            }
            #expect(Date().timeIntervalSince(started) < 30)
        }
    }

    @Test func refusedRSAKeyErrorExplainsLibssh2() throws {
        guard let s = SFTPTestServer.get() else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sftp-rsa-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        p.arguments = ["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", dir + "/id_rsa"]
        try p.run(); p.waitUntilExit()
        var d = s.destination()
        d.keyPath = dir + "/id_rsa"
        let c = try SFTPReplicaClient(destination: d)
        do { _ = try c.generations(); Issue.record("expected an authentication failure") } catch {
            let text = error.oneLine
            print("rsa key -> \(text)")
            #expect(text.contains("curl error 67") && text.contains("the key is RSA: libssh2 1.10"), "\(text)")
        }
    }
}
