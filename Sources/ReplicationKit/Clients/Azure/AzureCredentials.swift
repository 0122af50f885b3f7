import Foundation

/// How requests to an Azure Blob replica are authorised.
enum AzureAuth: Sendable {
    /// SharedKey signatures with the account key.
    case sharedKey(AzureSharedKeySigner)
    /// A SAS token appended to every request's query (without a leading `?`); never logged.
    case sas(String)
    /// An Azure AD (Entra ID) access token for `https://storage.azure.com/`, sent as `Authorization: Bearer`.
    case bearer(RefreshingCredential<String>, source: String)

    /// Names the mode for messages (`shared key`, `SAS token`, `managed identity (IMDS)`, …).
    var description: String {
        switch self {
        case .sharedKey: return "shared key"
        case .sas: return "SAS token"
        case .bearer(_, let source): return source
        }
    }
}

/// The Azure credential chain: the replica's `account-key`, its `sas-token`, `LITESTREAM_AZURE_ACCOUNT_KEY`,
/// `LITESTREAM_AZURE_SAS_TOKEN`, workload identity (`AZURE_FEDERATED_TOKEN_FILE` + `AZURE_CLIENT_ID` +
/// `AZURE_TENANT_ID`), then managed identity (App Service / Container Apps `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`,
/// else the instance metadata service, whose address `AZURE_IMDS_ENDPOINT` overrides).
public enum AzureCredentialChain {
    /// The token audience of Azure Storage.
    static let resource = "https://storage.azure.com/"

    /// Picks the authorisation for `account`.
    /// - Parameters:
    ///   - accountKey: the replica's `account-key`.
    ///   - sasToken: the replica's `sas-token`.
    ///   - refreshMargin: how long before expiry a bearer token is replaced.
    ///   - tokens: the HTTP client of the token endpoints.
    /// - Throws: `ReplicationError(.config)` for a key that is not base64 or incomplete workload-identity settings.
    static func resolve(account: String, accountKey: String?, sasToken: String?, environment env: [String: String],
                        refreshMargin: Duration, tokens: CurlHTTPClient) throws -> AzureAuth {
        func nonEmpty(_ s: String?) -> String? {
            guard let s = s?.trimmingCharacters(in: .whitespacesAndNewlines), !s.isEmpty else { return nil }
            return s
        }
        if let k = nonEmpty(accountKey) { return .sharedKey(try AzureSharedKeySigner(account: account, base64Key: k)) }
        if let s = nonEmpty(sasToken) { return .sas(normaliseSAS(s)) }
        if let k = nonEmpty(env["LITESTREAM_AZURE_ACCOUNT_KEY"]) {
            return .sharedKey(try AzureSharedKeySigner(account: account, base64Key: k))
        }
        if let s = nonEmpty(env["LITESTREAM_AZURE_SAS_TOKEN"]) { return .sas(normaliseSAS(s)) }

        let provider: AzureTokenProvider
        if let file = nonEmpty(env["AZURE_FEDERATED_TOKEN_FILE"]) {
            guard let client = nonEmpty(env["AZURE_CLIENT_ID"]), let tenant = nonEmpty(env["AZURE_TENANT_ID"]) else {
                throw ReplicationError(.config, "abs replica: AZURE_FEDERATED_TOKEN_FILE is set but AZURE_CLIENT_ID or " +
                                       "AZURE_TENANT_ID is not (workload identity needs all three)")
            }
            var authority = nonEmpty(env["AZURE_AUTHORITY_HOST"]) ?? "https://login.microsoftonline.com/"
            if !authority.hasSuffix("/") { authority += "/" }
            provider = .workloadIdentity(tokenFile: file, clientID: client, tenantID: tenant, authority: authority)
        } else if let endpoint = nonEmpty(env["IDENTITY_ENDPOINT"]), let header = nonEmpty(env["IDENTITY_HEADER"]) {
            provider = .appService(endpoint: endpoint, header: header, clientID: nonEmpty(env["AZURE_CLIENT_ID"]))
        } else {
            var imds = nonEmpty(env["AZURE_IMDS_ENDPOINT"]) ?? "http://169.254.169.254"
            while imds.hasSuffix("/") { imds.removeLast() }
            provider = .imds(base: imds, clientID: nonEmpty(env["AZURE_CLIENT_ID"]))
        }
        let cache = RefreshingCredential<String>(refreshMargin: refreshMargin) { try provider.fetch(tokens) }
        return .bearer(cache, source: provider.description)
    }

    /// A SAS token without a leading `?`.
    static func normaliseSAS(_ s: String) -> String { s.hasPrefix("?") ? String(s.dropFirst()) : s }
}

/// An Azure AD token endpoint for storage tokens.
enum AzureTokenProvider: Sendable {
    /// Client-credentials grant with the federated token as `client_assertion` (AKS workload identity).
    case workloadIdentity(tokenFile: String, clientID: String, tenantID: String, authority: String)
    /// The App Service / Container Apps / Functions identity endpoint (api-version 2019-08-01).
    case appService(endpoint: String, header: String, clientID: String?)
    /// The instance metadata service (VMs, VM scale sets, AKS node identity), api-version 2018-02-01.
    case imds(base: String, clientID: String?)

    /// Names the mode and its endpoint for messages (never a token or header value).
    var description: String {
        switch self {
        case .workloadIdentity(_, let client, let tenant, let authority):
            return "workload identity (client \(client), tenant \(tenant), authority \(authority))"
        case .appService(let endpoint, _, _): return "managed identity (identity endpoint \(endpoint))"
        case .imds(let base, _): return "managed identity (IMDS \(base))"
        }
    }

    /// Fetches a token and its expiry.
    /// - Throws: `ReplicationError(.io)` naming the endpoint, the HTTP status and the OAuth error code.
    func fetch(_ http: CurlHTTPClient) throws -> Expiring<String> {
        let enc = { (s: String) in SigV4Signer.uriEncode(s, keepSlash: false) }
        let request: HTTPRequest
        switch self {
        case .workloadIdentity(let file, let client, let tenant, let authority):
            let assertion: String
            do {
                assertion = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw ReplicationError(.config, "abs replica: cannot read AZURE_FEDERATED_TOKEN_FILE \(file): \(error.localizedDescription)")
            }
            let form = "client_assertion=\(enc(assertion))" +
                "&client_assertion_type=\(enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"))" +
                "&client_id=\(enc(client))&grant_type=client_credentials" +
                "&scope=\(enc(AzureCredentialChain.resource + ".default"))"
            request = HTTPRequest(method: "POST", url: authority + enc(tenant) + "/oauth2/v2.0/token",
                                  headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
                                  body: .bytes(Array(form.utf8)))
        case .appService(let endpoint, let header, let client):
            var url = endpoint + (endpoint.contains("?") ? "&" : "?") +
                "api-version=2019-08-01&resource=\(enc(AzureCredentialChain.resource))"
            if let c = client { url += "&client_id=\(enc(c))" }
            request = HTTPRequest(method: "GET", url: url, headers: [("X-IDENTITY-HEADER", header), ("Accept", "application/json")])
        case .imds(let base, let client):
            var url = base + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(enc(AzureCredentialChain.resource))"
            if let c = client { url += "&client_id=\(enc(c))" }
            request = HTTPRequest(method: "GET", url: url, headers: [("Metadata", "true")])
        }
        let started = Date()
        let resp: HTTPResponse
        do {
            resp = try http.perform(sink: .memory(limit: 1 << 20)) { request }
        } catch {
            var hint = ""
            if case .imds = self {
                hint = " (no account-key, sas-token, LITESTREAM_AZURE_ACCOUNT_KEY/_SAS_TOKEN or workload identity is configured, " +
                    "so the instance metadata service was asked)"
            }
            throw ReplicationError(.io, "token request to \(description) failed: \(AzureRedaction.scrub(error.oneLine, secrets: []))" + hint,
                                   cause: ReplicationError.cause(of: error))
        }
        let json = (try? JSONSerialization.jsonObject(with: Data(resp.body))) as? [String: Any] ?? [:]
        guard (200..<300).contains(resp.status) else {
            // OAuth errors: {"error": "invalid_client", "error_description": "…"}; IMDS/App Service similar.
            var code = (json["error"] as? String) ?? ""
            if let e = json["error"] as? [String: Any] { code = (e["code"] as? String) ?? code }
            let text = (json["error_description"] as? String) ?? (json["message"] as? String)
                ?? ((json["error"] as? [String: Any])?["message"] as? String) ?? ""
            let detail = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            throw ReplicationError(.io, AzureRedaction.scrub("token request to \(description): HTTP \(resp.status)" +
                (code.isEmpty ? "" : " \(code)") + (detail.isEmpty ? "" : ": \(detail)"), secrets: []))
        }
        guard let token = json["access_token"] as? String, !token.isEmpty else {
            throw ReplicationError(.io, "token response from \(description) has no access_token")
        }
        return Expiring(token, expiresAt: Self.expiry(json, requestedAt: started))
    }

    /// `expires_on` (epoch seconds, number or string) else `expires_in` (seconds) else one hour.
    static func expiry(_ json: [String: Any], requestedAt: Date) -> Date {
        func number(_ v: Any?) -> Double? {
            if let n = v as? NSNumber { return n.doubleValue }
            if let s = v as? String { return Double(s.trimmingCharacters(in: .whitespaces)) }
            return nil
        }
        if let on = number(json["expires_on"]), on > 1_000_000_000 { return Date(timeIntervalSince1970: on) }
        if let inSeconds = number(json["expires_in"]) { return requestedAt.addingTimeInterval(inSeconds) }
        return requestedAt.addingTimeInterval(3600)
    }
}
