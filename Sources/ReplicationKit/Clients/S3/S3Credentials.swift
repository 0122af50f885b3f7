import Foundation

/// The S3 credential chain (issue 4, extended by issue 10): static keys first — replica (or global) config keys,
/// `LITESTREAM_ACCESS_KEY_ID` / `LITESTREAM_SECRET_ACCESS_KEY`, `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
/// `AWS_SESSION_TOKEN` (also `AWS_ACCESS_KEY` / `AWS_SECRET_KEY`), the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile `AWS_PROFILE` or `default`) — then the keyless
/// identities: web identity (EKS IRSA), ECS/Fargate container credentials, EC2 instance metadata (IMDSv2).
///
/// Not supported: SSO, `credential_process`, `role_arn` profiles.
public enum S3CredentialChain {
    /// Resolves static credentials only (config keys, environment, shared credentials file).
    /// - Throws: `ReplicationError(.config)` when none is found or a source is incomplete (no secret in the text).
    public static func resolve(accessKeyID: String?, secretAccessKey: String?,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AWSCredentials {
        var tried: [String] = []
        if let c = try staticCredentials(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey,
                                         environment: environment, tried: &tried) { return c }
        throw ReplicationError(.config, "s3 replica: no static credentials found; tried " + tried.joined(separator: ", "))
    }

    /// The whole chain: static keys, then web identity, container credentials and instance metadata.
    ///
    /// Which source applies is decided here (instance metadata is probed with a short timeout and its first
    /// credentials are kept); later fetch failures surface as replica errors from `S3CredentialProvider.credentials()`.
    /// - Throws: `ReplicationError(.config)` naming every source tried when none applies (no values).
    public static func provider(accessKeyID: String?, secretAccessKey: String?,
                                environment env: [String: String] = ProcessInfo.processInfo.environment,
                                containerHost: String = "http://169.254.170.2",
                                now: @escaping @Sendable () -> Date = { Date() }) throws -> S3CredentialProvider {
        var tried: [String] = []
        if let c = try staticCredentials(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey,
                                         environment: env, tried: &tried) {
            return S3CredentialProvider(static: c)
        }
        let http = AWSIdentityHTTP()
        if let tokenFile = nonEmpty(env["AWS_WEB_IDENTITY_TOKEN_FILE"]) {
            guard let role = nonEmpty(env["AWS_ROLE_ARN"]) else {
                throw ReplicationError(.config, "s3 replica: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
            }
            guard FileManager.default.isReadableFile(atPath: tokenFile) else {
                throw ReplicationError(.config, "s3 replica: web identity token file \(tokenFile) (AWS_WEB_IDENTITY_TOKEN_FILE) is not readable")
            }
            let w = WebIdentitySource(tokenFile: tokenFile, roleARN: role, sessionName: nonEmpty(env["AWS_ROLE_SESSION_NAME"]),
                                      endpoint: WebIdentitySource.endpoint(environment: env), http: http)
            return S3CredentialProvider(source: "web identity (STS AssumeRoleWithWebIdentity at \(w.endpoint))", now: now,
                                        fetch: w.fetch)
        }
        tried.append("web identity (AWS_WEB_IDENTITY_TOKEN_FILE unset)")
        let relative = nonEmpty(env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"])
        let full = nonEmpty(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
        if relative != nil || full != nil {
            let url = relative.map { containerHost + ($0.hasPrefix("/") ? $0 : "/" + $0) } ?? full!
            if relative == nil { try ContainerSource.checkFullURI(url) }
            let c = ContainerSource(url: url, token: nonEmpty(env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]),
                                    tokenFile: nonEmpty(env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]), http: http)
            return S3CredentialProvider(source: "container credentials (\(relative != nil ? "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" : "AWS_CONTAINER_CREDENTIALS_FULL_URI"))",
                                        now: now, fetch: c.fetch)
        }
        tried.append("container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI unset)")
        if env["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true" {
            tried.append("EC2 instance metadata (AWS_EC2_METADATA_DISABLED=true)")
        } else {
            let base = nonEmpty(env["AWS_EC2_METADATA_SERVICE_ENDPOINT"]) ?? "http://169.254.169.254"
            let probe = IMDSSource(base: base, http: AWSIdentityHTTP(connectTimeout: .seconds(1), requestTimeout: .seconds(3), attempts: 1))
            do {
                let first = try probe.fetch()
                let imds = IMDSSource(base: base, http: AWSIdentityHTTP(connectTimeout: .seconds(2), attempts: 3))
                let p = S3CredentialProvider(source: "EC2 instance metadata (IMDSv2 at \(imds.base))", now: now, fetch: imds.fetch)
                p.seed(first)
                return p
            } catch {
                tried.append("EC2 instance metadata (\(error.oneLine))")
            }
        }
        throw ReplicationError(.config, "s3 replica: no credentials found; tried " + tried.joined(separator: ", "))
    }

    /// The static part of the chain; nil when no static source is configured (each one tried is added to `tried`).
    static func staticCredentials(accessKeyID: String?, secretAccessKey: String?, environment env: [String: String],
                                  tried: inout [String]) throws -> AWSCredentials? {
        let id = accessKeyID ?? "", secret = secretAccessKey ?? ""
        if !id.isEmpty || !secret.isEmpty {
            guard !id.isEmpty, !secret.isEmpty else {
                throw ReplicationError(.config, "s3 replica: both access-key-id and secret-access-key must be set")
            }
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, source: "config")
        }
        tried.append("replica config (access-key-id unset)")
        if let i = nonEmpty(env["LITESTREAM_ACCESS_KEY_ID"]), let s = nonEmpty(env["LITESTREAM_SECRET_ACCESS_KEY"]) {
            return AWSCredentials(accessKeyID: i, secretAccessKey: s, source: "LITESTREAM_ACCESS_KEY_ID")
        }
        tried.append("LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY (unset)")
        let envID = nonEmpty(env["AWS_ACCESS_KEY_ID"]) ?? nonEmpty(env["AWS_ACCESS_KEY"])
        let envSecret = nonEmpty(env["AWS_SECRET_ACCESS_KEY"]) ?? nonEmpty(env["AWS_SECRET_KEY"])
        if let i = envID, let s = envSecret {
            return AWSCredentials(accessKeyID: i, secretAccessKey: s, sessionToken: nonEmpty(env["AWS_SESSION_TOKEN"]),
                                  source: "AWS_ACCESS_KEY_ID")
        }
        tried.append("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (unset)")
        let file = nonEmpty(env["AWS_SHARED_CREDENTIALS_FILE"])
            ?? nonEmpty(env["HOME"]).map { $0 + "/.aws/credentials" }
        let profile = nonEmpty(env["AWS_PROFILE"]) ?? "default"
        if let file, let text = try? String(contentsOfFile: file, encoding: .utf8) {
            let section = parseINI(text)[profile] ?? [:]
            if let i = nonEmpty(section["aws_access_key_id"]), let s = nonEmpty(section["aws_secret_access_key"]) {
                return AWSCredentials(accessKeyID: i, secretAccessKey: s, sessionToken: nonEmpty(section["aws_session_token"]),
                                      source: "shared credentials file \(file) [\(profile)]")
            }
            if env["AWS_PROFILE"] != nil {
                throw ReplicationError(.config, "s3 replica: profile \"\(profile)\" has no aws_access_key_id/aws_secret_access_key in \(file)")
            }
            tried.append("shared credentials file \(file) (no [\(profile)] keys)")
        } else {
            tried.append("shared credentials file \(file ?? "~/.aws/credentials") (absent)")
        }
        return nil
    }

    static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }

    /// Parses an AWS INI file: `[profile]` sections of `key = value` lines; `#`/`;` comments.
    static func parseINI(_ text: String) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        var current: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                var name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("profile ") { name = String(name.dropFirst("profile ".count)).trimmingCharacters(in: .whitespaces) }
                current = name
                continue
            }
            guard let section = current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            out[section, default: [:]][key] = value
        }
        return out
    }
}

/// Supplies the signing credentials of one S3 replica: fixed static keys, or temporary credentials cached in a
/// `RefreshingCredential` and fetched again shortly before they expire.
public final class S3CredentialProvider: Sendable {
    /// Where the credentials come from (names only, never values), for the one log line per replica.
    public let source: String
    /// True for temporary credentials that can be refreshed (a 403 ExpiredToken then invalidates them once).
    public let isTemporary: Bool
    private let fixed: AWSCredentials?
    private let cache: RefreshingCredential<AWSIdentityFetch>?
    private let now: @Sendable () -> Date
    /// Secrets, session tokens and identity tokens seen so far, removed from every error text.
    private let secrets: Locked<[String]>
    private let pending: Locked<AWSIdentityFetch?>
    /// The access key of the newest fetched credentials.
    private let newest: Locked<String?>

    /// Static keys.
    public init(static credentials: AWSCredentials) {
        fixed = credentials
        cache = nil
        source = credentials.source
        isTemporary = false
        secrets = Locked([])
        pending = Locked(nil)
        newest = Locked(nil)
        now = { Date() }
        Self.remember(secrets, credentials)
    }

    /// Temporary credentials from `fetch`. A credential of lifetime L is replaced `min(5 min, L/4)` before it
    /// expires (real STS/ECS/IMDS credentials last ≥ 15 min, so that is the SDKs' 5 minutes; the test tools'
    /// short-lived ones are refreshed a quarter-lifetime early).
    public init(source: String, now: @escaping @Sendable () -> Date = { Date() },
                fetch: @escaping @Sendable () throws -> AWSIdentityFetch) {
        self.source = source
        isTemporary = true
        fixed = nil
        let margin: TimeInterval = 300
        let pending = Locked<AWSIdentityFetch?>(nil), secrets = Locked<[String]>([]), newest = Locked<String?>(nil)
        self.pending = pending
        self.newest = newest
        self.secrets = secrets
        self.now = now
        cache = RefreshingCredential(refreshMargin: .seconds(300), now: now) {
            let f = try pending.withLock { p -> AWSIdentityFetch? in defer { p = nil }; return p } ?? fetch()
            Self.remember(secrets, f.credentials, extra: f.redact)
            newest.withLock { $0 = f.credentials.accessKeyID }
            guard let exp = f.expiresAt else { return Expiring(f, expiresAt: nil) }
            let lifetime = exp.timeIntervalSince(now())
            let early = min(margin, max(lifetime / 4, 0))
            // RefreshingCredential refreshes `margin` before the reported expiry: report it shifted so that the
            // refresh happens `early` before the real one (`credentials()` checks the real expiry itself).
            return Expiring(f, expiresAt: exp.addingTimeInterval(margin - early))
        }
    }

    /// Primes the cache with credentials already fetched (the instance-metadata probe), so they are not fetched twice.
    func seed(_ f: AWSIdentityFetch) {
        pending.withLock { $0 = f }
        _ = try? cache?.get()
    }

    /// The credentials to sign the next request with (fetched first when none are cached or they are about to
    /// expire).
    /// - Throws: `ReplicationError(.io)` naming the source and the failure (never a secret).
    public func credentials() throws -> AWSCredentials {
        if let fixed { return fixed }
        let f = try cache!.get()
        if let exp = f.expiresAt, exp <= now() {
            // Really expired (a refresh failed and the cache kept serving them): fetch, or report the failure.
            cache!.invalidate()
            return try cache!.get().credentials
        }
        return f.credentials
    }

    /// Forgets cached temporary credentials (the store rejected them); no-op for static keys.
    /// - Parameter accessKeyID: the rejected key; when newer credentials were fetched meanwhile (another upload
    ///   met the same rejection first), they are kept.
    public func invalidate(accessKeyID: String? = nil) {
        guard let cache else { return }
        if let id = accessKeyID, newest.current != id { return }
        cache.invalidate()
    }

    /// When the cached temporary credentials expire (as reported to the cache), for tests.
    var cachedExpiry: Date? { cache?.expiresAt }

    /// `text` on one line with every secret, session token and identity token seen by this provider removed.
    public func scrub(_ text: String) -> String {
        var t = text.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        for s in secrets.current where s.count >= 4 { t = t.replacingOccurrences(of: s, with: "[redacted]") }
        return t
    }

    private static func remember(_ secrets: Locked<[String]>, _ c: AWSCredentials, extra: [String] = []) {
        let new = [c.secretAccessKey, c.sessionToken ?? ""] + extra
        secrets.withLock { list in
            for s in new where !s.isEmpty && !list.contains(s) { list.append(s) }
            if list.count > 32 { list.removeFirst(list.count - 32) }
        }
    }
}
