import Foundation
import Logging

/// Google OAuth2 access tokens for a GCS replica, found as Application Default Credentials do (first found wins):
/// 1. `GOOGLE_APPLICATION_CREDENTIALS`: a JSON key file, `service_account` (RS256 JWT exchanged at `token_uri`) or
///    `authorized_user` (refresh-token grant);
/// 2. gcloud's well-known file `$CLOUDSDK_CONFIG/application_default_credentials.json` or
///    `~/.config/gcloud/application_default_credentials.json`;
/// 3. the GCE/GKE metadata server (`GCE_METADATA_HOST`, else `metadata.google.internal` when it answers).
///
/// With none of them and an emulator endpoint, requests carry no `Authorization` (as Google's library does for
/// `STORAGE_EMULATOR_HOST`). Tokens are cached by `RefreshingCredential`: fetched once per lifetime, replaced
/// `refreshMargin` before they expire.
public final class GCSCredentials: Sendable {
    /// The OAuth2 scope asked for.
    public static let scope = "https://www.googleapis.com/auth/devstorage.full_control"
    /// The default token endpoint of `authorized_user` files without `token_uri`.
    public static let defaultTokenURI = "https://oauth2.googleapis.com/token"

    /// Where tokens come from, for logs and errors (a file path, an e-mail address, a host; never a secret).
    public let source: String
    private let cache: RefreshingCredential<String>?

    private init(source: String, cache: RefreshingCredential<String>?) {
        self.source = source
        self.cache = cache
    }

    /// No credentials: requests are sent without `Authorization` (emulators only).
    public static let anonymous = GCSCredentials(source: "none (emulator)", cache: nil)

    /// The current access token, nil for anonymous access.
    /// - Throws: `ReplicationError(.io)` when a token cannot be obtained (one line, no secret).
    public func token() throws -> String? { try cache?.get() }

    /// Whether requests go without `Authorization` (an emulator and no credentials).
    public var isAnonymous: Bool { cache == nil }

    /// Drops the cached token after storage rejected it (HTTP 401), so the next `token()` fetches a new one.
    public func invalidate() { cache?.invalidate() }

    /// When the cached token expires (tests, logs).
    public var expiresAt: Date? { cache?.expiresAt }

    /// Resolves the credential chain.
    /// - Parameters:
    ///   - environment: the process environment.
    ///   - emulator: whether an emulator endpoint is configured (then a missing credential means anonymous).
    ///   - refreshMargin: replace a token this long before it expires.
    ///   - httpOptions: for the token requests (`skip-verify`, timeouts).
    /// - Throws: `ReplicationError(.config)` for an unreadable key file, or when nothing was found and no emulator
    ///   is configured (the message lists what was tried).
    public static func resolve(environment env: [String: String] = ProcessInfo.processInfo.environment,
                               emulator: Bool, refreshMargin: Duration = .seconds(300),
                               httpOptions: CurlHTTPOptions = CurlHTTPOptions(),
                               logger: Logger = Logger(label: "replicationkit.gcs")) throws -> GCSCredentials {
        let http = CurlHTTPClient(options: httpOptions, logger: logger)
        var tried: [String] = []
        if let file = nonEmpty(env["GOOGLE_APPLICATION_CREDENTIALS"]) {
            // An explicitly named file that cannot be used is an error, not a reason to look further.
            return try fromFile(file, http: http, margin: refreshMargin)
        }
        tried.append("GOOGLE_APPLICATION_CREDENTIALS (not set)")
        let gcloudDir = nonEmpty(env["CLOUDSDK_CONFIG"]) ?? nonEmpty(env["HOME"]).map { $0 + "/.config/gcloud" }
        if let dir = gcloudDir {
            let file = dir + "/application_default_credentials.json"
            if FileManager.default.isReadableFile(atPath: file) { return try fromFile(file, http: http, margin: refreshMargin) }
            tried.append("\(file) (absent)")
        }
        if let host = nonEmpty(env["GCE_METADATA_HOST"]) {
            return metadata(host: host, http: http, margin: refreshMargin)
        }
        if !emulator, metadataServerAnswers(http: http) {
            return metadata(host: "metadata.google.internal", http: http, margin: refreshMargin)
        }
        tried.append(emulator ? "metadata server (not probed: emulator endpoint)" : "metadata server (no answer; GCE_METADATA_HOST not set)")
        if emulator { return anonymous }
        throw ReplicationError(.config, "gs replica: no Google credentials found; tried " + tried.joined(separator: ", "))
    }

    /// Credentials from a JSON key file (`service_account` or `authorized_user`).
    static func fromFile(_ path: String, http: CurlHTTPClient, margin: Duration) throws -> GCSCredentials {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReplicationError(.config, "gs replica: cannot read credentials file \(path)")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ReplicationError(.config, "gs replica: credentials file \(path) is not a JSON object")
        }
        let type = obj["type"] as? String ?? ""
        switch type {
        case "service_account":
            guard let email = nonEmpty(obj["client_email"] as? String), let pem = nonEmpty(obj["private_key"] as? String) else {
                throw ReplicationError(.config, "gs replica: service-account file \(path) lacks client_email or private_key")
            }
            let key = try RS256Key(privateKeyPEM: pem, what: "gs replica: service-account file \(path)")
            let tokenURI = nonEmpty(obj["token_uri"] as? String) ?? defaultTokenURI
            let keyID = obj["private_key_id"] as? String
            let what = "service account \(email) (\(path))"
            return GCSCredentials(source: what, cache: RefreshingCredential(refreshMargin: margin) {
                let jwt = try ServiceAccountJWT.make(email: email, scope: GCSCredentials.scope, audience: tokenURI, keyID: keyID,
                                                     issuedAt: Date(), key: key)
                return try TokenEndpoint.post(http: http, url: tokenURI, what: "token for \(what)", margin: margin,
                                              form: [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                                                     ("assertion", jwt)])
            })
        case "authorized_user":
            guard let id = nonEmpty(obj["client_id"] as? String), let refresh = nonEmpty(obj["refresh_token"] as? String) else {
                throw ReplicationError(.config, "gs replica: authorized_user file \(path) lacks client_id or refresh_token")
            }
            let secret = obj["client_secret"] as? String ?? ""
            let tokenURI = nonEmpty(obj["token_uri"] as? String) ?? defaultTokenURI
            let what = "authorized user (\(path))"
            return GCSCredentials(source: what, cache: RefreshingCredential(refreshMargin: margin) {
                try TokenEndpoint.post(http: http, url: tokenURI, what: "token for \(what)", margin: margin,
                                       form: [("grant_type", "refresh_token"), ("client_id", id),
                                              ("client_secret", secret), ("refresh_token", refresh)])
            })
        default:
            throw ReplicationError(.config, "gs replica: credentials file \(path) has type \"\(type)\"; " +
                "supported: service_account, authorized_user")
        }
    }

    /// Credentials from the metadata server at `host` (`host[:port]`, or a URL).
    static func metadata(host: String, http: CurlHTTPClient, margin: Duration) -> GCSCredentials {
        let base = host.contains("://") ? host : "http://" + host
        let url = base + "/computeMetadata/v1/instance/service-accounts/default/token"
        return GCSCredentials(source: "metadata server \(base)", cache: RefreshingCredential(refreshMargin: margin) {
            try TokenEndpoint.get(http: http, url: url, headers: [("Metadata-Flavor", "Google")],
                                  what: "token from metadata server \(base)", margin: margin)
        })
    }

    /// Whether the GCE metadata server answers (as Google's `metadata.OnGCE`: its fixed address, header
    /// `Metadata-Flavor: Google` in the answer), with a short timeout and no retry.
    static func metadataServerAnswers(http: CurlHTTPClient) -> Bool {
        var o = http.options
        o.connectTimeout = .milliseconds(500)
        o.requestTimeout = .seconds(1)
        let probe = CurlHTTPClient(options: o)
        let req = HTTPRequest(method: "GET", url: "http://169.254.169.254/", headers: [("Metadata-Flavor", "Google")])
        guard let r = try? probe.performOnce(req, sink: .memory(limit: 1 << 16)) else { return false }
        return r.header("Metadata-Flavor") == "Google"
    }

    private static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }
}

/// OAuth2 token requests and their answers (`{"access_token", "expires_in", "token_type"}`).
enum TokenEndpoint {
    /// POSTs a form and parses the token answer.
    static func post(http: CurlHTTPClient, url: String, what: String, margin: Duration,
                     form: [(String, String)]) throws -> Expiring<String> {
        let body = form.map { "\(GCSURL.encode($0.0))=\(GCSURL.encode($0.1))" }.joined(separator: "&")
        let req = HTTPRequest(method: "POST", url: url,
                              headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                              body: .bytes(Array(body.utf8)))
        return try send(http: http, req, what: what, margin: margin)
    }

    /// GETs a token (metadata server).
    static func get(http: CurlHTTPClient, url: String, headers: [(String, String)], what: String,
                    margin: Duration) throws -> Expiring<String> {
        try send(http: http, HTTPRequest(method: "GET", url: url, headers: headers), what: what, margin: margin)
    }

    private static func send(http: CurlHTTPClient, _ req: HTTPRequest, what: String,
                             margin: Duration) throws -> Expiring<String> {
        let started = Date()
        let resp: HTTPResponse
        do {
            resp = try http.perform(sink: .memory(limit: 1 << 20)) { req }
        } catch {
            throw ReplicationError(.io, "\(what): \(error.oneLine)", cause: ReplicationError.cause(of: error))
        }
        let obj = (try? JSONSerialization.jsonObject(with: Data(resp.body))) as? [String: Any]
        guard (200..<300).contains(resp.status) else {
            // OAuth2 errors: {"error": "invalid_grant", "error_description": "…"} (never echo the request).
            var text = "\(what): HTTP \(resp.status)"
            if let e = obj?["error"] as? String { text += " \(e)" }
            if let d = obj?["error_description"] as? String { text += ": \(d)" }
            throw ReplicationError(.io, text.replacingOccurrences(of: "\n", with: " "))
        }
        guard let token = obj?["access_token"] as? String, !token.isEmpty else {
            throw ReplicationError(.io, "\(what): HTTP \(resp.status) without access_token")
        }
        let lifetime = (obj?["expires_in"] as? NSNumber)?.doubleValue ?? 3600
        return Expiring(token, expiresAt: reportedExpiry(issued: started, lifetime: lifetime, margin: margin))
    }

    /// The expiry handed to `RefreshingCredential`, which replaces a token `margin` before it: the real one, except
    /// for tokens living less than twice the margin (a metadata server may hand out a token near its end), which
    /// would otherwise be fetched again for every request; those are renewed half-way through their life.
    static func reportedExpiry(issued: Date, lifetime: TimeInterval, margin: Duration) -> Date {
        let m = Double(margin.components.seconds) + Double(margin.components.attoseconds) / 1e18
        return issued.addingTimeInterval(lifetime >= 2 * m ? lifetime : lifetime / 2 + m)
    }
}
