import Foundation

/// Temporary credentials as one identity endpoint returned them.
public struct AWSIdentityFetch: Sendable {
    /// The keys and session token.
    public var credentials: AWSCredentials
    /// When the issuer says they stop working.
    public var expiresAt: Date?
    /// Other secrets used to get them (the web-identity token, the container authorization token), for scrubbing.
    public var redact: [String] = []
}

/// The blocking HTTP calls of the identity sources (libcurl, short timeouts, a few retries on 5xx/transport errors).
struct AWSIdentityHTTP: Sendable {
    let client: CurlHTTPClient

    init(connectTimeout: Duration = .seconds(5), requestTimeout: Duration = .seconds(30), attempts: Int = 3) {
        var o = CurlHTTPOptions()
        o.connectTimeout = connectTimeout
        o.stallTimeout = min(.seconds(10), requestTimeout)
        o.requestTimeout = requestTimeout
        o.maxAttempts = attempts
        o.baseDelay = .milliseconds(100)
        o.maxDelay = .seconds(1)
        client = CurlHTTPClient(options: o)
    }

    /// Performs `request`; a transport failure becomes `ReplicationError(.io)` prefixed with `what`.
    func send(_ request: HTTPRequest, what: String) throws -> HTTPResponse {
        do {
            return try client.perform(sink: .memory(limit: 1 << 20)) { request }
        } catch {
            throw ReplicationError(.io, "\(what): \(error.oneLine)", cause: ReplicationError.cause(of: error))
        }
    }
}

/// EKS IRSA: STS `AssumeRoleWithWebIdentity` with the token in `AWS_WEB_IDENTITY_TOKEN_FILE` (re-read every time).
struct WebIdentitySource: Sendable {
    let tokenFile: String
    let roleARN: String
    let sessionName: String?
    let endpoint: String
    let http: AWSIdentityHTTP

    /// `AWS_ENDPOINT_URL_STS`, else the regional endpoint of `AWS_REGION`/`AWS_DEFAULT_REGION`, else the global one.
    static func endpoint(environment env: [String: String]) -> String {
        if let e = S3CredentialChain.nonEmpty(env["AWS_ENDPOINT_URL_STS"]) { return e }
        guard let r = S3CredentialChain.nonEmpty(env["AWS_REGION"]) ?? S3CredentialChain.nonEmpty(env["AWS_DEFAULT_REGION"]) else {
            return "https://sts.amazonaws.com"
        }
        return "https://sts.\(r).amazonaws.com" + (r.hasPrefix("cn-") ? ".cn" : "")
    }

    /// The form body of the request (unsigned: the web-identity token is the proof).
    static func requestBody(roleARN: String, sessionName: String, token: String) -> String {
        func enc(_ s: String) -> String { SigV4Signer.uriEncode(s, keepSlash: false) }
        return "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=\(enc(roleARN))" +
            "&RoleSessionName=\(enc(sessionName))&WebIdentityToken=\(enc(token))"
    }

    func fetch() throws -> AWSIdentityFetch {
        let what = "web identity: STS AssumeRoleWithWebIdentity at \(endpoint)"
        let token: String
        do {
            token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw ReplicationError(.io, "web identity: cannot read token file \(tokenFile) (AWS_WEB_IDENTITY_TOKEN_FILE): \(Self.reason(error))")
        }
        guard !token.isEmpty else { throw ReplicationError(.io, "web identity: token file \(tokenFile) is empty") }
        let name = sessionName ?? "launcher-\(Int(Date().timeIntervalSince1970 * 1000))"
        let body = Array(Self.requestBody(roleARN: roleARN, sessionName: name, token: token).utf8)
        let url = endpoint.hasSuffix("/") ? endpoint : endpoint + "/"
        let resp = try http.send(HTTPRequest(method: "POST", url: url, headers: [
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Accept", "application/xml"),
        ], body: .bytes(body)), what: what)
        guard (200..<300).contains(resp.status) else {
            let err = S3XML.parse(resp.body)
            let e = err?.child("Error") ?? err
            var text = "\(what): HTTP \(resp.status)"
            if let code = e?.value("Code") { text += " \(code)" }
            if let msg = e?.value("Message") { text += ": \(msg)" }
            throw ReplicationError(.io, text.replacingOccurrences(of: token, with: "[redacted]"))
        }
        var f = try Self.parse(resp.body, what: what)
        f.redact.append(token)
        return f
    }

    /// Parses an `AssumeRoleWithWebIdentityResponse`.
    static func parse(_ body: [UInt8], what: String = "web identity") throws -> AWSIdentityFetch {
        guard let doc = S3XML.parse(body), let c = doc.child("AssumeRoleWithWebIdentityResult")?.child("Credentials"),
              let id = c.value("AccessKeyId"), !id.isEmpty, let secret = c.value("SecretAccessKey"), !secret.isEmpty else {
            throw ReplicationError(.io, "\(what): malformed response (no Credentials)")
        }
        let exp = c.value("Expiration").flatMap { S3ReplicaClient.parseTimestamp($0.trimmingCharacters(in: .whitespaces)) }
        return AWSIdentityFetch(credentials: AWSCredentials(accessKeyID: id, secretAccessKey: secret,
                                                            sessionToken: S3CredentialChain.nonEmpty(c.value("SessionToken")),
                                                            source: "web identity"), expiresAt: exp)
    }

    static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(u.code)))
        }
        return ns.code == NSFileReadNoPermissionError ? "permission denied"
            : ns.code == NSFileReadNoSuchFileError ? "no such file" : "unreadable"
    }
}

/// The credential JSON of the ECS container endpoint and of EC2 instance metadata.
enum AWSCredentialJSON {
    static func parse(_ body: [UInt8], what: String, source: String) throws -> AWSIdentityFetch {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let id = obj["AccessKeyId"] as? String, !id.isEmpty,
              let secret = obj["SecretAccessKey"] as? String, !secret.isEmpty else {
            throw ReplicationError(.io, "\(what): malformed credentials (no AccessKeyId/SecretAccessKey)")
        }
        if let code = obj["Code"] as? String, code != "Success" {
            throw ReplicationError(.io, "\(what): credentials status \(code)")
        }
        let exp = (obj["Expiration"] as? String).flatMap { S3ReplicaClient.parseTimestamp($0) }
        return AWSIdentityFetch(credentials: AWSCredentials(accessKeyID: id, secretAccessKey: secret,
                                                            sessionToken: S3CredentialChain.nonEmpty(obj["Token"] as? String),
                                                            source: source), expiresAt: exp)
    }
}

/// ECS/Fargate (and EKS Pod Identity) container credentials.
struct ContainerSource: Sendable {
    let url: String
    let token: String?
    let tokenFile: String?
    let http: AWSIdentityHTTP

    /// As the SDKs: a full URI must be HTTPS or address a loopback or ECS/EKS link-local host.
    static func checkFullURI(_ url: String) throws {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), let host = c.host?.lowercased() else {
            throw ReplicationError(.config, "s3 replica: AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL")
        }
        let allowed = ["localhost", "127.0.0.1", "::1", "[::1]", "169.254.170.2", "169.254.170.23", "fd00:ec2::23", "[fd00:ec2::23]"]
        guard scheme == "https" || (scheme == "http" && (allowed.contains(host) || host.hasPrefix("127."))) else {
            throw ReplicationError(.config, "s3 replica: AWS_CONTAINER_CREDENTIALS_FULL_URI must be https or a loopback/ECS/EKS address")
        }
    }

    func fetch() throws -> AWSIdentityFetch {
        let what = "container credentials at \(url)"
        var headers = [("Accept", "application/json")]
        var auth: String?
        if let tokenFile {
            do {
                auth = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw ReplicationError(.io, "\(what): cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(tokenFile): \(WebIdentitySource.reason(error))")
            }
        } else {
            auth = token
        }
        if let a = auth, !a.isEmpty { headers.append(("Authorization", a)) }
        let resp = try http.send(HTTPRequest(method: "GET", url: url, headers: headers), what: what)
        guard (200..<300).contains(resp.status) else {
            throw ReplicationError(.io, "\(what): HTTP \(resp.status)")
        }
        var f = try AWSCredentialJSON.parse(resp.body, what: what, source: "container credentials")
        if let a = auth { f.redact.append(a) }
        return f
    }
}

/// EC2 instance metadata, IMDSv2 only: a session token, the role name, then the role's credentials.
struct IMDSSource: Sendable {
    let base: String
    let http: AWSIdentityHTTP

    init(base: String, http: AWSIdentityHTTP) {
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.http = http
    }

    func fetch() throws -> AWSIdentityFetch {
        let what = "instance metadata at \(base)"
        let t = try http.send(HTTPRequest(method: "PUT", url: base + "/latest/api/token",
                                          headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")]), what: what)
        guard t.status == 200, let token = String(bytes: t.body, encoding: .utf8), !token.isEmpty else {
            throw ReplicationError(.io, "\(what): PUT /latest/api/token: HTTP \(t.status)")
        }
        let h = [("X-aws-ec2-metadata-token", token)]
        let listPath = "/latest/meta-data/iam/security-credentials/"
        let list = try http.send(HTTPRequest(method: "GET", url: base + listPath, headers: h), what: what)
        guard list.status == 200 else {
            throw ReplicationError(.io, "\(what): GET \(listPath): HTTP \(list.status)" + (list.status == 404 ? " (no IAM role attached)" : ""))
        }
        guard let role = String(decoding: list.body, as: UTF8.self).split(whereSeparator: \.isNewline).first
            .map({ $0.trimmingCharacters(in: .whitespaces) }), !role.isEmpty else {
            throw ReplicationError(.io, "\(what): no IAM role attached to the instance")
        }
        let rolePath = listPath + SigV4Signer.uriEncode(role, keepSlash: false)
        let c = try http.send(HTTPRequest(method: "GET", url: base + rolePath, headers: h), what: what)
        guard c.status == 200 else { throw ReplicationError(.io, "\(what): GET \(rolePath): HTTP \(c.status)") }
        var f = try AWSCredentialJSON.parse(c.body, what: what, source: "instance metadata")
        f.redact.append(token)
        return f
    }
}
