import CCrypto
import Foundation

/// How an SFTP replica verifies the server's host key.
public enum SFTPHostKeyCheck: Sendable, Equatable {
    /// Pinned SHA-256 fingerprint: unpadded base64 of SHA-256 over the key blob (as `ssh-keygen -l` prints it,
    /// without the `SHA256:` prefix). Passed to `CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256`.
    case fingerprint(String)
    /// A known_hosts file that must exist and hold an entry for the host (`CURLOPT_SSH_KNOWNHOSTS`).
    case knownHosts(path: String)
    /// No verification (`insecure-skip-host-key-check: true`).
    case insecure
}

/// Host-key parsing and known_hosts lookup rules (OpenSSH formats).
public enum SFTPHostKey {
    /// The fingerprint (`SHA256:` plus unpadded base64) of a `host-key` value: an OpenSSH public-key line
    /// (`ssh-ed25519 AAAA… [comment]`, optionally preceded by known_hosts host patterns) or a `SHA256:` fingerprint.
    /// - Throws: `ReplicationError(.config)` naming what is wrong (never echoing more than the key type).
    public static func fingerprint(ofHostKey value: String) throws -> String {
        let v = value.trimmingCharacters(in: .whitespacesAndNewlines)
        if v.hasPrefix("SHA256:") {
            var b64 = String(v.dropFirst("SHA256:".count))
            while b64.hasSuffix("=") { b64.removeLast() }
            guard let raw = decodeBase64(b64), raw.count == 32 else {
                throw ReplicationError(.config, "sftp: host-key: \"SHA256:\" fingerprint is not 32 bytes of base64")
            }
            return "SHA256:" + b64
        }
        let fields = v.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let i = fields.firstIndex(where: isKeyType), i + 1 < fields.count else {
            throw ReplicationError(.config, "sftp: host-key must be an OpenSSH public-key line (\"ssh-ed25519 AAAA…\") "
                + "or a \"SHA256:…\" fingerprint")
        }
        guard let blob = decodeBase64(fields[i + 1]), blobKeyType(blob) == fields[i] else {
            throw ReplicationError(.config, "sftp: host-key: the base64 key of the \(fields[i]) line does not decode to a \(fields[i]) key")
        }
        return fingerprint(ofBlob: blob)
    }

    /// `SHA256:` plus the unpadded base64 SHA-256 of a raw key blob.
    public static func fingerprint(ofBlob blob: [UInt8]) -> String {
        var b64 = Digest.base64(Digest.sha256(blob))
        while b64.hasSuffix("=") { b64.removeLast() }
        return "SHA256:" + b64
    }

    static func isKeyType(_ s: String) -> Bool {
        s.hasPrefix("ssh-") || s.hasPrefix("ecdsa-sha2-") || s.hasPrefix("sk-")
    }

    /// The key type string at the start of an SSH key blob (uint32 length + name).
    static func blobKeyType(_ blob: [UInt8]) -> String? {
        guard blob.count >= 4 else { return nil }
        let n = Int(blob[0]) << 24 | Int(blob[1]) << 16 | Int(blob[2]) << 8 | Int(blob[3])
        guard n > 0, n < 64, blob.count >= 4 + n else { return nil }
        return String(decoding: blob[4..<(4 + n)], as: UTF8.self)
    }

    static func decodeBase64(_ s: String) -> [UInt8]? {
        var t = s
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t).map { [UInt8]($0) }
    }

    /// The name a host is stored under in known_hosts: `host` for port 22, else `[host]:port`.
    public static func knownHostsName(host: String, port: Int) -> String {
        port == 22 ? host : "[\(host)]:\(port)"
    }

    /// Whether known_hosts text holds a usable key line for the host (plain or hashed `|1|salt|hash` names,
    /// comma-separated patterns with `*`/`?` wildcards and `!` negation; `@revoked`/`@cert-authority` lines
    /// and comments are not entries).
    public static func hasEntry(knownHosts text: String, host: String, port: Int) -> Bool {
        let name = knownHostsName(host: host, port: port)
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix("@") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 3, isKeyType(String(fields[1])) else { continue }
            if hostsField(String(fields[0]), matches: name) { return true }
        }
        return false
    }

    /// Matches one known_hosts host field (comma-separated patterns or a single hashed name) against `name`.
    static func hostsField(_ field: String, matches name: String) -> Bool {
        if field.hasPrefix("|1|") { return hashedName(field, matches: name) }
        var matched = false
        for p in field.split(separator: ",") {
            if p.hasPrefix("!") {
                if glob(Array(p.dropFirst().lowercased().utf8), Array(name.lowercased().utf8)) { return false }
            } else if glob(Array(p.lowercased().utf8), Array(name.lowercased().utf8)) {
                matched = true
            }
        }
        return matched
    }

    /// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
    static func hashedName(_ field: String, matches name: String) -> Bool {
        let parts = field.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count == 4, let salt = decodeBase64(String(parts[2])), let want = decodeBase64(String(parts[3])) else {
            return false
        }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let data = Array(name.utf8)
        let ok = salt.withUnsafeBytes { s in
            data.withUnsafeBytes { d in
                HMAC(EVP_sha1(), s.baseAddress, Int32(s.count), d.bindMemory(to: UInt8.self).baseAddress, d.count, &out, &len)
            }
        }
        return ok != nil && Array(out.prefix(Int(len))) == want
    }

    /// OpenSSH-style wildcard match: `*` any run, `?` any one character.
    static func glob(_ p: [UInt8], _ s: [UInt8]) -> Bool {
        var pi = 0, si = 0, star = -1, mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) {
                pi += 1; si += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi; mark = si; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// Checks, before any connection, that `path` exists and names the host; the error says what to do.
    static func requireEntry(knownHostsPath path: String, host: String, port: Int) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReplicationError(.config, "sftp: known_hosts file \(path) does not exist or cannot be read: refusing to "
                + "connect to \(knownHostsName(host: host, port: port)) without verifying its host key (set host-key, "
                + "or add the host with `ssh-keyscan -p \(port) \(host) >> \(path)`)")
        }
        guard hasEntry(knownHosts: String(decoding: data, as: UTF8.self), host: host, port: port) else {
            throw ReplicationError(.config, "sftp: known_hosts file \(path) has no entry for "
                + "\(knownHostsName(host: host, port: port)): refusing to connect without verifying its host key "
                + "(set host-key, or add the host's key to the file)")
        }
    }
}
