#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Where an Azure Blob replica lives: the account's blob service, a container and a name prefix.
public struct AzureBlobLocation: Sendable {
    /// The storage account.
    public var account: String
    /// The container.
    public var container: String
    /// Blob name prefix without leading or trailing `/`; empty = container root.
    public var prefix: String
    /// The configured endpoint, nil = `https://ACCOUNT.blob.core.windows.net`.
    public var endpoint: String?
    /// Base URL of the blob service without a trailing `/` (`http://127.0.0.1:10000/devstoreaccount1`).
    public var serviceURL: String

    /// Resolves the account and the service URL.
    /// - Parameters:
    ///   - account: `account-name`; nil = the first path segment of a path-style `endpoint` (Azurite form).
    /// - Throws: `ReplicationError(.config)` when no account can be found or the endpoint is not a URL.
    public init(account: String?, container: String, prefix: String?, endpoint: String?) throws {
        let ep = endpoint.flatMap { $0.isEmpty ? nil : $0 }
        var acct = account.flatMap { $0.isEmpty ? nil : $0 }
        if let e = ep {
            let withScheme = e.contains("://") ? e : "https://" + e
            guard let c = URLComponents(string: withScheme), let host = c.host, !host.isEmpty else {
                throw ReplicationError(.config, "abs replica: endpoint \"\(e)\" is not a URL")
            }
            let segments = c.path.split(separator: "/").map(String.init)
            if acct == nil, let first = segments.first { acct = first }
            serviceURL = withScheme.split(separator: "?", maxSplits: 1).first.map(String.init) ?? withScheme
            while serviceURL.hasSuffix("/") { serviceURL.removeLast() }
        } else {
            serviceURL = ""
        }
        guard let a = acct else {
            throw ReplicationError(.config, "account-name required for abs replica (or abs://ACCOUNT@CONTAINER/PATH, " +
                                   "or an endpoint whose path names the account)")
        }
        if ep == nil { serviceURL = "https://\(a).blob.core.windows.net" }
        guard !container.isEmpty else { throw ReplicationError(.config, "bucket required for abs replica") }
        self.account = a
        self.container = container
        self.prefix = (prefix ?? "").split(separator: "/").filter { $0 != "." && !$0.isEmpty }.joined(separator: "/")
        self.endpoint = ep
    }
}

/// A replica in an Azure Blob Storage container, in the Litestream v0.4 layout, over the Blob REST API with
/// libcurl: SharedKey, SAS or Azure AD bearer authorisation (`AzureCredentialChain`).
///
/// Every method blocks on the caller's thread. Bodies are staged in unlinked temporary files; objects smaller than
/// `blockThreshold` are one Put Blob, larger ones Put Block + Put Block List.
public final class AzureBlobReplicaClient: ReplicaClient {
    /// The REST version sent as `x-ms-version` (supports bearer tokens and `Creation-Time`).
    public static let apiVersion = "2021-08-06"

    /// Account, container, prefix and endpoint.
    public let abs: AzureBlobLocation
    /// Objects of at least this many bytes are uploaded in blocks.
    public let blockThreshold: UInt64
    /// Block size of block uploads.
    public let blockSize: UInt64
    /// `maxresults` of List Blobs; nil = the service default (5000).
    public let listPageSize: Int?
    let auth: AzureAuth
    let http: CurlHTTPClient
    let logger: Logger

    public var type: String { "abs" }

    /// `litestream_replica_operation_*{replica_type="abs"}`.
    var operations: ReplicaOperationMetrics { ReplicaOperationMetrics.for(type: type) }

    /// `abs://account@container/prefix`, plus the endpoint when one is set. Never a key, SAS or token.
    public var location: String {
        var s = "abs://\(abs.account)@\(abs.container)" + (abs.prefix.isEmpty ? "" : "/" + abs.prefix)
        if let e = abs.endpoint { s += " (endpoint \(AzureRedaction.redactSig(e)))" }
        return s
    }

    /// Which authorisation the client uses (`shared key`, `SAS token`, `managed identity (IMDS …)`, …).
    public var authDescription: String { auth.description }

    /// Creates a client.
    init(location: AzureBlobLocation, auth: AzureAuth, httpOptions: CurlHTTPOptions = CurlHTTPOptions(),
         blockThreshold: UInt64 = 8 << 20, blockSize: UInt64 = 4 << 20, listPageSize: Int? = nil,
         logger: Logger = Logger(label: "replicationkit.abs")) {
        abs = location
        self.auth = auth
        var httpLogger = logger
        // The HTTP client's debug lines carry request URLs, which hold the SAS signature: keep them off for SAS.
        if case .sas = auth, httpLogger.logLevel < .info { httpLogger.logLevel = .info }
        http = CurlHTTPClient(options: httpOptions, logger: httpLogger)
        self.blockThreshold = max(blockThreshold, 1)
        self.blockSize = max(blockSize, 1)
        self.listPageSize = listPageSize
        self.logger = logger
    }

    /// Builds a client from a replica destination and the credential chain.
    /// - Parameters:
    ///   - tokenRefreshMargin: bearer tokens are replaced this long before they expire.
    /// - Throws: `ReplicationError(.config)` for a missing account/container or a malformed key.
    public convenience init(destination d: AzureDestination,
                            environment: [String: String] = ProcessInfo.processInfo.environment,
                            httpOptions: CurlHTTPOptions? = nil, blockThreshold: UInt64 = 8 << 20,
                            blockSize: UInt64 = 4 << 20, listPageSize: Int? = nil,
                            tokenRefreshMargin: Duration = .seconds(300),
                            logger: Logger = Logger(label: "replicationkit.abs")) throws {
        let loc = try AzureBlobLocation(account: d.accountName, container: d.container, prefix: d.path, endpoint: d.endpoint)
        try CurlLibrary.load(for: "abs replica (account \(loc.account), container \(loc.container))")
        try CryptoLibrary.load(for: "abs replica (account \(loc.account), container \(loc.container))")
        var o = httpOptions ?? CurlHTTPOptions()
        o.skipVerify = o.skipVerify || d.skipVerify
        var tokenOptions = CurlHTTPOptions()
        tokenOptions.connectTimeout = .seconds(3)
        tokenOptions.maxAttempts = 3
        tokenOptions.skipVerify = o.skipVerify
        var tokenLogger = logger
        if tokenLogger.logLevel < .info { tokenLogger.logLevel = .info }
        let auth = try AzureCredentialChain.resolve(account: loc.account, accountKey: d.accountKey, sasToken: d.sasToken,
                                                    environment: environment, refreshMargin: tokenRefreshMargin,
                                                    tokens: CurlHTTPClient(options: tokenOptions, logger: tokenLogger))
        self.init(location: loc, auth: auth, httpOptions: o, blockThreshold: blockThreshold, blockSize: blockSize,
                  listPageSize: listPageSize, logger: logger)
    }

    // MARK: names and URLs

    /// The full blob name of a path relative to the replica root.
    func blobName(_ relative: String) -> String { abs.prefix.isEmpty ? relative : abs.prefix + "/" + relative }

    public func objectName(snapshot s: SnapshotInfo) -> String {
        ReplicaPaths.snapshot(s.generation, index: s.index, layout: s.layout)
    }

    public func objectName(segment s: WALSegmentInfo) -> String {
        ReplicaPaths.walSegment(s.generation, index: s.index, offset: s.offset, layout: s.layout)
    }

    /// The request URL and its encoded path (`blob` nil = the container itself).
    func address(blob: String?, query: [(String, String)]) -> (url: String, path: String) {
        let base = URLComponents(string: abs.serviceURL)
        var path = base?.percentEncodedPath ?? ""
        while path.hasSuffix("/") { path.removeLast() }
        path += "/" + SigV4Signer.uriEncode(abs.container, keepSlash: false)
        if let b = blob { path += "/" + SigV4Signer.uriEncode(b, keepSlash: true) }
        var origin = abs.serviceURL
        if let p = base?.percentEncodedPath, !p.isEmpty, origin.hasSuffix(p) { origin.removeLast(p.count) }
        var q = query.map { SigV4Signer.uriEncode($0.0, keepSlash: false) + "=" + SigV4Signer.uriEncode($0.1, keepSlash: false) }
        if case .sas(let token) = auth { q.append(token) }
        return (origin + path + (q.isEmpty ? "" : "?" + q.joined(separator: "&")), path)
    }

    // MARK: requests

    /// Removes the key, SAS signature and tokens from `text` and keeps it on one line.
    func scrub(_ text: String) -> String {
        var secrets: [String] = []
        if case .sas(let token) = auth { secrets.append(token) }
        return AzureRedaction.scrub(text, secrets: secrets)
    }

    /// Sends an authorised request and returns the 2xx response (or one whose status is in `accepting`); any other
    /// status becomes a `ReplicationError`. A bearer token the server rejects (401, or 403 AuthenticationFailed) is
    /// dropped and fetched again once.
    func send(_ method: String, blob: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
              body: HTTPBody = .empty, sink: HTTPResponseSink = .memory(limit: 16 << 20), what: String,
              accepting: Set<Int> = []) throws -> HTTPResponse {
        let addr = address(blob: blob, query: query)
        var refetched = false
        while true {
            let resp: HTTPResponse
            do {
                resp = try http.perform(sink: sink) {
                    var h: [(String, String)] = [("x-ms-date", AzureDate.format(Date())), ("x-ms-version", Self.apiVersion)] + headers
                    switch auth {
                    case .sharedKey(let signer):
                        var signed = h
                        if body.length > 0 { signed.append(("Content-Length", String(body.length))) }
                        let sts = AzureSharedKeySigner.stringToSign(account: signer.account, method: method,
                                                                    encodedPath: addr.path, query: query, headers: signed)
                        h.append(("Authorization", signer.authorization(stringToSign: sts)))
                    case .sas:
                        break
                    case .bearer(let cache, _):
                        h.append(("Authorization", "Bearer " + (try cache.get())))
                    }
                    return HTTPRequest(method: method, url: addr.url, headers: h, body: body)
                }
            } catch let e as ReplicationError {
                throw e.wrapped("abs: \(what)")
            } catch {
                throw ReplicationError(.io, scrub("abs: \(what): \(error.oneLine)"), cause: ReplicationError.cause(of: error))
            }
            if (200..<300).contains(resp.status) || accepting.contains(resp.status) { return resp }
            var r = resp
            if case .file(let fd) = sink { r.body = Self.readHead(fd, limit: 64 << 10) }
            let code = Self.errorCode(r)
            if case .bearer(let cache, _) = auth, !refetched,
               resp.status == 401 || (resp.status == 403 && (code == "AuthenticationFailed" || code == "InvalidAuthenticationInfo")) {
                refetched = true
                cache.invalidate()
                logger.info("abs: bearer token rejected; fetching a new one",
                            metadata: ["abs.container": "\(abs.container)", "http.status": "\(resp.status)"])
                continue
            }
            throw httpFailure(r, code: code, what: what)
        }
    }

    private static func readHead(_ fd: Int32, limit: Int) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: limit)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, limit, 0) }
        return n > 0 ? Array(buf.prefix(n)) : []
    }

    /// The `x-ms-error-code` header, else the `<Code>` of the XML body.
    static func errorCode(_ resp: HTTPResponse) -> String {
        if let h = resp.header("x-ms-error-code"), !h.isEmpty { return h }
        return S3XML.parse(resp.body)?.value("Code") ?? ""
    }

    /// One line: what, account/container, HTTP status, Azure error code, the first line of its message and, for
    /// authorisation failures, the mode in use; never a secret.
    func httpFailure(_ resp: HTTPResponse, code: String, what: String) -> ReplicationError {
        let message = S3XML.parse(resp.body)?.value("Message")?.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        var text = "abs: \(what): HTTP \(resp.status)" + (code.isEmpty ? "" : " \(code)")
        switch code {
        case "ContainerNotFound":
            text += ": container \"\(abs.container)\" does not exist in account \"\(abs.account)\""
        default:
            if !message.isEmpty { text += ": \(message)" }
        }
        if resp.status == 401 || resp.status == 403 { text += " (auth: \(auth.description))" }
        let notFound = code == "BlobNotFound" || (resp.status == 404 && code != "ContainerNotFound")
        return ReplicationError(notFound ? .notFound : .io, scrub(text),
                                cause: .http(status: resp.status, providerCode: code.isEmpty ? nil : code))
    }
}
