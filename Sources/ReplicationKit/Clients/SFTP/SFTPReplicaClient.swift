#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Foundation
import Logging

/// A replica in a directory on an SSH server, over libcurl's SFTP (libssh2), in the Litestream v0.4 layout.
///
/// One connection per replica, reused for every request (see `SFTPSession`). The host key is always verified
/// (a pinned `host-key` or a known_hosts file) unless `insecure-skip-host-key-check: true`. Uploads go to a
/// hidden temporary name in the target directory and are renamed onto the final name, so an interrupted upload
/// never leaves a partial object under a listed name. Sizes and modification times come from a per-file stat.
public final class SFTPReplicaClient: ReplicaClient {
    public var type: String { "sftp" }
    /// `sftp://user@host:port/path`; never the password.
    public let location: String
    let session: SFTPSession
    /// Remote root for URLs: `/~` (login directory), `/~/rel`, `/abs` or `` (filesystem root).
    let urlRoot: String
    /// Remote root for quote commands (libcurl expands `/~/` only in unquoted arguments): `rel/`, `/abs/` or ``.
    let quoteRoot: String
    private let logger: Logger
    private var operations: ReplicaOperationMetrics { ReplicaOperationMetrics.for(type: type) }

    /// Builds a client from its configuration; checks the host-key settings and key file before any connection.
    /// - Throws: `ReplicationError(.config)` for a missing credential, an unreadable key, a malformed `host-key`,
    ///   or a known_hosts file that is missing or has no entry for the host.
    public init(destination d: SFTPDestination, logger: Logger = Logger(label: "replicationkit.sftp"),
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.logger = logger
        let (host, port) = try Self.splitHost(d.host)
        var comps = (d.path ?? "").split(separator: "/").map(String.init).filter { $0 != "." && !$0.isEmpty }
        let absolute = d.path?.hasPrefix("/") ?? false
        if !absolute, comps.first == "~" { comps.removeFirst() }
        let joined = comps.joined(separator: "/")
        if absolute {
            urlRoot = joined.isEmpty ? "" : "/" + joined
            quoteRoot = "/" + (joined.isEmpty ? "" : joined + "/")
        } else {
            urlRoot = "/~" + (joined.isEmpty ? "" : "/" + joined)
            quoteRoot = joined.isEmpty ? "" : joined + "/"
        }
        let hostPart = port == 22 && !d.host.hasSuffix(":22") ? host : "\(host.contains(":") ? "[\(host)]" : host):\(port)"
        location = "sftp://\(d.user)@\(hostPart)" + (absolute ? urlRoot : (joined.isEmpty ? "" : "/~/" + joined))

        guard d.password != nil || d.keyPath != nil else {
            throw ReplicationError(.config, "sftp replica \(location): password or key-path required")
        }
        if let k = d.keyPath, access(k, R_OK) != 0 {
            throw ReplicationError(.config, "sftp replica \(location): key-path \(k) cannot be read: \(String(cString: strerror(errno)))")
        }
        let check: SFTPHostKeyCheck
        if d.insecureSkipHostKeyCheck {
            check = .insecure
        } else if let hk = d.hostKey, !hk.trimmingCharacters(in: .whitespaces).isEmpty {
            check = .fingerprint(String(try Self.scoped(location) { try SFTPHostKey.fingerprint(ofHostKey: hk) }.dropFirst("SHA256:".count)))
        } else {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            let path = d.knownHostsPath ?? home + "/.ssh/known_hosts"
            try Self.scoped(location) { try SFTPHostKey.requireEntry(knownHostsPath: path, host: host, port: port) }
            check = .knownHosts(path: path)
        }
        try CurlLibrary.load(for: "sftp replica \(location)")
        try CryptoLibrary.load(for: "sftp replica \(location)")
        session = SFTPSession(config: SFTPSessionConfig(host: host, port: port, user: d.user, password: d.password,
                                                        keyPath: d.keyPath, keyPassphrase: d.keyPassphrase, hostKey: check))
        secrets = [d.password, d.keyPassphrase].compactMap { $0 }.filter { !$0.isEmpty }
        keyIsRSA = d.keyPath.map(Self.isRSAKey) ?? false
        if check == .insecure {
            logger.warning("sftp host key verification is OFF (insecure-skip-host-key-check: true): the server is not authenticated and a man-in-the-middle can read and alter the replica",
                           metadata: ["replica.type": "sftp", "sftp.location": "\(location)"])
        }
    }

    private let secrets: [String]
    private let keyIsRSA: Bool

    private static func scoped<T>(_ location: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ReplicationError {
            throw ReplicationError(e.code, "sftp replica \(location): " + e.message.replacingOccurrences(of: "sftp: ", with: ""))
        }
    }

    /// `host`, `host:port`, `[v6]:port` → (host, port); port 22 when absent.
    static func splitHost(_ s: String) throws -> (String, Int) {
        if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
            let h = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            if rest.isEmpty { return (h, 22) }
            guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (1...65535).contains(p) else {
                throw ReplicationError(.config, "sftp: invalid host \"\(s)\"")
            }
            return (h, p)
        }
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 2 {
            guard let p = Int(parts[1]), (1...65535).contains(p), !parts[0].isEmpty else {
                throw ReplicationError(.config, "sftp: invalid host \"\(s)\"")
            }
            return (String(parts[0]), p)
        }
        guard !s.isEmpty else { throw ReplicationError(.config, "host required for sftp replica") }
        return (s, 22)
    }

    /// Whether a private key file holds an RSA key (PEM `RSA PRIVATE KEY`, or `ssh-rsa` in an OpenSSH key).
    static func isRSAKey(_ path: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: path) else { return false }
        let text = String(decoding: data.prefix(1 << 16), as: UTF8.self)
        if text.contains("BEGIN RSA PRIVATE KEY") { return true }
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let raw = Data(base64Encoded: String(body.prefix(400 / 3 * 4))) else { return false }
        return String(decoding: raw.prefix(300), as: UTF8.self).contains("ssh-rsa")
    }

    // MARK: paths

    func urlPath(_ rel: String) -> String { urlRoot + "/" + rel }
    func quotePath(_ rel: String) -> String { SFTPSession.quoteArg(quoteRoot + rel) }

    public func objectName(snapshot s: SnapshotInfo) -> String {
        ReplicaPaths.snapshot(s.generation, index: s.index, layout: s.layout)
    }

    public func objectName(segment s: WALSegmentInfo) -> String {
        ReplicaPaths.walSegment(s.generation, index: s.index, offset: s.offset, layout: s.layout)
    }

    // MARK: errors

    /// One line: replica, operation, what failed (host-key detail when that is the cause), curl code; secrets removed.
    func failure(_ op: String, _ rel: String, _ f: SFTPFailure) -> ReplicationError {
        var detail = f.text
        if f.code == CURLE_PEER_FAILED_VERIFICATION {
            detail = hostKeyDetail(f)
        } else if f.code == CURLE_LOGIN_DENIED {
            detail += " (user \(session.config.user); offered:"
                + (session.config.password != nil ? " password" : "")
                + (session.config.keyPath.map { " key \($0)" } ?? "") + ")"
            if keyIsRSA {
                detail += "; the key is RSA: libssh2 1.10 signs only with ssh-rsa (SHA-1), which OpenSSH 8.8+ refuses — use an ed25519 or ECDSA key"
            }
        }
        var text = "sftp replica \(location): \(op)\(rel.isEmpty ? "" : " " + rel): \(detail) (curl error \(f.code.rawValue))"
        text = text.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        for s in secrets { text = text.replacingOccurrences(of: s, with: "[redacted]") }
        let notFound = f.code == CURLE_REMOTE_FILE_NOT_FOUND
        return ReplicationError(notFound ? .notFound : .io, text, cause: .curl(f.code.rawValue))
    }

    private func hostKeyDetail(_ f: SFTPFailure) -> String {
        switch session.config.hostKey {
        case .fingerprint(let expected):
            // libcurl: "Denied establishing ssh session: mismatch sha256 fingerprint. Remote X is not equal to Y"
            if let r = f.text.range(of: "Remote ") {
                let offered = f.text[r.upperBound...].split(separator: " ").first.map { String($0) } ?? "?"
                return "host key mismatch: expected SHA256:\(expected), server offered SHA256:\(offered.replacingOccurrences(of: "=", with: "")); refusing to connect"
            }
            return "host key verification failed (expected SHA256:\(expected)): \(f.text)"
        case .knownHosts(let path):
            let name = SFTPHostKey.knownHostsName(host: session.config.host, port: session.config.port)
            let offered = f.offeredFingerprint.map { ", server offered \($0)" } ?? ""
            switch f.knownHostsMatch {
            case Int32(CURLKHMATCH_MISMATCH.rawValue):
                return "host key mismatch: \(path) has a different key for \(name)\(offered); refusing to connect"
            case Int32(CURLKHMATCH_MISSING.rawValue):
                return "host key not found: \(path) has no key of the offered type for \(name)\(offered); refusing to connect"
            default:
                return f.text
            }
        case .insecure:
            return f.text
        }
    }

    private func run(_ op: String, _ rel: String, _ request: SFTPRequest) throws -> SFTPResponse {
        do { return try session.perform(request) } catch { throw failure(op, rel, error) }
    }

    // MARK: listing

    struct Entry { var name: String; var isDirectory: Bool }

    /// Entries of a directory (files and directories; `.`/`..`, symlinks and others skipped); missing ⇒ nil.
    func listDirectory(_ rel: String) throws -> [Entry]? {
        let body: [UInt8]
        do { body = try session.perform(.list(dir: urlPath(rel))).body } catch {
            if error.code == CURLE_REMOTE_FILE_NOT_FOUND { return nil }
            throw failure("list", rel, error)
        }
        return Self.parseListing(String(decoding: body, as: UTF8.self))
    }

    /// Parses libcurl's long listing (the server's `ls -l` lines): type from the first character, name last.
    static func parseListing(_ text: String) -> [Entry] {
        var out: [Entry] = []
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            guard let kind = line.first, kind == "-" || kind == "d",
                  let name = line.split(separator: " ", omittingEmptySubsequences: true).last.map(String.init),
                  name != ".", name != ".." else { continue }
            out.append(Entry(name: name, isDirectory: kind == "d"))
        }
        return out
    }

    /// Exact size and modification time (seconds) of one file.
    func stat(_ rel: String) throws -> (size: UInt64, modified: Date) {
        let r = try run("stat", rel, .stat(path: urlPath(rel)))
        return (UInt64(max(0, r.size)), Date(timeIntervalSince1970: TimeInterval(max(0, r.mtime))))
    }

    public func generations() throws -> [Generation] {
        let entries = try listDirectory(ReplicaPaths.generationsDir) ?? []
        return entries.filter(\.isDirectory).compactMap { Generation(name: $0.name) }.sorted()
    }

    public func snapshots(generation: Generation) throws -> [SnapshotInfo] {
        let dir = ReplicaPaths.generation(generation) + "/snapshots"
        var out: [SnapshotInfo] = []
        for e in try listDirectory(dir) ?? [] where !e.isDirectory {
            guard let (index, layout) = ReplicaPaths.parseSnapshotName(e.name) else { continue }
            let s = try stat(dir + "/" + e.name)
            out.append(SnapshotInfo(generation: generation, index: index, size: s.size, createdAt: s.modified, layout: layout))
        }
        return out.sorted { ($0.index, $0.layout == .v04 ? 1 : 0) < ($1.index, $1.layout == .v04 ? 1 : 0) }
    }

    public func walSegments(generation: Generation) throws -> [WALSegmentInfo] {
        let dir = ReplicaPaths.generation(generation) + "/wal"
        var out: [WALSegmentInfo] = []
        for e in try listDirectory(dir) ?? [] {
            if e.isDirectory {
                // v0.4 index directory (16 hex digits, as written) holding `<offset>.wal.lz4` files.
                guard let index = Hex.parseStrict(Substring(e.name), width: 16), index <= UInt64(maxWALIndex) else { continue }
                for f in try listDirectory(dir + "/" + e.name) ?? [] where !f.isDirectory {
                    guard let offset = ReplicaPaths.parseV04OffsetName(f.name) else { continue }
                    let s = try stat(dir + "/" + e.name + "/" + f.name)
                    out.append(WALSegmentInfo(generation: generation, index: UInt32(index), offset: offset, size: s.size,
                                              createdAt: s.modified, layout: .v04))
                }
            } else if let (index, offset) = ReplicaPaths.parseV03SegmentName(e.name) {
                let s = try stat(dir + "/" + e.name)
                out.append(WALSegmentInfo(generation: generation, index: index, offset: offset, size: s.size,
                                          createdAt: s.modified, layout: .v03))
            }
        }
        return out.sorted { ($0.index, $0.offset) < ($1.index, $1.offset) }
    }

    // MARK: writing

    /// Stages the body in an unlinked temporary file, uploads it to `.<name>.<random>.tmp` beside the target
    /// (creating directories), then (post-quote) removes any existing target and renames the upload onto it.
    func put(_ rel: String, body: ObjectBody) throws -> UInt64 {
        let fd = try TempFile.make()
        defer { try? fd.close() }
        var size: UInt64 = 0
        try body { bytes in
            try fd.writeAll(bytes)
            size += UInt64(bytes.count)
        }
        let slash = rel.lastIndex(of: "/")
        let dir = slash.map { String(rel[..<$0]) + "/" } ?? ""
        let name = slash.map { String(rel[rel.index(after: $0)...]) } ?? rel
        let tmp = dir + "." + name + "." + String(UInt64.random(in: 0...UInt64.max), radix: 36) + ".tmp"
        let post = ["*rm " + quotePath(rel), "rename " + quotePath(tmp) + " " + quotePath(rel)]
        do throws(SFTPFailure) {
            let r = try session.perform(.upload(path: urlPath(tmp), fd: fd.raw, size: size, postQuote: post))
            guard r.uploaded == Int64(size) else {
                throw SFTPFailure(code: CURLE_UPLOAD_FAILED, text: "sent \(r.uploaded) of \(size) bytes")
            }
        } catch {
            let unreachable: Set<UInt32> = [CURLE_PEER_FAILED_VERIFICATION.rawValue, CURLE_LOGIN_DENIED.rawValue,
                                            CURLE_COULDNT_CONNECT.rawValue, CURLE_COULDNT_RESOLVE_HOST.rawValue]
            if !unreachable.contains(error.code.rawValue) {
                _ = try? session.perform(.quote(["*rm " + quotePath(tmp)]))  // best effort: no stray temporary file
            }
            throw failure("put", rel, error)
        }
        operations.record(.put, bytes: size)
        return size
    }

    public func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
        let started = Date()
        let size = try put(ReplicaPaths.snapshot(generation, index: index), body: body)
        return SnapshotInfo(generation: generation, index: index, size: size, createdAt: started)
    }

    public func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
        let started = Date()
        let rel = ReplicaPaths.walSegment(position.generation, index: position.index, offset: position.offset)
        let size = try put(rel, body: body)
        return WALSegmentInfo(generation: position.generation, index: position.index, offset: position.offset,
                              size: size, createdAt: started)
    }

    // MARK: reading

    /// Streams the file into an unlinked temporary file and returns it positioned at its start.
    func get(_ rel: String) throws -> any ByteSource {
        let fd = try TempFile.make()
        do {
            _ = try run("get", rel, .download(path: urlPath(rel), fd: fd.raw))
            let n = try fd.size()
            operations.record(.get, bytes: n)
            try fd.seek(to: 0)
        } catch {
            try? fd.close()
            throw error
        }
        return FileByteSource(fd)
    }

    public func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource { try get(objectName(snapshot: snapshot)) }

    public func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource { try get(objectName(segment: segment)) }

    // MARK: deleting

    /// `rm` per file (missing ignored), then `rmdir` per directory in the given order (non-empty ignored).
    func remove(files: [String], thenDirectories dirs: [String] = []) throws {
        let cmds = files.map { "*rm " + quotePath($0) } + dirs.map { "*rmdir " + quotePath($0) }
        var start = 0
        while start < cmds.count {
            let batch = Array(cmds[start..<min(start + 256, cmds.count)])
            start += batch.count
            _ = try run("delete", files.first ?? dirs.first ?? "", .quote(batch))
        }
        for _ in files { operations.record(.delete) }
    }

    public func deleteGeneration(_ generation: Generation) throws {
        let root = ReplicaPaths.generation(generation)
        var files: [String] = [], dirs: [String] = []
        func walk(_ rel: String, depth: Int) throws {
            guard depth < 8, let entries = try listDirectory(rel) else { return }
            for e in entries {
                let p = rel + "/" + e.name
                if e.isDirectory { try walk(p, depth: depth + 1); dirs.append(p) } else { files.append(p) }
            }
        }
        guard try listDirectory(root) != nil else { return }
        try walk(root, depth: 0)
        try remove(files: files, thenDirectories: dirs + [root])  // children were appended before their parents
        if let left = try listDirectory(root) {
            throw ReplicationError(.io, "sftp replica \(location): delete generation \(root): \(left.count) entries could not be removed")
        }
    }

    public func deleteSnapshot(_ snapshot: SnapshotInfo) throws {
        try remove(files: [objectName(snapshot: snapshot)])
    }

    public func deleteWALSegments(_ segments: [WALSegmentInfo]) throws {
        guard !segments.isEmpty else { return }
        var dirs: [String] = []
        for s in segments where s.layout == .v04 {
            let d = ReplicaPaths.generation(s.generation) + "/wal/" + Hex.format(s.index, width: 16)
            if dirs.last != d && !dirs.contains(d) { dirs.append(d) }
        }
        // Emptied index directories are pruned (a non-empty one stays), as the file backend does.
        try remove(files: segments.map { objectName(segment: $0) }, thenDirectories: dirs)
    }
}
