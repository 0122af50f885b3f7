import Foundation
import Testing
import TestFixtures
@testable import ReplicationKit

/// Integration tests against fake-gcs-server behind the OAuth2-checking proxy (`scripts/start-gcs.sh`).
@Suite("GCS client against fake-gcs-server", .serialized)
struct GCSIntegrationTests {
    static func prefix(_ tag: String) -> String { "t-\(tag)-\(UInt32.random(in: 0...UInt32.max))" }

    /// A copy of a key file whose `token_uri` carries proxy options (`tag=…&lifetime=…&mode=…`), in RK_GCS_DIR.
    static func keyFile(_ file: String, query: String) throws -> String {
        var obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        obj["token_uri"] = (obj["token_uri"] as? String ?? "") + "?" + query
        // Inside the server's directory (removed with the server), as the copies hold the test private key.
        let dir = ProcessInfo.processInfo.environment["RK_GCS_DIR"] ?? FileManager.default.temporaryDirectory.path
        let out = dir + "/gcs-key-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: out))
        return out
    }

    static func client(_ s: Server, env: [String: String], prefix: String, bucket: String? = nil,
                       margin: Duration = .seconds(300), threshold: UInt64 = 8 << 20, chunk: UInt64 = 8 << 20,
                       pageSize: Int? = nil) throws -> GCSReplicaClient {
        var o = CurlHTTPOptions()
        o.maxAttempts = 2
        o.baseDelay = .milliseconds(20)
        let creds = try GCSCredentials.resolve(environment: env.merging(["HOME": "/nonexistent"]) { a, _ in a },
                                               emulator: true, refreshMargin: margin, httpOptions: o)
        return GCSReplicaClient(location: GCSLocation(bucket: bucket ?? s.bucket, prefix: prefix, endpoint: s.endpoint, emulator: true),
                                credentials: creds, httpOptions: o, uploadThreshold: threshold, chunkSize: chunk, pageSize: pageSize)
    }

    /// GETs or POSTs a proxy admin URL and decodes its JSON answer.
    static func admin(_ url: String, post: Bool = false) throws -> [String: Any] {
        let http = CurlHTTPClient()
        let r = try http.perform(sink: .memory(limit: 1 << 20)) {
            HTTPRequest(method: post ? "POST" : "GET", url: url, headers: [], body: post ? .bytes([]) : .empty)
        }
        return (try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]) ?? [:]
    }

    static func fetches(_ s: Server, _ key: String) throws -> Int {
        ((try admin(s.statsURL)["fetches"] as? [String: Any])?[key] as? NSNumber)?.intValue ?? 0
    }

    static func expectNoSecrets(_ s: Server, _ text: String) {
        TestServers.expectNoSecrets(s.secrets, in: text, "the error")
        #expect(!text.contains("BEGIN PRIVATE KEY") && !text.contains("\n"), "\(text)")
    }

    @Test func conformanceWithAServiceAccount() throws {
        guard let s = Self.server() else { return }
        let c = try Self.client(s, env: ["GOOGLE_APPLICATION_CREDENTIALS": s.saFile], prefix: Self.prefix("conf"))
        try ReplicaClientConformance.check(c)
    }

    @Test func largeObjectsUseResumableChunksThatAreRetried() throws {
        guard let s = Self.server() else { return }
        // A bucket of its own, whose first attempt at every chunk the proxy fails with 503.
        let bucket = "rk-chunks-\(UInt32.random(in: 0...UInt32.max))"
        _ = try Self.admin(s.endpoint + "/__bucket?name=" + bucket, post: true)
        _ = try Self.admin(s.endpoint + "/__fault?bucket=\(bucket)&mode=chunk503", post: true)
        let c = try Self.client(s, env: ["GOOGLE_APPLICATION_CREDENTIALS": s.saFile], prefix: "big", bucket: bucket,
                                chunk: 1 << 20)
        let g = try #require(Generation(name: "00000000000000aa"))
        let data = (0..<(9 << 20) + 1234).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 13) }
        let info = try c.writeSnapshot(generation: g, index: 1, body: ReplicaClientConformance.body(data))
        #expect(info.size == UInt64(data.count))
        let listed = try c.snapshots(generation: g)
        #expect(listed.map(\.size) == [UInt64(data.count)])
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(listed[0])) == data)
        let faulted = (try Self.admin(s.statsURL)["storage"] as? [String: Any])?["faulted:" + bucket] as? NSNumber
        #expect(faulted?.intValue == 10, "every one of the 10 chunks failed once and was sent again")
        try c.deleteGeneration(g)
    }

    @Test func listingsFollowPageTokens() throws {
        guard let s = Self.server() else { return }
        let c = try Self.client(s, env: ["GOOGLE_APPLICATION_CREDENTIALS": s.saFile], prefix: Self.prefix("pages"), pageSize: 5)
        let g = try #require(Generation(name: "0000000000000001"))
        for i in 0..<23 {
            _ = try c.writeWALSegment(position: WALPosition(generation: g, index: UInt32(i / 4), offset: UInt64(i % 4) * 4096),
                                      body: ReplicaClientConformance.body([UInt8(i)]))
        }
        let first = try c.listPage(prefix: c.name("generations/\(g.name)/wal/"), delimiter: nil, pageToken: nil)
        #expect(first.items.count == 5 && first.nextPageToken != nil)
        let segs = try c.walSegments(generation: g)
        #expect(segs.count == 23)
        #expect(segs.map { $0.index * 4 + UInt32($0.offset / 4096) } == (0..<23).map(UInt32.init))
        #expect(try c.generations() == [g])
        try c.deleteGeneration(g)
        #expect(try c.generations().isEmpty)
    }

    /// Each authentication mode reaches storage through the proxy and fetches its token once for many requests.
    @Test(arguments: ["service_account", "authorized_user", "metadata"])
    func authenticationModeReachesStorage(_ mode: String) throws {
        guard let s = Self.server() else { return }
        let tag = "mode-\(UUID().uuidString.prefix(8))"
        let env: [String: String]
        let counter: String
        switch mode {
        case "service_account": env = ["GOOGLE_APPLICATION_CREDENTIALS": try Self.keyFile(s.saFile, query: "tag=\(tag)")]; counter = "jwt-bearer:\(tag)"
        case "authorized_user": env = ["CLOUDSDK_CONFIG": try gcloudDir(s.userFile, tag: tag)]; counter = "refresh_token:\(tag)"
        default: env = ["GCE_METADATA_HOST": s.metadataHost]; counter = "metadata"
        }
        let before = try Self.fetches(s, counter)
        let c = try Self.client(s, env: env, prefix: Self.prefix(mode))
        let g = try #require(Generation(name: "00000000000000bb"))
        for i in 0..<3 {
            _ = try c.writeWALSegment(position: WALPosition(generation: g, index: 0, offset: UInt64(i)), body: ReplicaClientConformance.body([1]))
        }
        #expect(try c.walSegments(generation: g).count == 3)
        #expect(try Self.fetches(s, counter) - before == 1, "one token for the lifetime")
        try c.deleteGeneration(g)
    }

    /// gcloud's well-known file in a `CLOUDSDK_CONFIG` directory, from an authorized_user file with a tagged token_uri.
    private func gcloudDir(_ userFile: String, tag: String) throws -> String {
        let f = try Self.keyFile(userFile, query: "tag=\(tag)")
        let dir = f + ".d"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: f, toPath: dir + "/application_default_credentials.json")
        return dir
    }

    @Test func shortLivedTokensAreRefreshedBeforeExpiry() throws {
        guard let s = Self.server() else { return }
        let tag = "refresh-\(UUID().uuidString.prefix(8))"
        let file = try Self.keyFile(s.saFile, query: "tag=\(tag)&lifetime=4")
        let c = try Self.client(s, env: ["GOOGLE_APPLICATION_CREDENTIALS": file], prefix: Self.prefix("refresh"), margin: .seconds(2))
        _ = try c.generations()
        let firstExpiry = try #require(c.credentials.expiresAt)
        #expect(try Self.fetches(s, "jwt-bearer:\(tag)") == 1)
        // Keep working until the client has replaced its token (about 2 s in); every request must succeed.
        let deadline = Date().addingTimeInterval(20)
        while try Self.fetches(s, "jwt-bearer:\(tag)") < 2 && Date() < deadline {
            _ = try c.generations()
            Thread.sleep(forTimeInterval: 0.2)  // pacing of the request loop, not synchronisation
        }
        #expect(try Self.fetches(s, "jwt-bearer:\(tag)") == 2)
        #expect((c.credentials.expiresAt ?? firstExpiry) > firstExpiry)
    }

    @Test func authFailuresAreOneLineErrorsWithoutSecrets() throws {
        guard let s = Self.server() else { return }
        func failure(_ env: [String: String], bucket: String? = nil) throws -> String {
            let c = try Self.client(s, env: env, prefix: "p", bucket: bucket)
            do { _ = try c.generations() } catch { return error.oneLine }
            Issue.record("expected an error")
            return ""
        }
        let wrong = try failure(["GOOGLE_APPLICATION_CREDENTIALS": s.wrongSAFile])
        #expect(wrong.contains("HTTP 400 invalid_grant: Invalid JWT Signature.") && wrong.contains("list gs://"), "\(wrong)")
        let bogusTag = "bogus-\(UUID().uuidString.prefix(8))"
        let bogus = try failure(["GOOGLE_APPLICATION_CREDENTIALS": try Self.keyFile(s.saFile, query: "tag=\(bogusTag)&mode=bogus")])
        #expect(bogus.contains("HTTP 401 authError: Invalid Credentials"), "\(bogus)")
        #expect(try Self.fetches(s, "jwt-bearer:\(bogusTag)") == 2, "a 401 drops the token once and retries with a new one")
        let expired = try failure(["GOOGLE_APPLICATION_CREDENTIALS": try Self.keyFile(s.saFile, query: "mode=expired")])
        #expect(expired.contains("HTTP 401 authError: Token expired"), "\(expired)")
        let bucket = try failure(["GOOGLE_APPLICATION_CREDENTIALS": s.saFile], bucket: "rk-no-such-bucket")
        #expect(bucket.contains("HTTP 404") && bucket.contains("rk-no-such-bucket"), "\(bucket)")
        for t in [wrong, bogus, expired, bucket] { Self.expectNoSecrets(s, t) }
    }

    /// `skip-verify`: a TLS server with a self-signed certificate is refused (curl error 60) unless it is set.
    @Test func skipVerifyAcceptsASelfSignedServer() throws {
        guard let s = Self.server() else { return }
        guard let tls = ProcessInfo.processInfo.environment["RK_GCS_TLS_ENDPOINT"], !tls.isEmpty else {
            Issue.record("RK_GCS_TLS_ENDPOINT is not set (scripts/start-gcs.sh exports it)")
            return
        }
        let env = ["HOME": "/nonexistent"]
        var d = GCSDestination(bucket: s.bucket, path: Self.prefix("tls"), endpoint: tls, skipVerify: false)
        do { _ = try GCSReplicaClient(destination: d, environment: env).generations(); Issue.record("expected a TLS error") } catch {
            #expect(error.oneLine.contains("curl error 60"), "\(error)")
        }
        d.skipVerify = true
        let c = try GCSReplicaClient(destination: d, environment: env)
        let g = try #require(Generation(name: "00000000000000cc"))
        _ = try c.writeSnapshot(generation: g, index: 0, body: ReplicaClientConformance.body([9, 8, 7]))
        let snaps = try c.snapshots(generation: g)
        #expect(snaps.map(\.index) == [0])
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(snaps[0])) == [9, 8, 7])
    }
}
