import Foundation
import Testing
@testable import ReplicationKit

/// How every integration suite finds the real servers: each `scripts/start-*.sh` (run by `scripts/test.sh`)
/// exports `RK_*` variables; a test whose server's variable is missing fails under `CI=true` and prints a SKIP
/// line otherwise. The backends' `server()`/`get()` read their remaining variables from the environment
/// returned here.
enum TestServers {
    /// Our environment when `variable` is set and not empty; otherwise nil after recording a failure (CI=true)
    /// or printing `SKIP <what>: …`. `script` is the start script that exports the variable.
    static func environment(requiring variable: String, for what: String, script: String) -> [String: String]? {
        let env = ProcessInfo.processInfo.environment
        if let value = env[variable], !value.isEmpty { return env }
        if TestSupport.isCI {
            Issue.record("\(variable) is not set: under CI=true \(what) need a server (eval \"$(scripts/\(script))\")")
        } else {
            print("SKIP \(what): \(variable) is not set (run: eval \"$(scripts/\(script))\")")
        }
        return nil
    }

    /// The space-separated secrets a start script exports in `variable` (`RK_*_SECRETS`).
    static func secrets(_ env: [String: String], _ variable: String) -> [String] {
        (env[variable] ?? "").split(separator: " ").map(String.init)
    }

    /// The output secret scan: records an issue for each of `secrets` found in `text` (showing only its first
    /// characters), `what` naming the output.
    static func expectNoSecrets(_ secrets: [String], in text: String, _ what: String,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        for secret in secrets where !secret.isEmpty {
            #expect(!text.contains(secret), "\(what) contains a secret (\(secret.prefix(4))…):\n\(tail(text))",
                    sourceLocation: sourceLocation)
        }
    }

    private static func tail(_ text: String, _ n: Int = 40) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(n).joined(separator: "\n")
    }
}

// MARK: - Per-backend discovery: every RK_* variable the suites read is read here.

/// SeaweedFS (`scripts/start-seaweedfs.sh`).
extension S3IntegrationTests {
    struct Server {
        var endpoint: String
        var bucket: String
        var region: String
        var credentials: AWSCredentials
    }

    /// The configured server; nil (and a printed skip) when RK_S3_ENDPOINT is unset, a failure under CI=true.
    static func server(_ test: String = #function) -> Server? {
        guard let env = TestServers.environment(requiring: "RK_S3_ENDPOINT", for: "S3 test \(test)", script: "start-seaweedfs.sh"),
              let endpoint = env["RK_S3_ENDPOINT"] else { return nil }
        let id = env["RK_S3_ACCESS_KEY_ID"] ?? env["AWS_ACCESS_KEY_ID"] ?? ""
        let secret = env["RK_S3_SECRET_ACCESS_KEY"] ?? env["AWS_SECRET_ACCESS_KEY"] ?? ""
        return Server(endpoint: endpoint, bucket: env["RK_S3_BUCKET"] ?? "rk-test", region: env["RK_S3_REGION"] ?? "us-east-1",
                      credentials: AWSCredentials(accessKeyID: id, secretAccessKey: secret, source: "test environment"))
    }
}

/// fake-gcs-server behind the OAuth2-checking proxy (`scripts/start-gcs.sh`).
extension GCSIntegrationTests {
    struct Server {
        var endpoint: String
        var bucket: String
        var saFile: String
        var wrongSAFile: String
        var userFile: String
        var metadataHost: String
        var statsURL: String
        var secrets: [String]
    }

    /// The configured server; nil (and a printed skip) when RK_GCS_ENDPOINT is unset, a failure under CI=true.
    static func server(_ test: String = #function) -> Server? {
        guard let env = TestServers.environment(requiring: "RK_GCS_ENDPOINT", for: "GCS test \(test)", script: "start-gcs.sh"),
              let endpoint = env["RK_GCS_ENDPOINT"] else { return nil }
        return Server(endpoint: endpoint, bucket: env["RK_GCS_BUCKET"] ?? "rk-gcs-test", saFile: env["RK_GCS_SA_FILE"] ?? "",
                      wrongSAFile: env["RK_GCS_WRONG_SA_FILE"] ?? "", userFile: env["RK_GCS_AUTHORIZED_USER_FILE"] ?? "",
                      metadataHost: env["RK_GCS_METADATA_HOST"] ?? "", statsURL: env["RK_GCS_STATS_URL"] ?? "",
                      secrets: TestServers.secrets(env, "RK_GCS_SECRETS") + ["ya29."])
    }
}

/// The Azure Blob test server (`scripts/start-azure.sh`).
extension AzureTestServer {
    /// The server; nil (and a printed skip) when RK_AZURE_ENDPOINT is unset, a recorded failure under CI=true.
    static func get(_ test: String = #function) -> AzureTestServer? {
        guard let env = TestServers.environment(requiring: "RK_AZURE_ENDPOINT", for: "Azure test \(test)", script: "start-azure.sh"),
              let endpoint = env["RK_AZURE_ENDPOINT"] else { return nil }
        func v(_ k: String) -> String { env[k] ?? "" }
        var secrets = TestServers.secrets(env, "RK_AZURE_SECRETS")
        secrets += secrets.compactMap { $0.removingPercentEncoding }.filter { !secrets.contains($0) }
        return AzureTestServer(endpoint: endpoint, account: v("RK_AZURE_ACCOUNT"), key: v("RK_AZURE_ACCOUNT_KEY"),
                               container: v("RK_AZURE_CONTAINER"), sas: v("RK_AZURE_SAS_TOKEN"),
                               sasReadOnly: v("RK_AZURE_SAS_TOKEN_READONLY"), sasExpired: v("RK_AZURE_SAS_TOKEN_EXPIRED"),
                               control: v("RK_AZURE_CONTROL_URL"), imds: v("RK_AZURE_IMDS_ENDPOINT"),
                               identityEndpoint: v("RK_AZURE_IDENTITY_ENDPOINT"), identityHeader: v("RK_AZURE_IDENTITY_HEADER"),
                               authority: v("RK_AZURE_AUTHORITY_HOST"), clientID: v("RK_AZURE_CLIENT_ID"),
                               tenantID: v("RK_AZURE_TENANT_ID"), federatedTokenFile: v("RK_AZURE_FEDERATED_TOKEN_FILE"),
                               launcherClientID: v("RK_AZURE_LAUNCHER_CLIENT_ID"),
                               python: env["RK_AZURE_PYTHON"] ?? "python3", secrets: secrets)
    }
}

/// The private sshd (`scripts/start-sftp.sh`).
extension SFTPTestServer {
    /// nil (and a printed skip) when RK_SFTP_HOST is unset; a recorded failure under CI=true.
    static func get(_ test: String = #function) -> SFTPTestServer? {
        guard let env = TestServers.environment(requiring: "RK_SFTP_HOST", for: "SFTP test \(test)", script: "start-sftp.sh"),
              let hp = env["RK_SFTP_HOST"], let port = Int(hp.split(separator: ":").last ?? "") else { return nil }
        func v(_ k: String) -> String { env[k] ?? "" }
        return SFTPTestServer(host: "127.0.0.1", port: port, user: v("RK_SFTP_USER"), password: v("RK_SFTP_PASSWORD"),
                              key: v("RK_SFTP_KEY"), ecdsaKey: v("RK_SFTP_ECDSA_KEY"), passKey: v("RK_SFTP_PASS_KEY"),
                              passphrase: v("RK_SFTP_KEY_PASSPHRASE"), hostKeyLine: v("RK_SFTP_HOST_KEY"),
                              fingerprint: v("RK_SFTP_HOST_FINGERPRINT"), knownHosts: v("RK_SFTP_KNOWN_HOSTS"),
                              root: v("RK_SFTP_ROOT"), config: v("RK_SFTP_CONFIG"), secrets: TestServers.secrets(env, "RK_SFTP_SECRETS"))
    }
}

/// The cloud-identity endpoints (`scripts/start-cloud-identity.sh`) with SeaweedFS.
extension S3IdentityServerTests {
    static func env(_ test: String = #function) -> Env? {
        guard let e = TestServers.environment(requiring: "RK_AWSID_ENDPOINT", for: "S3 identity test \(test)", script: "start-cloud-identity.sh"),
              let base = e["RK_AWSID_ENDPOINT"] else { return nil }
        guard let s3 = S3IntegrationTests.server(test) else { return nil }
        let tokenFile = e["RK_AWSID_TOKEN_FILE"] ?? ""
        let token = ((try? String(contentsOfFile: tokenFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let ecs = e["RK_AWSID_ECS_TOKEN"] ?? ""
        return Env(s3: s3, base: base, tokenFile: tokenFile, roleARN: e["RK_AWSID_ROLE_ARN"] ?? "", ecsToken: ecs,
                   ecsTokenFile: e["RK_AWSID_ECS_TOKEN_FILE"] ?? "", moto: e["RK_AWSID_MOTO_URL"] ?? "",
                   secrets: [token, ecs, "rkRotSecret", "RKSESSION", "RKIMDS", Self.sessionJWTHeader,
                             s3.credentials.secretAccessKey].filter { !$0.isEmpty })
    }
}
