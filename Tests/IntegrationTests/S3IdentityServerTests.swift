import Foundation
import Testing
import TestFixtures
@testable import ReplicationKit

/// The keyless S3 credential sources against the loopback identity endpoints of `scripts/start-cloud-identity.sh`
/// (Tests/Tools/aws_identity_server.py handing out key pairs SeaweedFS knows; moto for the STS request format)
/// and SeaweedFS (`scripts/start-seaweedfs.sh`). Each test uses its own tenant (`/t/NAME,.../`) of the identity
/// server, so counts and key rotation are per test.
@Suite("S3 identity against the identity endpoints")
struct S3IdentityServerTests {
    struct Env {
        var s3: S3IntegrationTests.Server
        var base: String, tokenFile: String, roleARN: String, ecsToken: String, ecsTokenFile: String, moto: String
        /// Values that must never appear in any output.
        var secrets: [String]
    }

    /// How every session token the identity server mints starts (base64url of its JWT header).
    static let sessionJWTHeader = "eyJhbGciOiAiSFMyNTYi"


    /// A tenant name of its own; `options` like `lifetime=8` or `token=0`.
    static func tenant(_ tag: String, _ options: String...) -> String {
        ([tag + "-" + UUID().uuidString.prefix(8).lowercased()] + options).joined(separator: ",")
    }

    /// The environment of a keyless replica: no static keys anywhere, no instance metadata unless set.
    static func keyless(_ extra: [String: String]) -> [String: String] {
        ["HOME": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"].merging(extra) { $1 }
    }

    static func client(_ e: Env, _ p: S3CredentialProvider) -> S3ReplicaClient {
        var o = CurlHTTPOptions()
        o.maxAttempts = 2
        o.baseDelay = .milliseconds(20)
        return S3ReplicaClient(location: S3Location(bucket: e.s3.bucket, prefix: "id-\(UUID().uuidString)", region: e.s3.region,
                                                    endpoint: e.s3.endpoint), provider: p, httpOptions: o)
    }

    /// The identity server's counters of one tenant (`counts`, `rejected`, `issued`).
    static func stats(_ e: Env, _ tenant: String) throws -> [String: Any] {
        let name = String(tenant.split(separator: ",")[0])
        let r = try CurlHTTPClient().perform(sink: .memory(limit: 1 << 20)) {
            HTTPRequest(method: "GET", url: e.base + "/stats?tenant=" + name, headers: [])
        }
        return (try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]) ?? [:]
    }

    static func count(_ e: Env, _ tenant: String, _ endpoint: String, rejected: Bool = false) throws -> Int {
        ((try stats(e, tenant)[rejected ? "rejected" : "counts"] as? [String: Any])?[endpoint] as? Int) ?? 0
    }

    static func expectClean(_ text: String, _ e: Env, _ where_: String = "") {
        TestServers.expectNoSecrets(e.secrets, in: text, "the output \(where_)")
        #expect(!text.contains("\n"), "not one line: \(text)")
    }

    /// Calls `condition` (which does real work between checks) until it is true or `timeout` passes.
    static func poll(timeout: TimeInterval, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return false
    }

    /// Put, list and get one object, then delete the generation.
    static func roundTrip(_ c: S3ReplicaClient) throws {
        let g = try #require(Generation(name: "00000000000000cd"))
        let data = Array("keyless \(UUID().uuidString)".utf8)
        _ = try c.writeSnapshot(generation: g, index: 3, body: ReplicaClientConformance.body(data))
        let listed = try c.snapshots(generation: g)
        #expect(listed.map(\.index) == [3])
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(listed[0])) == data)
        try c.deleteGeneration(g)
        #expect(try c.generations().isEmpty)
    }

    @Test func webIdentityPassesTheConformanceCheckOnSeaweedFS() throws {
        guard let e = Self.env() else { return }
        let t = Self.tenant("wi", "lifetime=900")
        let p = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_WEB_IDENTITY_TOKEN_FILE": e.tokenFile, "AWS_ROLE_ARN": e.roleARN, "AWS_ROLE_SESSION_NAME": "rk-test",
            "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_STS": e.base + "/t/" + t]))
        #expect(p.source.hasPrefix("web identity") && p.isTemporary)
        try ReplicaClientConformance.check(Self.client(e, p))
        #expect(try Self.count(e, t, "sts") == 1, "credentials of a 900 s lifetime must be fetched once")
        #expect(try Self.count(e, t, "sts", rejected: true) == 0)
    }

    @Test func containerRelativeAndFullURIRoundTrips() throws {
        guard let e = Self.env() else { return }
        let rel = Self.tenant("ecsrel", "lifetime=900")
        let p1 = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/t/\(rel)/ecs/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": e.ecsToken]), containerHost: e.base)
        #expect(p1.source.contains("RELATIVE_URI"))
        try Self.roundTrip(Self.client(e, p1))
        #expect(try Self.count(e, rel, "ecs") == 1)

        let full = Self.tenant("ecsfull", "token=0", "lifetime=900")  // static rotation keys, no session token
        let p2 = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": e.base + "/t/\(full)/ecs/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": e.ecsTokenFile, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ignored"]))
        #expect(p2.source.contains("FULL_URI"))
        try Self.roundTrip(Self.client(e, p2))
        #expect(try Self.count(e, full, "ecs") == 1)
        #expect(try Self.count(e, full, "ecs", rejected: true) == 0, "the token file must win over the inline token")
    }

    @Test func instanceMetadataV2RoundTrip() throws {
        guard let e = Self.env() else { return }
        let t = Self.tenant("imds", "lifetime=900")
        var env = Self.keyless(["AWS_EC2_METADATA_SERVICE_ENDPOINT": e.base + "/t/" + t])
        env["AWS_EC2_METADATA_DISABLED"] = nil
        let p = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: env)
        #expect(p.source.hasPrefix("EC2 instance metadata"))
        try Self.roundTrip(Self.client(e, p))
        // The probe at creation fetched the credentials; the requests used them: one issue, one token, one listing.
        #expect(try Self.count(e, t, "imds") == 1)
        #expect(try Self.count(e, t, "imds_token") == 1)
        #expect(try Self.count(e, t, "imds_role_list") == 1)
        #expect(try Self.count(e, t, "imds", rejected: true) == 0)
    }

    @Test func refreshDuringARunKeepsSigningWithRotatedKeys() throws {
        guard let e = Self.env() else { return }
        let t = Self.tenant("refresh", "lifetime=8")  // refreshed 2 s before expiry, every ~6 s
        let p = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_WEB_IDENTITY_TOKEN_FILE": e.tokenFile, "AWS_ROLE_ARN": e.roleARN, "AWS_ENDPOINT_URL_STS": e.base + "/t/" + t]))
        let c = Self.client(e, p)
        let g = try #require(Generation(name: "00000000000000ef"))
        defer { try? c.deleteGeneration(g) }
        let started = Date()
        var written = 0, keys = Set<String>()
        // Write WAL segments until three different key pairs have signed accepted requests (bounded).
        let deadline = Date().addingTimeInterval(40)
        var ok = false
        while !ok && Date() < deadline {
            do {
                keys.insert(try p.credentials().accessKeyID)
                let pos = WALPosition(generation: g, index: 1, offset: UInt64(written) * 4096)
                _ = try c.writeWALSegment(position: pos, body: ReplicaClientConformance.body(Array(repeating: UInt8(written & 0xff), count: 64)))
                written += 1
            } catch {
                Issue.record("a request failed during the run: \(error.oneLine)")
                break
            }
            ok = keys.count >= 3
            if !ok { usleep(250_000) }
        }
        #expect(ok, "no refresh observed within 40 s (keys \(keys.sorted()))")
        #expect(try c.walSegments(generation: g).count == written)
        let elapsed = Date().timeIntervalSince(started)
        let issued = try Self.count(e, t, "sts")
        // Once per lifetime: at most one fetch per 6 s of run (plus the first).
        #expect(issued >= 3 && Double(issued) <= elapsed / 6 + 1.5, "\(issued) fetches in \(elapsed) s")
        let seen = (try Self.stats(e, t)["issued"] as? [String]) ?? []
        #expect(Set(seen).count >= 3 && keys.isSubset(of: Set(seen)))
    }

    /// Session tokens SeaweedFS stops accepting before their announced expiry (revoked, clock skew): the 403
    /// ExpiredToken makes the client fetch new credentials once and the request succeeds.
    @Test func expiredSessionTokenIsReplacedOnceAndTheRequestSucceeds() throws {
        guard let e = Self.env() else { return }
        let t = Self.tenant("expired", "lifetime=900", "jwtlife=2")
        let p = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_WEB_IDENTITY_TOKEN_FILE": e.tokenFile, "AWS_ROLE_ARN": e.roleARN, "AWS_ENDPOINT_URL_STS": e.base + "/t/" + t]))
        let c = Self.client(e, p)
        var failure: String?
        // Every listing succeeds; after ~2 s one of them meets ExpiredToken and fetches a second session.
        let replaced = Self.poll(timeout: 20) {
            do { _ = try c.generations() } catch { failure = error.oneLine; return true }
            return (try? Self.count(e, t, "sts")) == 2
        }
        #expect(failure == nil, "a request failed: \(failure ?? "")")
        #expect(replaced, "no second STS issue within 20 s")
        #expect(try Self.count(e, t, "sts") == 2)
    }

    /// A session token SeaweedFS does not know (403 InvalidAccessKeyId): one more fetch, then one clean line.
    @Test func rejectedSessionTokenIsRetriedOnceThenReported() throws {
        guard let e = Self.env() else { return }
        let t = Self.tenant("forged", "token=forged", "lifetime=900")
        let p = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_WEB_IDENTITY_TOKEN_FILE": e.tokenFile, "AWS_ROLE_ARN": e.roleARN, "AWS_ENDPOINT_URL_STS": e.base + "/t/" + t]))
        do {
            _ = try Self.client(e, p).generations()
            Issue.record("SeaweedFS accepted a forged session token")
        } catch {
            #expect(error.oneLine.contains("HTTP 403 InvalidAccessKeyId"), "\(error.oneLine)")
            Self.expectClean(error.oneLine, e, "the error")
        }
        #expect(try Self.count(e, t, "sts") == 2, "one fetch, one more after the 403")
    }

    @Test func motoAcceptsTheSTSRequestFormat() throws {
        guard let e = Self.env(), !e.moto.isEmpty else { return }
        let p = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_WEB_IDENTITY_TOKEN_FILE": e.tokenFile, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/moto-role",
            "AWS_ROLE_SESSION_NAME": "rk-moto", "AWS_ENDPOINT_URL_STS": e.moto]))
        let c = try p.credentials()
        #expect(c.accessKeyID.hasPrefix("ASIA") && c.accessKeyID.count >= 16, "\(c.accessKeyID)")
        #expect((c.sessionToken ?? "").count > 16 && c.secretAccessKey.count >= 20)
        #expect(p.cachedExpiry != nil, "moto's Expiration was not parsed")
        #expect(p.scrub("x \(c.secretAccessKey) \(c.sessionToken ?? "")") == "x [redacted] [redacted]")
    }

    @Test func badInputsAreOneLineWithoutSecrets() throws {
        guard let e = Self.env() else { return }
        // A token file that disappears after start-up: a replica error at the next fetch, not a crash.
        let dir = try TestSupport.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/token"
        try FileManager.default.copyItem(atPath: e.tokenFile, toPath: file)
        let wi = Self.tenant("badwi")
        let p1 = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_WEB_IDENTITY_TOKEN_FILE": file, "AWS_ROLE_ARN": e.roleARN, "AWS_ENDPOINT_URL_STS": e.base + "/t/" + wi]))
        try FileManager.default.removeItem(atPath: file)
        do { _ = try Self.client(e, p1).generations(); Issue.record("expected an error") } catch {
            #expect(error.oneLine.contains("cannot read token file \(file)"), "\(error.oneLine)")
            #expect(error.oneLine.contains("s3: list \(e.s3.bucket)/"), "the error must name the replica: \(error.oneLine)")
            Self.expectClean(error.oneLine, e)
        }
        // A token STS does not accept.
        try "not-the-token".write(toFile: file, atomically: true, encoding: .utf8)
        do { _ = try Self.client(e, p1).generations(); Issue.record("expected an error") } catch {
            #expect(error.oneLine.contains("HTTP 400 InvalidIdentityToken"), "\(error.oneLine)")
            #expect(!error.oneLine.contains("not-the-token"))
            Self.expectClean(error.oneLine, e)
        }
        // A wrong container authorization token.
        let ecs = Self.tenant("badecs")
        let p2 = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: Self.keyless([
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": e.base + "/t/\(ecs)/ecs/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": "RKWRONG-ecs-token-value"]))
        do { _ = try Self.client(e, p2).generations(); Issue.record("expected an error") } catch {
            #expect(error.oneLine.contains("container credentials at") && error.oneLine.contains("HTTP 403"), "\(error.oneLine)")
            #expect(!error.oneLine.contains("RKWRONG"))
            Self.expectClean(error.oneLine, e)
        }
        #expect(try Self.count(e, ecs, "ecs") == 0)
        // Instance metadata unreachable: a start-up error listing what was tried, quickly.
        let started = Date()
        do {
            _ = try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil,
                                               environment: ["HOME": "/nonexistent", "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1"])
            Issue.record("expected no credentials")
        } catch {
            #expect(error.oneLine.contains("no credentials found") && error.oneLine.contains("EC2 instance metadata"), "\(error.oneLine)")
            #expect(error.oneLine.contains("127.0.0.1:1"), "\(error.oneLine)")
            Self.expectClean(error.oneLine, e)
        }
        #expect(Date().timeIntervalSince(started) < 5)
    }
}
