import Foundation
import Logging
import Testing
@testable import ReplicationKit

/// The SFTP client without a server: host-key parsing, known_hosts rules, listing parsing, paths, config errors.
@Suite("SFTP client units")
struct SFTPUnitTests {
    static let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcPtvN7WjSC7KkQcdVWiWy+4w+jweZj09J8dm4bZH7i fixed"

    @Test func fingerprintOfAPublicKeyLine() throws {
        // Expected value from `ssh-keygen -lf -E sha256` on the same key.
        #expect(try SFTPHostKey.fingerprint(ofHostKey: Self.line) == "SHA256:mm1HYeHJbRrQfejUegZs5fSUZ6TGQxdkR7pdNJL/CGg")
        #expect(try SFTPHostKey.fingerprint(ofHostKey: "  [h]:22 " + Self.line + "\n") == "SHA256:mm1HYeHJbRrQfejUegZs5fSUZ6TGQxdkR7pdNJL/CGg")
        #expect(try SFTPHostKey.fingerprint(ofHostKey: "SHA256:mm1HYeHJbRrQfejUegZs5fSUZ6TGQxdkR7pdNJL/CGg=") == "SHA256:mm1HYeHJbRrQfejUegZs5fSUZ6TGQxdkR7pdNJL/CGg")
        #expect(throws: ReplicationError.self) { try SFTPHostKey.fingerprint(ofHostKey: "SHA256:abc") }
        #expect(throws: ReplicationError.self) { try SFTPHostKey.fingerprint(ofHostKey: "not a key") }
        // The blob says ssh-ed25519, the line says ecdsa: refused.
        #expect(throws: ReplicationError.self) {
            try SFTPHostKey.fingerprint(ofHostKey: Self.line.replacingOccurrences(of: "ssh-ed25519 ", with: "ecdsa-sha2-nistp256 "))
        }
    }

    @Test func knownHostsLookupRules() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcPtvN7WjSC7KkQcdVWiWy+4w+jweZj09J8dm4bZH7i"
        #expect(SFTPHostKey.knownHostsName(host: "h", port: 22) == "h")
        #expect(SFTPHostKey.knownHostsName(host: "h", port: 2222) == "[h]:2222")
        #expect(SFTPHostKey.hasEntry(knownHosts: "h \(key)\n", host: "h", port: 22))
        #expect(!SFTPHostKey.hasEntry(knownHosts: "h \(key)\n", host: "h", port: 2222))  // non-22 needs [h]:port
        #expect(SFTPHostKey.hasEntry(knownHosts: "# c\n\nother,[h]:2222 \(key)\n", host: "h", port: 2222))
        #expect(SFTPHostKey.hasEntry(knownHosts: "*.example.com \(key)", host: "db.example.com", port: 22))
        #expect(!SFTPHostKey.hasEntry(knownHosts: "*.example.com,!db.example.com \(key)", host: "db.example.com", port: 22))
        #expect(SFTPHostKey.hasEntry(knownHosts: "H?ST \(key)", host: "host", port: 22))
        #expect(!SFTPHostKey.hasEntry(knownHosts: "@revoked h \(key)\n@cert-authority h \(key)", host: "h", port: 22))
        #expect(!SFTPHostKey.hasEntry(knownHosts: "h not-a-key-type AAAA", host: "h", port: 22))
        // Hashed names (`ssh-keygen -H`): HMAC-SHA1 of the name under the salt (vectors from Python's hmac).
        let hashed = "|1|AAECAwQFBgcICQoLDA0ODxAREhM=|zKYaAqmSav3Qxr2sffNqWFIcbe4= \(key)"
        #expect(SFTPHostKey.hasEntry(knownHosts: hashed, host: "127.0.0.1", port: 2222))
        #expect(!SFTPHostKey.hasEntry(knownHosts: hashed, host: "127.0.0.1", port: 2223))
        #expect(SFTPHostKey.hasEntry(knownHosts: "|1|AAECAwQFBgcICQoLDA0ODxAREhM=|nnUK16ANsXd3hL31YfAkGOluSjU= \(key)",
                                     host: "example.com", port: 22))
    }

    @Test func longListingParsing() {
        let text = """
            drwxr-xr-x    3 rktest   rktest       4096 Dec  5 17:21 .
            drwxr-xr-x    3 rktest   rktest       4096 Dec  5 17:21 ..
            drwxr-xr-x    2 rktest   rktest       4096 Dec  5 17:21 0123456789abcdef
            -rw-r--r--    1 rktest   rktest          6 Dec  5 17:21 0000000000000001.snapshot.lz4
            lrwxrwxrwx    1 rktest   rktest          6 Dec  5 17:21 link -> x
            """
        let e = SFTPReplicaClient.parseListing(text)
        #expect(e.map(\.name) == ["0123456789abcdef", "0000000000000001.snapshot.lz4"])
        #expect(e.map(\.isDirectory) == [true, false])
    }

    static func destination(path: String?, known: String? = nil) -> SFTPDestination {
        SFTPDestination(host: "127.0.0.1:2222", user: "u", password: "pw-SECRET-1", path: path, hostKey: known == nil ? Self.line : nil,
                        knownHostsPath: known)
    }

    @Test func pathsAndLocationNeverShowThePassword() throws {
        let abs = try SFTPReplicaClient(destination: Self.destination(path: "/srv/./db/"))
        #expect(abs.location == "sftp://u@127.0.0.1:2222/srv/db")
        #expect(abs.urlPath("generations") == "/srv/db/generations")
        #expect(abs.quotePath("generations/x") == "\"/srv/db/generations/x\"")
        let rel = try SFTPReplicaClient(destination: Self.destination(path: "backups/db"))
        #expect(rel.location == "sftp://u@127.0.0.1:2222/~/backups/db")
        #expect(rel.urlPath("generations") == "/~/backups/db/generations")
        #expect(rel.quotePath("generations") == "\"backups/db/generations\"")
        let home = try SFTPReplicaClient(destination: Self.destination(path: nil))
        #expect(home.urlPath("generations") == "/~/generations")
        #expect(home.quotePath("a\"b") == "\"a\\\"b\"")
        #expect(SFTPSession.encodePath("/~/a b/%") == "/~/a%20b/%25")
        #expect(try SFTPReplicaClient.splitHost("[::1]:2022") == ("::1", 2022))
        #expect(try SFTPReplicaClient.splitHost("h") == ("h", 22))
        for c in [abs, rel, home] { #expect(!c.location.contains("SECRET")) }
        let made = try ReplicaClientFactory.make(ReplicaConfig(destination: .sftp(Self.destination(path: "/x"))))
        #expect(made.type == "sftp")
    }

    @Test func configErrorsBeforeConnecting() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sftp-kh-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func message(_ d: SFTPDestination) -> String {
            do { _ = try SFTPReplicaClient(destination: d); return "no error" } catch { return error.oneLine }
        }
        let missing = message(Self.destination(path: "/x", known: dir + "/none"))
        #expect(missing.contains("does not exist") && missing.contains("[127.0.0.1]:2222"), "\(missing)")
        try "other \(Self.line)\n".write(toFile: dir + "/kh", atomically: true, encoding: .utf8)
        let noEntry = message(Self.destination(path: "/x", known: dir + "/kh"))
        #expect(noEntry.contains("no entry for [127.0.0.1]:2222"), "\(noEntry)")
        // Default: ~/.ssh/known_hosts under $HOME.
        let d = SFTPDestination(host: "h", user: "u", password: "p", hostKey: nil)
        do { _ = try SFTPReplicaClient(destination: d, environment: ["HOME": dir]); Issue.record("expected an error") } catch {
            #expect(error.oneLine.contains(dir + "/.ssh/known_hosts"), "\(error.oneLine)")
        }
        let noAuth = message(SFTPDestination(host: "h", user: "u", hostKey: Self.line))
        #expect(noAuth.contains("password or key-path required"), "\(noAuth)")
        for m in [missing, noEntry, noAuth] { #expect(!m.contains("SECRET")) }
    }
}
