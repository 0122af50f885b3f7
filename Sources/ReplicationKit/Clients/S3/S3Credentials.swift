import Foundation

/// The S3 credential chain of issue 4: replica (or global) config keys, `LITESTREAM_ACCESS_KEY_ID` /
/// `LITESTREAM_SECRET_ACCESS_KEY`, `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` (also
/// `AWS_ACCESS_KEY` / `AWS_SECRET_KEY`), then the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or
/// `~/.aws/credentials`, profile `AWS_PROFILE` or `default`).
///
/// Not supported: ECS container credentials, EC2 instance metadata, web identity and SSO.
public enum S3CredentialChain {
    /// Resolves credentials.
    /// - Parameters:
    ///   - accessKeyID: the replica's key (global keys are already copied into replicas by the config loader).
    ///   - secretAccessKey: the replica's secret.
    ///   - environment: the process environment.
    /// - Returns: the first complete credentials found.
    /// - Throws: `ReplicationError(.config)` when none is found or a source is incomplete (no secret in the text).
    public static func resolve(accessKeyID: String?, secretAccessKey: String?,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AWSCredentials {
        let id = accessKeyID ?? "", secret = secretAccessKey ?? ""
        if !id.isEmpty || !secret.isEmpty {
            guard !id.isEmpty, !secret.isEmpty else {
                throw ReplicationError(.config, "s3 replica: both access-key-id and secret-access-key must be set")
            }
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, source: "config")
        }
        let env = environment
        if let i = env["LITESTREAM_ACCESS_KEY_ID"], let s = env["LITESTREAM_SECRET_ACCESS_KEY"], !i.isEmpty, !s.isEmpty {
            return AWSCredentials(accessKeyID: i, secretAccessKey: s, source: "LITESTREAM_ACCESS_KEY_ID")
        }
        let envID = nonEmpty(env["AWS_ACCESS_KEY_ID"]) ?? nonEmpty(env["AWS_ACCESS_KEY"])
        let envSecret = nonEmpty(env["AWS_SECRET_ACCESS_KEY"]) ?? nonEmpty(env["AWS_SECRET_KEY"])
        if let i = envID, let s = envSecret {
            return AWSCredentials(accessKeyID: i, secretAccessKey: s, sessionToken: nonEmpty(env["AWS_SESSION_TOKEN"]),
                                  source: "AWS_ACCESS_KEY_ID")
        }
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
        }
        throw ReplicationError(.config, "s3 replica: no credentials found (set access-key-id/secret-access-key, " +
            "LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a shared " +
            "credentials file; instance metadata and web identity are not supported)")
    }

    private static func nonEmpty(_ s: String?) -> String? {
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
