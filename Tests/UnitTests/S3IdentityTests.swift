import Foundation
import Testing
@testable import ReplicationKit

/// The keyless S3 credential sources without a server: response parsing, expiry and refresh with a fake clock,
/// the order of the chain, endpoint selection, scrubbing.
@Suite("S3 identity units")
struct S3IdentityUnitTests {
    static let stsXML = """
        <AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
          <AssumeRoleWithWebIdentityResult>
            <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>
            <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
            <Credentials>
              <AccessKeyId>ASIAUNITTEST</AccessKeyId>
              <SecretAccessKey>unitSecret/+=x</SecretAccessKey>
              <SessionToken>FwoGZXIvYXdzE&amp;tok</SessionToken>
              <Expiration>2026-12-05T18:30:00Z</Expiration>
            </Credentials>
          </AssumeRoleWithWebIdentityResult>
          <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
        </AssumeRoleWithWebIdentityResponse>
        """

    @Test func parsesSTSResponse() throws {
        let f = try WebIdentitySource.parse(Array(Self.stsXML.utf8))
        #expect(f.credentials.accessKeyID == "ASIAUNITTEST")
        #expect(f.credentials.secretAccessKey == "unitSecret/+=x")
        #expect(f.credentials.sessionToken == "FwoGZXIvYXdzE&tok")
        #expect(f.expiresAt == S3ReplicaClient.parseTimestamp("2026-12-05T18:30:00Z"))
        #expect(f.expiresAt != nil)
        let error = "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad</Message></Error></ErrorResponse>"
        #expect(throws: ReplicationError.self) { try WebIdentitySource.parse(Array(error.utf8)) }
        #expect(throws: ReplicationError.self) { try WebIdentitySource.parse(Array("not xml".utf8)) }
    }

    @Test func parsesContainerAndInstanceJSON() throws {
        let ecs = #"{"AccessKeyId":"ASIAECS","SecretAccessKey":"ecsSecret","Token":"ecsTok","Expiration":"2026-12-05T18:00:00Z","RoleArn":"r"}"#
        let f = try AWSCredentialJSON.parse(Array(ecs.utf8), what: "ecs", source: "container credentials")
        #expect(f.credentials.accessKeyID == "ASIAECS" && f.credentials.sessionToken == "ecsTok")
        #expect(f.expiresAt == S3ReplicaClient.parseTimestamp("2026-12-05T18:00:00Z"))
        let imds = #"{"Code":"Success","LastUpdated":"2026-12-05T17:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-05T23:00:00Z"}"#
        #expect(try AWSCredentialJSON.parse(Array(imds.utf8), what: "imds", source: "i").credentials.accessKeyID == "ASIAIMDS")
        let failed = #"{"Code":"AssumeRoleUnauthorizedAccess","AccessKeyId":"A","SecretAccessKey":"s"}"#
        #expect(throws: ReplicationError.self) { try AWSCredentialJSON.parse(Array(failed.utf8), what: "imds", source: "i") }
        #expect(throws: ReplicationError.self) { try AWSCredentialJSON.parse(Array(#"{"AccessKeyId":""}"#.utf8), what: "x", source: "i") }
        let noToken = try AWSCredentialJSON.parse(Array(#"{"AccessKeyId":"A","SecretAccessKey":"s","Token":""}"#.utf8), what: "x", source: "i")
        #expect(noToken.credentials.sessionToken == nil && noToken.expiresAt == nil)
    }

    /// A provider whose fetches are counted and whose clock the test moves.
    final class Fixture: Sendable {
        let clock = Locked(Date(timeIntervalSince1970: 1_800_000_000))
        let fetches = Locked(0)
        let lifetime: TimeInterval
        let failing = Locked(false)
        init(lifetime: TimeInterval) { self.lifetime = lifetime }

        func provider() -> S3CredentialProvider {
            S3CredentialProvider(source: "test", now: { self.clock.current }) {
                if self.failing.current { throw ReplicationError(.io, "test: endpoint down") }
                let n = self.fetches.withLock { $0 += 1; return $0 }
                return AWSIdentityFetch(credentials: AWSCredentials(accessKeyID: "ASIA\(n)", secretAccessKey: "sec\(n)xyz",
                                                                    sessionToken: "tok\(n)xyz"),
                                        expiresAt: self.clock.current.addingTimeInterval(self.lifetime), redact: ["idtoken\(n)"])
            }
        }

        func advance(_ s: TimeInterval) { clock.withLock { $0 = $0.addingTimeInterval(s) } }
    }

    @Test func refreshesFiveMinutesEarlyForHourLongCredentials() throws {
        let f = Fixture(lifetime: 3600)
        let p = f.provider()
        #expect(p.isTemporary)
        #expect(try p.credentials().accessKeyID == "ASIA1")
        f.advance(3600 - 301)
        #expect(try p.credentials().accessKeyID == "ASIA1")
        #expect(f.fetches.current == 1)
        f.advance(2)  // inside the 5-minute margin
        #expect(try p.credentials().accessKeyID == "ASIA2")
        #expect(f.fetches.current == 2)
    }

    @Test func refreshesAQuarterLifetimeEarlyForShortCredentials() throws {
        let f = Fixture(lifetime: 40)
        let p = f.provider()
        _ = try p.credentials()
        f.advance(29)
        #expect(try p.credentials().accessKeyID == "ASIA1")
        f.advance(2)  // 9 s left < 10 s
        #expect(try p.credentials().accessKeyID == "ASIA2")
        // A failed fetch while the cached credentials still work: they are served and the next call retries.
        f.advance(31)
        f.failing.withLock { $0 = true }
        #expect(try p.credentials().accessKeyID == "ASIA2")
        f.advance(10)  // really expired now
        #expect(throws: ReplicationError.self) { try p.credentials() }
        f.failing.withLock { $0 = false }
        #expect(try p.credentials().accessKeyID == "ASIA3")
        p.invalidate(accessKeyID: "ASIA2")  // an older key was rejected: the newer credentials stay
        #expect(try p.credentials().accessKeyID == "ASIA3")
        p.invalidate(accessKeyID: "ASIA3")
        #expect(try p.credentials().accessKeyID == "ASIA4")
        #expect(f.fetches.current == 4)
        let text = p.scrub("a sec2xyz b tok3xyz c idtoken4 d\nASIA4")
        #expect(text == "a [redacted] b [redacted] c [redacted] d ASIA4")
    }

    static func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("s3id-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func chainOrder() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "tok".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        let base = ["HOME": dir, "AWS_EC2_METADATA_DISABLED": "true"]
        var env = base.merging(["AWS_WEB_IDENTITY_TOKEN_FILE": dir + "/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
                                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/creds",
                                "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds",
                                "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "envsecret"]) { $1 }
        func source() throws -> String {
            try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: env).source
        }
        #expect(try S3CredentialChain.provider(accessKeyID: "CFG", secretAccessKey: "c", environment: env).source == "config")
        #expect(try source() == "AWS_ACCESS_KEY_ID")
        env["AWS_ACCESS_KEY_ID"] = nil
        #expect(try source().hasPrefix("web identity"))
        #expect(try S3CredentialChain.provider(accessKeyID: nil, secretAccessKey: nil, environment: env).isTemporary)
        env["AWS_WEB_IDENTITY_TOKEN_FILE"] = nil
        #expect(try source().contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
        env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = nil
        #expect(try source().contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://example.com/creds"  // plain http off loopback: refused
        #expect(throws: ReplicationError.self) { try source() }
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = nil
        do {
            _ = try source()
            Issue.record("expected no credentials")
        } catch {
            let text = error.oneLine
            for tried in ["replica config", "LITESTREAM_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", "shared credentials file",
                          "web identity", "container credentials", "AWS_EC2_METADATA_DISABLED=true"] {
                #expect(text.contains(tried), "\(text)")
            }
            #expect(!text.contains("\n"))
        }
        // Web identity needs a role and a readable token file, checked when the client is created.
        env = base.merging(["AWS_WEB_IDENTITY_TOKEN_FILE": dir + "/token"]) { $1 }
        #expect(throws: ReplicationError.self) { try source() }
        env["AWS_ROLE_ARN"] = "arn:aws:iam::1:role/r"
        env["AWS_WEB_IDENTITY_TOKEN_FILE"] = dir + "/missing"
        do { _ = try source(); Issue.record("expected an error") } catch {
            #expect(error.oneLine.contains("\(dir)/missing") && error.oneLine.contains("not readable"), "\(error.oneLine)")
        }
    }

    @Test func stsEndpointAndRequest() {
        #expect(WebIdentitySource.endpoint(environment: [:]) == "https://sts.amazonaws.com")
        #expect(WebIdentitySource.endpoint(environment: ["AWS_DEFAULT_REGION": "eu-west-1"]) == "https://sts.eu-west-1.amazonaws.com")
        #expect(WebIdentitySource.endpoint(environment: ["AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "eu-west-1"])
            == "https://sts.us-west-2.amazonaws.com")
        #expect(WebIdentitySource.endpoint(environment: ["AWS_REGION": "cn-north-1"]) == "https://sts.cn-north-1.amazonaws.com.cn")
        #expect(WebIdentitySource.endpoint(environment: ["AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:5"])
            == "http://127.0.0.1:5")
        let body = WebIdentitySource.requestBody(roleARN: "arn:aws:iam::1:role/r", sessionName: "s@1", token: "a.b+c/d=")
        #expect(body == "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr" +
            "&RoleSessionName=s%401&WebIdentityToken=a.b%2Bc%2Fd%3D")
    }

    @Test func staleCredentialCodes() {
        for code in ["ExpiredToken", "InvalidAccessKeyId", "InvalidToken"] {
            #expect(S3ReplicaClient.staleCredentialCodes.contains(code))
        }
        #expect(!S3ReplicaClient.staleCredentialCodes.contains("SignatureDoesNotMatch"))
        #expect(!S3ReplicaClient.staleCredentialCodes.contains("AccessDenied"))
    }
}
