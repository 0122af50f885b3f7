#if canImport(Glibc)
import Glibc
#endif
import CCurl
import Foundation

/// One SFTP request on the session's connection. Paths are remote paths as libcurl takes them: absolute, or
/// `/~/…` for the login (start) directory.
enum SFTPRequest {
    /// Long listing of a directory (libcurl prints the server's `ls -l` lines).
    case list(dir: String)
    /// Size and modification time (`CURLOPT_NOBODY` + `CURLOPT_FILETIME`: the file is opened, nothing is read).
    case stat(path: String)
    /// The file's bytes, written to `fd` from its current position.
    case download(path: String, fd: Int32)
    /// Uploads `size` bytes of `fd` (from offset 0) to `path`, creating missing directories, then runs `postQuote`.
    case upload(path: String, fd: Int32, size: UInt64, postQuote: [String])
    /// Runs quote commands (`rm`, `rmdir`, …; a leading `*` ignores that command's failure).
    case quote([String])
}

/// What a successful request returned.
struct SFTPResponse {
    var body: [UInt8] = []
    /// Content length (stat, download) or -1.
    var size: Int64 = -1
    /// Modification time in Unix seconds (stat) or -1.
    var mtime: Int64 = -1
    /// Bytes sent (upload).
    var uploaded: Int64 = 0
}

/// A failed request: the curl code and libcurl's error-buffer text (which carries libssh2's), plus what the
/// host-key check saw. Never holds a password or passphrase (libcurl does not print them).
struct SFTPFailure: Error {
    var code: CURLcode
    var text: String
    /// The known_hosts callback's verdict (`curl_khmatch`) and the server's key fingerprint, when it ran.
    var knownHostsMatch: Int32?
    var offeredFingerprint: String?
}

/// How to reach and authenticate to the server.
struct SFTPSessionConfig: Sendable {
    var host: String
    var port: Int
    var user: String
    var password: String?
    var keyPath: String?
    var keyPassphrase: String?
    var hostKey: SFTPHostKeyCheck
    var connectTimeout: Duration = .seconds(10)
    /// A transfer making no progress for this long fails.
    var stallTimeout: Duration = .seconds(30)
    /// Bound on a request without a body (list, stat, quote), including the SSH handshake.
    var requestTimeout: Duration = .seconds(120)
}

/// The single owner of one libcurl easy handle. libcurl keeps the SSH connection (and its SFTP channel) in the
/// handle's connection cache across `curl_easy_reset`, so every request after the first reuses it; a dropped
/// connection is detected by libcurl and re-dialled on the next request. Requests are serialised by a lock. The
/// handle is cleaned up once, in `deinit`.
final class SFTPSession: @unchecked Sendable {  // @unchecked: `handle` is only touched under `lock` (and in deinit).
    let config: SFTPSessionConfig
    private let lock = NSLock()
    private var handle: UnsafeMutableRawPointer?

    init(config: SFTPSessionConfig) {
        self.config = config
    }

    deinit {
        if let h = handle { rk_curl_easy_cleanup(h) }
    }

    /// `sftp://host:port` (brackets kept for IPv6 literals).
    var baseURL: String {
        let h = config.host.contains(":") && !config.host.hasPrefix("[") ? "[\(config.host)]" : config.host
        return "sftp://\(h):\(config.port)"
    }

    /// Runs a request; one immediate retry on a fresh connection when a reused one turns out to be dead.
    func perform(_ request: SFTPRequest) throws(SFTPFailure) -> SFTPResponse {
        lock.lock()
        defer { lock.unlock() }
        do { try CurlLibrary.load() } catch { throw SFTPFailure(code: CURLE_FAILED_INIT, text: error.message) }
        if case .knownHosts(let path) = config.hostKey {
            // libcurl connects without verification when the known_hosts file is missing: check first.
            do { try SFTPHostKey.requireEntry(knownHostsPath: path, host: config.host, port: config.port) } catch {
                throw SFTPFailure(code: CURLE_PEER_FAILED_VERIFICATION, text: (error as? ReplicationError)?.message ?? "\(error)")
            }
        }
        var attempt = 1
        while true {
            let (result, reused) = performOnce(request)
            switch result {
            case .success(let r):
                return r
            case .failure(let f):
                guard attempt == 1, reused, Self.connectionLost.contains(f.code.rawValue) else { throw f }
                attempt += 1
            }
        }
    }

    /// Codes meaning the connection broke (not a server-side refusal of the operation).
    static let connectionLost: Set<UInt32> = [
        CURLE_SSH.rawValue, CURLE_SEND_ERROR.rawValue, CURLE_RECV_ERROR.rawValue, CURLE_GOT_NOTHING.rawValue,
        CURLE_PARTIAL_FILE.rawValue, CURLE_COULDNT_CONNECT.rawValue,
    ]

    private func performOnce(_ request: SFTPRequest) -> (Result<SFTPResponse, SFTPFailure>, reused: Bool) {
        if handle == nil {
            guard let h = rk_curl_easy_init() else { fatalError("curl_easy_init failed: out of memory") }
            handle = h
        }
        let h = handle!
        let ctx = SFTPTransfer()
        let ud = Unmanaged.passRetained(ctx)
        var quote: UnsafeMutablePointer<curl_slist>?
        defer {
            // Drops every pointer into this call's memory; the connection stays in the handle's cache.
            rk_curl_easy_reset(h)
            rk_curl_slist_free_all(quote)
            ud.release()
        }
        var ok = true
        func set(_ r: CURLcode) { if r != CURLE_OK { ok = false } }
        let c = config
        var path: String
        switch request {
        case .list(let dir): path = dir.hasSuffix("/") ? dir : dir + "/"
        case .stat(let p), .download(let p, _), .upload(let p, _, _, _): path = p
        case .quote: path = "/."  // opened but not read (NOBODY): the cheapest target that always exists
        }
        set(rk_curl_setopt_string(h, CURLOPT_URL, baseURL + Self.encodePath(path)))
        set(rk_curl_setopt_string(h, CURLOPT_PROTOCOLS_STR, "sftp"))
        set(rk_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
        set(rk_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Self.millis(c.connectTimeout)))
        set(rk_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1))
        set(rk_curl_setopt_long(h, CURLOPT_TCP_KEEPIDLE, 30))
        set(rk_curl_setopt_long(h, CURLOPT_TCP_KEEPINTVL, 15))
        set(rk_curl_setopt_string(h, CURLOPT_USERNAME, c.user))
        var auth = 0
        if let pw = c.password {
            set(rk_curl_setopt_string(h, CURLOPT_PASSWORD, pw))
            auth |= Int(CURLSSH_AUTH_PASSWORD)
        }
        if let key = c.keyPath {
            set(rk_curl_setopt_string(h, CURLOPT_SSH_PRIVATE_KEYFILE, key))
            if let pp = c.keyPassphrase { set(rk_curl_setopt_string(h, CURLOPT_KEYPASSWD, pp)) }
            auth |= Int(CURLSSH_AUTH_PUBLICKEY)
        }
        set(rk_curl_setopt_long(h, CURLOPT_SSH_AUTH_TYPES, auth))
        switch c.hostKey {
        case .fingerprint(let fp):
            set(rk_curl_setopt_string(h, CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, fp))
        case .knownHosts(let file):
            set(rk_curl_setopt_string(h, CURLOPT_SSH_KNOWNHOSTS, file))
            set(rk_curl_setopt_ssh_strict_keyfunction(h, ctx.knownHosts))
        case .insecure:
            break
        }
        set(rk_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, ctx.errorBuffer))
        // A shutdown past its deadline aborts the transfer (`TransferAbort`).
        set(rk_curl_setopt_long(h, CURLOPT_NOPROGRESS, 0))
        set(rk_curl_setopt_xferinfo_function(h, sftpProgressCallback))
        set(rk_curl_setopt_write_function(h, sftpWriteCallback))
        set(rk_curl_setopt_pointer(h, CURLOPT_WRITEDATA, ud.toOpaque()))
        switch request {
        case .list:
            set(rk_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, Self.millis(c.requestTimeout)))
        case .stat:
            set(rk_curl_setopt_long(h, CURLOPT_NOBODY, 1))
            set(rk_curl_setopt_long(h, CURLOPT_FILETIME, 1))
            set(rk_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, Self.millis(c.requestTimeout)))
        case .download(_, let fd):
            ctx.sinkFD = fd
            if ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) < 0 {
                return (.failure(SFTPFailure(code: CURLE_WRITE_ERROR, text: "truncate download file: \(String(cString: strerror(errno)))")), false)
            }
            set(rk_curl_setopt_long(h, CURLOPT_BUFFERSIZE, 256 << 10))
            set(rk_curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1))
            set(rk_curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(1, Self.millis(c.stallTimeout) / 1000)))
        case .upload(_, let fd, let size, let post):
            ctx.sourceFD = fd
            ctx.sourceSize = size
            set(rk_curl_setopt_long(h, CURLOPT_UPLOAD, 1))
            set(rk_curl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(size)))
            set(rk_curl_setopt_read_function(h, sftpReadCallback))
            set(rk_curl_setopt_pointer(h, CURLOPT_READDATA, ud.toOpaque()))
            set(rk_curl_setopt_long(h, CURLOPT_UPLOAD_BUFFERSIZE, 256 << 10))
            set(rk_curl_setopt_long(h, CURLOPT_FTP_CREATE_MISSING_DIRS, Int(CURLFTP_CREATE_DIR.rawValue)))
            set(rk_curl_setopt_long(h, CURLOPT_NEW_FILE_PERMS, 0o644))
            set(rk_curl_setopt_long(h, CURLOPT_NEW_DIRECTORY_PERMS, 0o755))
            set(rk_curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1))
            set(rk_curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(1, Self.millis(c.stallTimeout) / 1000)))
            for q in post { quote = rk_curl_slist_append(quote, q) }
            set(rk_curl_setopt_slist(h, CURLOPT_POSTQUOTE, quote))
        case .quote(let cmds):
            for q in cmds { quote = rk_curl_slist_append(quote, q) }
            set(rk_curl_setopt_slist(h, CURLOPT_QUOTE, quote))
            set(rk_curl_setopt_long(h, CURLOPT_NOBODY, 1))
            set(rk_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, Self.millis(c.requestTimeout)))
        }
        precondition(ok, "curl_easy_setopt rejected an SFTP option")

        let rc = rk_curl_easy_perform(h)
        var connects = 0
        _ = rk_curl_getinfo_long(h, CURLINFO_NUM_CONNECTS, &connects)
        let reused = connects == 0
        if let failure = ctx.failure {
            return (.failure(SFTPFailure(code: CURLE_WRITE_ERROR, text: failure)), reused)
        }
        guard rc == CURLE_OK else {
            var f = SFTPFailure(code: rc, text: ctx.errorText.isEmpty ? String(cString: rk_curl_easy_strerror(rc)) : ctx.errorText)
            let kh = ctx.knownHosts.pointee
            if kh.called != 0 {
                f.knownHostsMatch = kh.match
                if kh.found_len > 0 {
                    f.offeredFingerprint = SFTPHostKey.fingerprint(ofBlob: Array(UnsafeBufferPointer(start: ctx.keyBuffer, count: kh.found_len)))
                }
            }
            return (.failure(f), reused)
        }
        var r = SFTPResponse(body: ctx.memory)
        var v: curl_off_t = -1
        if rk_curl_getinfo_off(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &v) == CURLE_OK { r.size = Int64(v) }
        v = -1
        if rk_curl_getinfo_off(h, CURLINFO_FILETIME_T, &v) == CURLE_OK { r.mtime = Int64(v) }
        v = 0
        if rk_curl_getinfo_off(h, CURLINFO_SIZE_UPLOAD_T, &v) == CURLE_OK { r.uploaded = Int64(v) }
        return (.success(r), reused)
    }

    /// Percent-encodes each path segment (keeps `/` and `~`).
    static func encodePath(_ p: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~/")
        return p.addingPercentEncoding(withAllowedCharacters: allowed) ?? p
    }

    /// A path as a quote-command argument: double-quoted, with `"` and `\` escaped.
    static func quoteArg(_ p: String) -> String {
        "\"" + p.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    private static func millis(_ d: Duration) -> Int {
        Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }
}

/// Per-request state reached from the C callbacks.
private final class SFTPTransfer {
    var memory: [UInt8] = []
    var sinkFD: Int32 = -1
    var sourceFD: Int32 = -1
    var sourceSize: UInt64 = 0
    var sent: UInt64 = 0
    var failure: String?
    let errorBuffer: UnsafeMutablePointer<CChar>
    /// Filled by the strict known_hosts callback (it keeps `keyBuffer` as the offered key's destination).
    let knownHosts: UnsafeMutablePointer<rk_curl_khresult>
    let keyBuffer: UnsafeMutablePointer<UInt8>

    init() {
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        keyBuffer = .allocate(capacity: 4096)
        knownHosts = .allocate(capacity: 1)
        knownHosts.initialize(to: rk_curl_khresult(called: 0, match: 0, found: keyBuffer, found_cap: 4096, found_len: 0))
    }

    deinit {
        errorBuffer.deallocate()
        keyBuffer.deallocate()
        knownHosts.deallocate()
    }

    var errorText: String { String(cString: errorBuffer).trimmingCharacters(in: .whitespacesAndNewlines) }
}

private func sftpProgressCallback(_ ud: UnsafeMutableRawPointer?, _ dlTotal: curl_off_t, _ dlNow: curl_off_t,
                                  _ ulTotal: curl_off_t, _ ulNow: curl_off_t) -> Int32 {
    TransferAbort.reasonToStop() == nil ? 0 : 1
}

private func sftpWriteCallback(_ ptr: UnsafeMutablePointer<CChar>, _ size: Int, _ n: Int,
                               _ ud: UnsafeMutableRawPointer?) -> Int {
    let ctx = Unmanaged<SFTPTransfer>.fromOpaque(ud!).takeUnretainedValue()
    let count = size * n
    guard ctx.sinkFD >= 0 else {
        guard ctx.memory.count + count <= 64 << 20 else { ctx.failure = "listing larger than 64 MiB"; return 0 }
        ctx.memory.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: count))
        return count
    }
    var done = 0
    while done < count {
        let w = write(ctx.sinkFD, ptr + done, count - done)
        if w < 0 {
            if errno == EINTR { continue }
            ctx.failure = "write download file: \(String(cString: strerror(errno)))"
            return 0
        }
        done += w
    }
    return count
}

private func sftpReadCallback(_ ptr: UnsafeMutablePointer<CChar>, _ size: Int, _ n: Int,
                              _ ud: UnsafeMutableRawPointer?) -> Int {
    let ctx = Unmanaged<SFTPTransfer>.fromOpaque(ud!).takeUnretainedValue()
    let want = Int(min(UInt64(size * n), ctx.sourceSize - ctx.sent))
    if want == 0 { return 0 }
    while true {
        let r = pread(ctx.sourceFD, ptr, want, off_t(ctx.sent))
        if r < 0 && errno == EINTR { continue }
        if r <= 0 {
            ctx.failure = "read staged upload: \(r < 0 ? String(cString: strerror(errno)) : "unexpected end of file")"
            return Int(CURL_READFUNC_ABORT)
        }
        ctx.sent += UInt64(r)
        return r
    }
}
