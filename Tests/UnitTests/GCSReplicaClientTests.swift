import Foundation
import Testing
@testable import ReplicationKit

/// The GCS client without a server: JWT, URL encoding, listing and error parsing, credential chain, messages.
@Suite("GCS client units")
struct GCSUnitTests {
    /// Makes an RSA key with the openssl CLI; returns (PEM private key, PKCS#1 DER public key).
    static func opensslKey(_ dir: String, _ name: String) throws -> (String, [UInt8]) {
        let pem = dir + "/\(name).pem", der = dir + "/\(name).pub.der"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '\(pem)' 2>/dev/null && " +
                       "openssl rsa -in '\(pem)' -RSAPublicKey_out -outform DER -out '\(der)' 2>/dev/null"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ReplicationError(.other, "openssl failed") }
        return (try String(contentsOfFile: pem, encoding: .utf8), [UInt8](try Data(contentsOf: URL(fileURLWithPath: der))))
    }

    static func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("gcsunit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func jwtHasGoogleShapeAndAValidRS256Signature() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (pem, pub) = try Self.opensslKey(dir, "a")
        let (_, otherPub) = try Self.opensslKey(dir, "b")
        let key = try RS256Key(privateKeyPEM: pem, what: "test")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let jwt = try ServiceAccountJWT.make(email: "sa@p.iam.gserviceaccount.com", scope: GCSCredentials.scope,
                                             audience: "https://oauth2.googleapis.com/token", keyID: "k1", issuedAt: now, key: key)
        let parts = jwt.split(separator: ".").map(String.init)
        #expect(parts.count == 3)
        let headerBytes = try #require(Base64URL.decode(parts[0]))
        let claimBytes = try #require(Base64URL.decode(parts[1]))
        let header = try #require(try JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any])
        #expect(header["alg"] as? String == "RS256" && header["typ"] as? String == "JWT" && header["kid"] as? String == "k1")
        let claims = try #require(try JSONSerialization.jsonObject(with: Data(claimBytes)) as? [String: Any])
        #expect(claims["iss"] as? String == "sa@p.iam.gserviceaccount.com")
        #expect(claims["scope"] as? String == "https://www.googleapis.com/auth/devstorage.full_control")
        #expect(claims["aud"] as? String == "https://oauth2.googleapis.com/token")
        #expect((claims["iat"] as? NSNumber)?.intValue == 1_800_000_000)
        #expect((claims["exp"] as? NSNumber)?.intValue == 1_800_003_600)
        #expect(!jwt.contains("=") && !jwt.contains("+") && !jwt.contains("/"))
        let sig = try #require(Base64URL.decode(parts[2]))
        #expect(sig.count == 256)
        let verifier = try #require(RS256Key(publicKeyPKCS1DER: pub))
        #expect(verifier.verify(Array("\(parts[0]).\(parts[1])".utf8), signature: sig))
        #expect(!verifier.verify(Array("\(parts[0]).x\(parts[1])".utf8), signature: sig))
        let other = try #require(RS256Key(publicKeyPKCS1DER: otherPub))
        #expect(!other.verify(Array("\(parts[0]).\(parts[1])".utf8), signature: sig))
        // A broken key is a one-line error without key material.
        let broken = pem.replacingOccurrences(of: "A", with: "B")
        do { _ = try RS256Key(privateKeyPEM: broken, what: "file x"); Issue.record("expected an error") } catch {
            #expect(error.oneLine.hasPrefix("file x: private_key"))
            #expect(!error.oneLine.contains("MII"))
        }
    }

    @Test func objectNamesArePercentEncodedInPaths() {
        #expect(GCSURL.encode("db/generations/a b+c~_.-") == "db%2Fgenerations%2Fa%20b%2Bc~_.-")
        #expect(GCSURL.encode("é") == "%C3%A9")
        let c = GCSReplicaClient(location: GCSLocation(bucket: "bkt", prefix: "/db/./x/", endpoint: "http://127.0.0.1:9/",
                                                       emulator: true), credentials: .anonymous)
        #expect(c.gcs.prefix == "db/x")
        #expect(c.objectURL(c.name("generations/0/wal/1.wal.lz4"), query: [("alt", "media")])
            == "http://127.0.0.1:9/storage/v1/b/bkt/o/db%2Fx%2Fgenerations%2F0%2Fwal%2F1.wal.lz4?alt=media")
        #expect(c.listURL(query: [("prefix", "db/x/generations/"), ("delimiter", "/"), ("pageToken", "a+b=")])
            == "http://127.0.0.1:9/storage/v1/b/bkt/o?prefix=db%2Fx%2Fgenerations%2F&delimiter=%2F&pageToken=a%2Bb%3D")
        #expect(c.uploadURL(query: [("uploadType", "multipart")]) == "http://127.0.0.1:9/upload/storage/v1/b/bkt/o?uploadType=multipart")
        #expect(c.location == "gs://bkt/db/x (endpoint http://127.0.0.1:9)")
        let g = GCSReplicaClient(location: GCSLocation(bucket: "bkt", prefix: nil), credentials: .anonymous)
        #expect(g.location == "gs://bkt")
        #expect(g.objectURL("a/b") == "https://storage.googleapis.com/storage/v1/b/bkt/o/a%2Fb")
    }

    @Test func endpointFromKeyThenEmulatorVariableThenGoogle() {
        func ep(_ c: String?, _ env: [String: String]) -> String {
            let e = GCSURL.endpoint(configured: c, environment: env)
            return e.base + (e.emulator ? " emulator" : "")
        }
        #expect(ep("http://h:1/", ["STORAGE_EMULATOR_HOST": "e:2"]) == "http://h:1 emulator")
        #expect(ep(nil, ["STORAGE_EMULATOR_HOST": "e:2"]) == "http://e:2 emulator")
        #expect(ep("", ["STORAGE_EMULATOR_HOST": "https://e:3"]) == "https://e:3 emulator")
        #expect(ep(nil, [:]) == "https://storage.googleapis.com")
    }

    @Test func listingAndErrorBodiesParse() throws {
        let json = """
            {"kind":"storage#objects","nextPageToken":"tok/1","prefixes":["p/generations/0123456789abcdef/"],
             "items":[{"name":"p/generations/g/wal/0000000000000001/0000000000001000.wal.lz4","size":"42",
                       "timeCreated":"2026-11-26T20:46:29.500Z"},
                      {"name":"p/generations/g/wal/00000002_00000010.wal.lz4","size":7,"timeCreated":"2026-11-26T20:46:30Z"},
                      {"name":"p/generations/g/wal/1/1000.wal.lz4","size":"1","timeCreated":"2026-11-26T20:46:30Z"},
                      {"name":"p/generations/g/wal/0000000000000001/junk","size":"1","timeCreated":"2026-11-26T20:46:30Z"}]}
            """
        let page = try #require(GCSListPage.parse(Array(json.utf8)))
        #expect(page.nextPageToken == "tok/1")
        #expect(page.prefixes == ["p/generations/0123456789abcdef/"])
        #expect(page.items.map(\.size) == [42, 7, 1, 1])
        #expect(abs(page.items[0].created.timeIntervalSince1970 - 1_795_725_989.5) < 0.001)
        let g = try #require(Generation(name: "0123456789abcdef"))
        let segs = GCSReplicaClient.segments(generation: g, base: "p/generations/g/wal/", items: page.items)
        #expect(segs.map { "\($0.index)/\($0.offset)/\($0.layout)" } == ["1/4096/v04", "2/16/v03"])
        #expect(GCSListPage.parse(Array("<xml/>".utf8)) == nil)
        let err = #"{"error":{"code":404,"message":"The specified bucket does not exist.","errors":[{"reason":"notFound","message":"x"}]}}"#
        #expect(GCSErrorBody.parse(Array(err.utf8)) == GCSErrorBody(reason: "notFound", message: "The specified bucket does not exist."))
        #expect(GCSErrorBody.parse(Array(#"{"error":"invalid_grant","error_description":"Bad"}"#.utf8))
            == GCSErrorBody(reason: "invalid_grant", message: "Bad"))
        let r308 = HTTPResponse(status: 308, headers: [("Range", "bytes=0-262143")], body: [], bodyLength: 0)
        #expect(GCSReplicaClient.persisted(r308) == 262_144)
        #expect(GCSReplicaClient.persisted(HTTPResponse(status: 308, headers: [], body: [], bodyLength: 0)) == 0)
    }

    @Test func credentialChainOrderAndMessages() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let user = dir + "/user.json"
        try #"{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r"}"#
            .write(toFile: user, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/gcloud", withIntermediateDirectories: true)
        try #"{"type":"external_account"}"#.write(toFile: dir + "/gcloud/application_default_credentials.json",
                                                  atomically: true, encoding: .utf8)
        #expect(try GCSCredentials.resolve(environment: ["GOOGLE_APPLICATION_CREDENTIALS": user, "CLOUDSDK_CONFIG": dir + "/gcloud"],
                                           emulator: false).source == "authorized user (\(user))")
        do {
            _ = try GCSCredentials.resolve(environment: ["CLOUDSDK_CONFIG": dir + "/gcloud"], emulator: false)
            Issue.record("expected an error")
        } catch { #expect(error.oneLine.contains("external_account"), "\(error)") }
        #expect(try GCSCredentials.resolve(environment: ["HOME": dir, "GCE_METADATA_HOST": "127.0.0.1:1"], emulator: false)
            .source == "metadata server http://127.0.0.1:1")
        #expect(try GCSCredentials.resolve(environment: ["HOME": dir], emulator: true).source == "none (emulator)")
        do {
            _ = try GCSCredentials.resolve(environment: ["HOME": dir], emulator: false)
            Issue.record("expected an error")
        } catch {
            let t = error.oneLine
            #expect(t.contains("no Google credentials found") && t.contains("GOOGLE_APPLICATION_CREDENTIALS")
                    && t.contains("application_default_credentials.json") && t.contains("metadata server"), "\(t)")
        }
        #expect(throws: ReplicationError.self) {
            try GCSCredentials.resolve(environment: ["GOOGLE_APPLICATION_CREDENTIALS": dir + "/none.json"], emulator: true)
        }
    }

    @Test func shortLivedTokensAreRenewedHalfWayThroughTheirLife() {
        let t0 = Date(timeIntervalSince1970: 1_000)
        #expect(TokenEndpoint.reportedExpiry(issued: t0, lifetime: 3600, margin: .seconds(300)) == t0.addingTimeInterval(3600))
        // 60 s tokens with a 5-minute margin: reported so that the refresh falls at 30 s, not at once.
        let e = TokenEndpoint.reportedExpiry(issued: t0, lifetime: 60, margin: .seconds(300))
        #expect(e.addingTimeInterval(-300) == t0.addingTimeInterval(30))
    }

    @Test func factoryBuildsGCSClientsAndUnreachableHostsFailInOneLine() throws {
        var d = GCSDestination(bucket: "bkt", path: "db", endpoint: "127.0.0.1:1")
        let made = try ReplicaClientFactory.make(ReplicaConfig(destination: .gcs(d)))
        #expect(made.type == "gs")
        #expect(made.location == "gs://bkt/db (endpoint http://127.0.0.1:1)")
        d.bucket = ""
        #expect(throws: ReplicationError.self) { try ReplicaClientFactory.make(ReplicaConfig(destination: .gcs(d))) }
        var o = CurlHTTPOptions()
        o.maxAttempts = 2
        o.baseDelay = .milliseconds(10)
        let c = GCSReplicaClient(location: GCSLocation(bucket: "bkt", prefix: "p", endpoint: "http://127.0.0.1:1", emulator: true),
                                 credentials: .anonymous, httpOptions: o)
        do { _ = try c.generations(); Issue.record("expected an error") } catch {
            let t = error.oneLine
            #expect(t.hasPrefix("gs: list gs://bkt/p/generations/: ") && t.contains("curl error 7"), "\(t)")
            #expect(!t.contains("\n"))
        }
    }
}
