import Foundation
import Testing
@testable import ReplicationKit

/// The Azure Blob test server started by `scripts/start-azure.sh` (RK_AZURE_* variables).
struct AzureTestServer {
    var endpoint: String
    var account: String
    var key: String
    var container: String
    var sas: String
    /// A container SAS with `sp=rl` only, and one that expired an hour ago.
    var sasReadOnly: String
    var sasExpired: String
    var control: String
    var imds: String
    var identityEndpoint: String
    var identityHeader: String
    var authority: String
    var clientID: String
    var tenantID: String
    var federatedTokenFile: String
    /// The workload-identity client the launcher tests use (its token fetches are counted apart).
    var launcherClientID: String
    var python: String
    /// Every secret of the run (key, SAS signature in both encodings, identity header, federated token).
    var secrets: [String]


    /// The process environment without any Azure credential variable (so each test picks its mode explicitly).
    static var cleanEnvironment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        for k in ["LITESTREAM_AZURE_ACCOUNT_KEY", "LITESTREAM_AZURE_SAS_TOKEN", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID",
                  "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_IMDS_ENDPOINT"] {
            env[k] = nil
        }
        return env
    }

    /// Environment variables of each identity mode.
    func identityEnvironment(_ mode: String) -> [String: String] {
        var env = Self.cleanEnvironment
        switch mode {
        case "imds":
            env["AZURE_IMDS_ENDPOINT"] = imds
            env["AZURE_CLIENT_ID"] = clientID
        case "appservice":
            env["IDENTITY_ENDPOINT"] = identityEndpoint
            env["IDENTITY_HEADER"] = identityHeader
            env["AZURE_CLIENT_ID"] = clientID
        default:
            env["AZURE_FEDERATED_TOKEN_FILE"] = federatedTokenFile
            env["AZURE_CLIENT_ID"] = clientID
            env["AZURE_TENANT_ID"] = tenantID
            env["AZURE_AUTHORITY_HOST"] = authority
        }
        return env
    }

    /// A client with its own prefix; `key`/`sas` nil and `env` decide the credential.
    func client(prefix: String = "t-\(UUID().uuidString.prefix(8).lowercased())", container: String? = nil,
                key: String? = nil, sas: String? = nil, env: [String: String] = cleanEnvironment,
                blockThreshold: UInt64 = 8 << 20, blockSize: UInt64 = 4 << 20, listPageSize: Int? = nil,
                refreshMargin: Duration = .seconds(300), endpoint: String? = nil) throws -> AzureBlobReplicaClient {
        var o = CurlHTTPOptions()
        o.maxAttempts = 2
        o.baseDelay = .milliseconds(20)
        let d = AzureDestination(accountName: account, container: container ?? self.container, path: prefix,
                                 endpoint: endpoint ?? self.endpoint, accountKey: key, sasToken: sas)
        return try AzureBlobReplicaClient(destination: d, environment: env, httpOptions: o, blockThreshold: blockThreshold,
                                          blockSize: blockSize, listPageSize: listPageSize, tokenRefreshMargin: refreshMargin)
    }

    /// GET `/_stats` (or POST another control path) on the server.
    @discardableResult
    func control(_ path: String, method: String = "POST") throws -> [String: Any] {
        let http = CurlHTTPClient()
        let r = try http.perform(sink: .memory(limit: 1 << 20)) {
            HTTPRequest(method: method, url: control + path, headers: [], body: method == "POST" ? .bytes([]) : .empty)
        }
        return (try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]) ?? [:]
    }

    func stats() throws -> [String: Any] { try control("/_stats", method: "GET") }

    /// A storage counter (`put_blob`, `put_block`, `put_block_list`, `list`) of the blobs under `prefix`'s first element.
    func counter(_ name: String, prefix: String) throws -> Int {
        let top = String(prefix.split(separator: "/").first ?? "")
        return (((try stats()["by_prefix"] as? [String: Any])?[top] as? [String: Any])?[name] as? NSNumber)?.intValue ?? 0
    }

    /// Token fetches of `kind` by this suite's client id (other suites may fetch tokens at the same time).
    func fetches(_ kind: String) throws -> Int {
        ((try stats()["token_fetches_by_client"] as? [String: Any])?["\(kind):\(clientID)"] as? NSNumber)?.intValue ?? 0
    }

    /// A counter of `/_stats` (`kind` selects inside a nested object such as `token_fetches`).
    func counter(_ name: String, _ kind: String? = nil) throws -> Int {
        let s = try stats()
        if let kind { return ((s[name] as? [String: Any])?[kind] as? NSNumber)?.intValue ?? -1 }
        return (s[name] as? NSNumber)?.intValue ?? -1
    }

    /// Asserts that none of the run's secrets appears in `text`.
    func expectNoSecrets(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        TestServers.expectNoSecrets(secrets, in: text, what, sourceLocation: sourceLocation)
    }

    /// Runs `Tests/Tools/azure_sdk_interop.py ARGS` with the venv's python; returns stdout.
    func sdk(_ args: [String]) throws -> String {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Tools/azure_sdk_interop.py").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python.contains("/") ? python : "/usr/bin/env")
        p.arguments = (python.contains("/") ? [] : [python]) + [script] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ReplicationError(.other, "azure_sdk_interop.py \(args.first ?? "") exited \(p.terminationStatus): " +
                                   String(decoding: errData.suffix(2000), as: UTF8.self))
        }
        return String(decoding: data, as: UTF8.self)
    }
}
