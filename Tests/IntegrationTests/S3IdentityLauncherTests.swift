import Foundation
import Testing

/// `launcher replicate` / `restore` with only web-identity (EKS IRSA) variables: no static keys anywhere. The
/// identity server of `scripts/start-cloud-identity.sh` issues short-lived key pairs SeaweedFS knows, so the run
/// crosses credential refreshes. Skips without RK_AWSID_ENDPOINT; fails under CI=true.
extension ReplicationIntegrationTests {
    @Suite(.serialized) struct S3IdentityLauncherTests {
        typealias H = ReplicationHarness
        typealias S3 = ReplicationIntegrationTests.S3LauncherTests

        /// The keyless environment: ours without any AWS/LITESTREAM key, HOME without ~/.aws, web identity set.
        static func keylessEnvironment(home: String, tokenFile: String, roleARN: String, sts: String) -> [String: String] {
            var env = ProcessInfo.processInfo.environment
            for k in env.keys where (k.hasPrefix("AWS_") || k.hasPrefix("LITESTREAM_")) { env[k] = nil }
            env["HOME"] = home
            env["AWS_WEB_IDENTITY_TOKEN_FILE"] = tokenFile
            env["AWS_ROLE_ARN"] = roleARN
            env["AWS_ROLE_SESSION_NAME"] = "rk-launcher"
            env["AWS_ENDPOINT_URL_STS"] = sts
            env["AWS_EC2_METADATA_DISABLED"] = "true"
            return env
        }

        static func stats(_ base: String, tenant: String) -> [String: Any] {
            guard let r = try? runCommand("/usr/bin/env", ["curl", "-s", base + "/stats?tenant=" + tenant], timeout: 10),
                  let o = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any] else { return [:] }
            return o
        }

        static func stsIssues(_ base: String, tenant: String) -> Int {
            ((stats(base, tenant: tenant)["counts"] as? [String: Any])?["sts"] as? Int) ?? 0
        }

        @Test func replicateAndRestoreWithWebIdentityAcrossRefreshes() throws {
            guard let id = S3IdentityServerTests.env(), let s = S3.server() else { return }
            let (base, tokenFile, role) = (id.base, id.tokenFile, id.roleARN)
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            // Credentials live 12 s and are refreshed 3 s early: a 20 s run crosses at least two refreshes.
            let tenant = "launcher-\(UUID().uuidString.prefix(8).lowercased())"
            let env = Self.keylessEnvironment(home: sb.dir, tokenFile: tokenFile, roleARN: role,
                                              sts: base + "/t/\(tenant),lifetime=12")
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml"), prefix = S3.prefix("webid")
            try S3.writeConfig(cfg, db: db, server: s, prefix: prefix)
            try H.runWriter(db, count: 1)

            let started = Date()
            let launcher = try S3.startReplicate(sb, ["-config", cfg], env: env, log: "launcher.log")
            let writer = try sb.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 50, count: 1000),
                                         log: "writer.log", environment: ProcessInfo.processInfo.environment)
            try H.finishWriter(writer, timeout: 120)
            // Keep replicating until the launcher has fetched credentials at least three times (two refreshes).
            let refreshed = poll(timeout: 40) {
                if Self.stsIssues(base, tenant: tenant) >= 3 { return true }
                _ = try? sqlite(db, "INSERT INTO events (at, payload) VALUES (strftime('%Y-%m-%dT%H:%M:%SZ','now'), 'tick');")
                usleep(500_000)
                return false
            }
            #expect(refreshed, "fewer than 3 STS issues: \(Self.stsIssues(base, tenant: tenant))\n\(H.tail(launcher.output))")
            let rows = try H.eventCount(db)
            try S3.waitForReplicaEvents(sb, config: cfg, db: db, count: rows, env: env, timeout: 60)
            let status = H.stop(launcher)
            let elapsed = Date().timeIntervalSince(started)
            #expect(status == 0, "launcher should exit 0 after SIGTERM:\n\(H.tail(launcher.output))")
            #expect(!launcher.output.contains("ERROR"), "errors in the launcher log:\n\(H.tail(launcher.output))")
            let sourceLines = launcher.output.components(separatedBy: "\n").filter { $0.contains("s3 replica credentials") }
            #expect(sourceLines.count == 1 && sourceLines[0].contains("web identity"),
                    "the credential source should be logged once:\n\(sourceLines.joined(separator: "\n"))")
            // Once per lifetime: ~9 s between fetches (restores fetch their own), never per request.
            let issues = Self.stsIssues(base, tenant: tenant)
            #expect(issues >= 3 && Double(issues) <= elapsed / 9 + 12, "\(issues) STS issues in \(Int(elapsed)) s")

            try S3.expectRestoreEqualsSource(sb, config: cfg, db: db, env: env, name: "webid",
                                             context: "launcher:\n\(H.tail(launcher.output))")
            // Every output: no web-identity token, no issued secret or session token, no static secret.
            let restoreLog = try S3.restore(["-o", sb.path("again.db"), "-config", cfg, db], env: env)
            let issued = (Self.stats(base, tenant: tenant)["secrets"] as? [String]) ?? []
            #expect(issued.count >= 6, "the identity server should list every issued secret and session token")
            for (name, text) in [("launcher", launcher.output), ("restore", restoreLog)] {
                TestServers.expectNoSecrets(id.secrets + issued, in: text, "the \(name) output")
            }
        }
    }
}
