import Foundation
import Testing
@testable import ReplicationKit

/// SigV4 signing against AWS's published S3 examples and botocore's `S3SigV4Auth` as an oracle.
@Suite("SigV4 signer")
struct SigV4Tests {
    static let exampleCredentials = AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                                   secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    /// 2013-05-24T00:00:00Z, the date of every example in the S3 SigV4 documentation.
    static let exampleDate = Date(timeIntervalSince1970: 1_369_353_600)

    static func authorization(_ headers: [(String, String)]) -> String? {
        headers.first { $0.0 == "Authorization" }?.1
    }

    static func signature(_ headers: [(String, String)]) -> String? {
        authorization(headers)?.components(separatedBy: "Signature=").last
    }

    // https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html — "Example: GET Object".
    @Test func awsExampleGetObject() {
        let signer = SigV4Signer(credentials: Self.exampleCredentials, region: "us-east-1")
        let req = SigV4Signer.Request(method: "GET", path: "/test.txt",
                                      headers: [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9")],
                                      payloadSHA256: Digest.emptySHA256)
        let canonical = signer.canonicalRequest(req, date: Self.exampleDate)
        #expect(canonical == """
            GET
            /test.txt

            host:examplebucket.s3.amazonaws.com
            range:bytes=0-9
            x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            x-amz-date:20130524T000000Z

            host;range;x-amz-content-sha256;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        let headers = signer.sign(req, date: Self.exampleDate)
        #expect(Self.authorization(headers) == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    // Same page — "Example: PUT Object" (key `test$file.text`, payload "Welcome to Amazon S3.").
    @Test func awsExamplePutObject() {
        let signer = SigV4Signer(credentials: Self.exampleCredentials, region: "us-east-1")
        let payload = Digest.hex(Digest.sha256("Welcome to Amazon S3."))
        #expect(payload == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let req = SigV4Signer.Request(method: "PUT", path: "/test$file.text",
                                      headers: [("Host", "examplebucket.s3.amazonaws.com"),
                                                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                                                ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
                                      payloadSHA256: payload)
        #expect(Self.signature(signer.sign(req, date: Self.exampleDate)) ==
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    // Same page — "Example: GET Bucket Lifecycle" (valueless sub-resource `?lifecycle`).
    @Test func awsExampleGetBucketLifecycle() {
        let signer = SigV4Signer(credentials: Self.exampleCredentials, region: "us-east-1")
        let req = SigV4Signer.Request(method: "GET", path: "/", query: [("lifecycle", nil)],
                                      headers: [("Host", "examplebucket.s3.amazonaws.com")],
                                      payloadSHA256: Digest.emptySHA256)
        #expect(Self.signature(signer.sign(req, date: Self.exampleDate)) ==
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    // Same page — "Example: Get Bucket (List Objects)" (`?max-keys=2&prefix=J`).
    @Test func awsExampleListObjects() {
        let signer = SigV4Signer(credentials: Self.exampleCredentials, region: "us-east-1")
        let req = SigV4Signer.Request(method: "GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")],
                                      headers: [("Host", "examplebucket.s3.amazonaws.com")],
                                      payloadSHA256: Digest.emptySHA256)
        #expect(Self.signature(signer.sign(req, date: Self.exampleDate)) ==
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func encoding() {
        #expect(SigV4Signer.canonicalURI("/b/a b/c+d=e/ü~._-") == "/b/a%20b/c%2Bd%3De/%C3%BC~._-")
        #expect(SigV4Signer.canonicalURI("") == "/")
        #expect(SigV4Signer.canonicalQuery([("prefix", "a/b c"), ("delete", nil), ("list-type", "2")]) ==
            "delete=&list-type=2&prefix=a%2Fb%20c")
        #expect(Digest.base64(Array("hello".utf8)) == "aGVsbG8=")
        #expect(Digest.base64(Digest.md5([])) == "1B2M2Y8AsgTpgAmY7PhCfg==")
    }

    @Test func sessionTokenIsSignedAndSent() {
        var creds = Self.exampleCredentials
        creds.sessionToken = "token/with+chars="
        let headers = SigV4Signer(credentials: creds, region: "eu-west-1")
            .sign(SigV4Signer.Request(method: "GET", path: "/", headers: [("host", "h")], payloadSHA256: Digest.emptySHA256),
                  date: Self.exampleDate)
        #expect(headers.contains { $0.0 == "x-amz-security-token" && $0.1 == "token/with+chars=" })
        #expect(Self.authorization(headers)?.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token") == true)
        #expect(!String(describing: creds).contains("EXAMPLEKEY"))
        #expect(!String(describing: creds).contains("token"))
    }

    // MARK: botocore oracle

    struct OracleCase {
        var accessKey: String
        var secret: String
        var token: String?
        var region: String
        var method: String
        var host: String
        var path: String
        var query: [(String, String?)]
        var headers: [(String, String)]
        var body: [UInt8]
    }

    static let oracleCases: [OracleCase] = [
        OracleCase(accessKey: "AKIDTEST", secret: "secret/with+plus=eq", token: nil, region: "us-east-1", method: "GET",
                   host: "127.0.0.1:9000", path: "/bucket/", query: [("list-type", "2"), ("prefix", "db/generations/"),
                                                                     ("delimiter", "/")], headers: [], body: []),
        OracleCase(accessKey: "AKID/+=", secret: "s p a c e/ü+=", token: "tok/en+=ü", region: "eu-central-1",
                   method: "PUT", host: "my.bucket.s3.eu-central-1.amazonaws.com",
                   path: "/a b/c+d=e/ü/ß.snapshot.lz4", query: [], headers: [("Content-MD5", "1B2M2Y8AsgTpgAmY7PHvCw==")],
                   body: Array("hello world, ünïcødé".utf8)),
        OracleCase(accessKey: "AKIDTEST", secret: "x", token: nil, region: "us-west-000", method: "POST",
                   host: "localhost:18333", path: "/bkt/", query: [("delete", nil)],
                   headers: [("Content-Type", "application/xml")], body: Array("<Delete></Delete>".utf8)),
        OracleCase(accessKey: "AKIDTEST", secret: "x", token: nil, region: "us-east-1", method: "GET",
                   host: "localhost", path: "/bkt/", query: [("continuation-token", "1/2+3=4 5"),
                                                             ("prefix", "p a/ü+=/"), ("list-type", "2"),
                                                             ("start-after", "a~b*c!d'(e)")],
                   headers: [("Range", "bytes=0-9")], body: []),
        OracleCase(accessKey: "AKIDTEST", secret: "x", token: nil, region: "us-east-1", method: "PUT",
                   host: "localhost", path: "/bkt/key", query: [("partNumber", "2"), ("uploadId", "abc/def+ghi==")],
                   headers: [], body: Array(repeating: 0x41, count: 1000)),
    ]

    static func botocoreAvailable() -> Bool {
        (try? runPython("import botocore")) != nil
    }

    static func runPython(_ script: String, input: String = "") throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script]
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        inp.fileHandleForWriting.write(Data(input.utf8))
        try inp.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ReplicationError(.other, "python3 failed: " + String(decoding: errData, as: UTF8.self))
        }
        return String(decoding: data, as: UTF8.self)
    }

    static let oracleScript = #"""
import sys, json, datetime, urllib.parse
from unittest import mock
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
out = []
for c in json.load(sys.stdin):
    url = "http://" + c["host"] + urllib.parse.quote(c["path"], safe="/~")
    params = [(k, "" if v is None else v) for k, v in c["query"]]
    req = AWSRequest(method=c["method"], url=url, data=bytes(c["body"]), params=params, headers=dict(c["headers"]))
    auth = botocore.auth.S3SigV4Auth(Credentials(c["accessKey"], c["secret"], c["token"]), "s3", c["region"])
    fixed = datetime.datetime(2013, 5, 24, 0, 0, 0)
    with mock.patch("botocore.auth.get_current_datetime", return_value=fixed):
        auth.add_auth(req)
    out.append(req.headers["Authorization"])
print(json.dumps(out))
"""#

    @Test func matchesBotocore() throws {
        guard Self.botocoreAvailable() else {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                Issue.record("botocore is not installed (pip install botocore); required under CI=true")
            } else {
                print("SKIP SigV4 botocore oracle: python3 with botocore not available (pip install botocore)")
            }
            return
        }
        let json = Self.oracleCases.map { c -> [String: Any] in
            [
                "accessKey": c.accessKey, "secret": c.secret, "token": c.token as Any, "region": c.region,
                "method": c.method, "host": c.host, "path": c.path,
                "query": c.query.map { [$0.0, $0.1 as Any] }, "headers": c.headers.map { [$0.0, $0.1] },
                "body": c.body.map { Int($0) },
            ]
        }
        let input = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        let output = try Self.runPython(Self.oracleScript, input: input)
        let expected = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String])
        #expect(expected.count == Self.oracleCases.count)
        for (c, want) in zip(Self.oracleCases, expected) {
            let creds = AWSCredentials(accessKeyID: c.accessKey, secretAccessKey: c.secret, sessionToken: c.token)
            let req = SigV4Signer.Request(method: c.method, path: c.path, query: c.query,
                                          headers: [("Host", c.host)] + c.headers,
                                          payloadSHA256: Digest.hex(Digest.sha256(c.body)))
            let got = Self.authorization(SigV4Signer(credentials: creds, region: c.region).sign(req, date: Self.exampleDate))
            #expect(got == want, "\(c.method) \(c.path) \(c.query)")
        }
    }
}
