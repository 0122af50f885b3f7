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
            let e = ProcessInfo.processInfo.environment
            guard let base = e["RK_AWSID_ENDPOINT"], !base.isEmpty, let tokenFile = e["RK_AWSID_TOKEN_FILE"],
                  let role = e["RK_AWSID_ROLE_ARN"] else {
                if e["CI"] == "true" {
                    Issue.record("RK_AWSID_ENDPOINT is not set: under CI=true this test needs scripts/start-cloud-identity.sh")
                } else {
                    print("SKIP S3 identity launcher test: RK_AWSID_ENDPOINT is not set (run scripts/start-cloud-identity.sh)")
                }
                return
            }
            guard let s = S3.server() else { return }
            let sb = try H.Sandbox()
            let procs = S3.Procs()
            defer { procs.cleanup(); sb.cleanup() }
            // Credentials live 12 s and are refreshed 3 s early: a 20 s run crosses at least two refreshes.
            let tenant = "launcher-\(UUID().uuidString.prefix(8).lowercased())"
            let env = Self.keylessEnvironment(home: sb.dir, tokenFile: tokenFile, roleARN: role,
                                              sts: base + "/t/\(tenant),lifetime=12")
            let db = sb.path("app.db"), cfg = sb.path("litestream.yml"), prefix = S3.prefix("webid")
            try S3.writeConfig(cfg, db: db, server: s, prefix: prefix)
            try H.runWriter(db, count: 1)

            let started = Date()
            let launcher = try S3.startReplicate(sb, procs, ["-config", cfg], env: env, log: "launcher.log")
            let writer = try procs.start(TestSupport.exampleWriter, H.writerArgs(db, rate: 50, count: 1000),
                                         log: sb.path("writer.log"), env: ProcessInfo.processInfo.environment)
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
            let token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let restoreLog = try S3.restore(["-o", sb.path("again.db"), "-config", cfg, db], env: env)
            let issued = (Self.stats(base, tenant: tenant)["secrets"] as? [String]) ?? []
            #expect(issued.count >= 6, "the identity server should list every issued secret and session token")
            for (name, text) in [("launcher", launcher.output), ("restore", restoreLog)] {
                for secret in [token, "rkRotSecret", "RKSESSION", "eyJhbGciOiAiSFMyNTYi", s.secretAccessKey] + issued
                    where !secret.isEmpty {
                    #expect(!text.contains(secret), "a secret (\(secret.prefix(5))…) appears in the \(name) output")
                }
            }
        }
    }
}
