import Foundation
import Logging
import Testing
@testable import ReplicationKit

/// The S3 client without a server: addressing, XML, credentials, messages.
@Suite("S3 client units")
struct S3UnitTests {
    static let creds = AWSCredentials(accessKeyID: "AKIDTEST", secretAccessKey: "topSecret/+=value")

    @Test func pathStyleAddressingForEndpoints() {
        let c = S3ReplicaClient(location: S3Location(bucket: "bkt", prefix: "db/./x/", endpoint: "http://127.0.0.1:9000"),
                                credentials: Self.creds)
        #expect(c.s3.prefix == "db/x")
        #expect(c.s3.forcePathStyle)
        #expect(c.key("generations/") == "db/x/generations/")
        let a = c.address(key: "db/x/a b+c.lz4", query: [("uploadId", "a/b"), ("partNumber", "1")], region: "us-east-1")
        #expect(a.url == "http://127.0.0.1:9000/bkt/db/x/a%20b%2Bc.lz4?partNumber=1&uploadId=a%2Fb")
        #expect(a.host == "127.0.0.1:9000")
        #expect(a.path == "/bkt/db/x/a b+c.lz4")
        #expect(c.address(key: "", query: [], region: "r").url == "http://127.0.0.1:9000/bkt")
        #expect(c.location == "s3://bkt/db/x (endpoint http://127.0.0.1:9000)")
        #expect(!c.location.contains("topSecret"))
    }

    @Test func virtualHostAddressingForAWS() {
        let c = S3ReplicaClient(location: S3Location(bucket: "bkt", prefix: nil, region: "eu-west-1"), credentials: Self.creds)
        #expect(!c.s3.forcePathStyle)
        #expect(c.key("generations/") == "generations/")
        let a = c.address(key: "generations/", query: [("list-type", "2")], region: "eu-west-1")
        #expect(a.url == "https://bkt.s3.eu-west-1.amazonaws.com/generations/?list-type=2")
        #expect(a.host == "bkt.s3.eu-west-1.amazonaws.com")
        #expect(c.location == "s3://bkt")
        let dotted = S3ReplicaClient(location: S3Location(bucket: "my.bkt", prefix: nil, region: "us-east-1"), credentials: Self.creds)
        #expect(dotted.address(key: "k", query: [], region: "us-east-1").url == "https://s3.us-east-1.amazonaws.com/my.bkt/k")
    }

    @Test func bucketLocationResponses() {
        let ns = "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""
        #expect(S3ReplicaClient.region(locationConstraint: Array("<LocationConstraint \(ns)/>".utf8)) == "us-east-1")
        #expect(S3ReplicaClient.region(locationConstraint: Array("<LocationConstraint \(ns)>EU</LocationConstraint>".utf8)) == "eu-west-1")
        #expect(S3ReplicaClient.region(locationConstraint: Array("<?xml version=\"1.0\"?><LocationConstraint \(ns)>ap-south-1</LocationConstraint>".utf8)) == "ap-south-1")
    }

    @Test func xmlParsing() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated>
            <Contents><Key>a&amp;b &lt;c&gt; &#233;&#x4e2d;</Key><LastModified>2026-11-26T20:46:29.500Z</LastModified><Size>12</Size></Contents>
            <CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes><Empty/><NextContinuationToken>t/+=</NextContinuationToken>
            </ListBucketResult>
            """
        let doc = try #require(S3XML.parse(Array(xml.utf8)))
        #expect(doc.name == "ListBucketResult")
        #expect(doc.value("IsTruncated") == "true")
        #expect(doc.all("Contents").first?.value("Key") == "a&b <c> é中")
        #expect(doc.all("CommonPrefixes").first?.value("Prefix") == "p/")
        #expect(doc.value("NextContinuationToken") == "t/+=")
        let ts = try #require(S3ReplicaClient.parseTimestamp("2026-11-26T20:46:29.500Z"))
        #expect(abs(ts.timeIntervalSince1970 - 1_795_725_989.5) < 0.001)
        #expect(S3XML.parse(Array("<a><b></a>".utf8)) == nil)
        #expect(S3XML.escape("a&<>\"'") == "a&amp;&lt;&gt;&quot;&apos;")
        // A markup character followed by a combining mark is one Character but still markup (found by FuzzS3XML).
        #expect(S3XML.escape("k<\u{07EB}x>\u{0301}") == "k&lt;\u{07EB}x&gt;\u{0301}")
    }

    /// Found by fuzz/FuzzS3XML: a body ending inside a `<![CDATA[` opener (a cut-off response) stopped the process
    /// (array index out of range) instead of being refused.
    @Test func xmlCutInsideCDATAOpenerIsRefused() {
        for cut in ["<Error><Message>a <![", "<Error><Message>a <![C", "<Error><Message>a <![CDATA"] {
            #expect(S3XML.parse(Array(cut.utf8)) == nil, "\(cut)")
        }
        let doc = S3XML.parse(Array("<Error><Message>a <![CDATA[<b>]]></Message></Error>".utf8))
        #expect(doc?.value("Message") == "a <b>")
    }

    @Test func credentialChainOrder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("s3creds-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/credentials"
        try "[default]\naws_access_key_id = FILEDEF\naws_secret_access_key = s1\n\n[profile other]\naws_access_key_id=FILEOTHER\naws_secret_access_key=s2\naws_session_token=tok\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let full = ["LITESTREAM_ACCESS_KEY_ID": "LS", "LITESTREAM_SECRET_ACCESS_KEY": "lss",
                    "AWS_ACCESS_KEY_ID": "AWS", "AWS_SECRET_ACCESS_KEY": "awss", "AWS_SESSION_TOKEN": "st",
                    "AWS_SHARED_CREDENTIALS_FILE": file]
        #expect(try S3CredentialChain.resolve(accessKeyID: "CFG", secretAccessKey: "c", environment: full).accessKeyID == "CFG")
        #expect(try S3CredentialChain.resolve(accessKeyID: nil, secretAccessKey: nil, environment: full).accessKeyID == "LS")
        var env = full
        env["LITESTREAM_ACCESS_KEY_ID"] = nil
        let aws = try S3CredentialChain.resolve(accessKeyID: nil, secretAccessKey: nil, environment: env)
        #expect(aws.accessKeyID == "AWS" && aws.sessionToken == "st")
        env["AWS_ACCESS_KEY_ID"] = nil
        #expect(try S3CredentialChain.resolve(accessKeyID: "", secretAccessKey: "", environment: env).accessKeyID == "FILEDEF")
        env["AWS_PROFILE"] = "other"
        let other = try S3CredentialChain.resolve(accessKeyID: nil, secretAccessKey: nil, environment: env)
        #expect(other.accessKeyID == "FILEOTHER" && other.sessionToken == "tok")
        #expect(throws: ReplicationError.self) {
            try S3CredentialChain.resolve(accessKeyID: nil, secretAccessKey: nil, environment: ["HOME": dir + "/none"])
        }
        #expect(throws: ReplicationError.self) {
            try S3CredentialChain.resolve(accessKeyID: "only-id", secretAccessKey: nil, environment: [:])
        }
    }

    @Test func factoryBuildsS3Clients() throws {
        var d = S3Destination(bucket: "bkt", path: "db", endpoint: "http://127.0.0.1:1", forcePathStyle: true,
                              accessKeyID: "AKID", secretAccessKey: "secret")
        let c = try ReplicaClientFactory.make(ReplicaConfig(destination: .s3(d)))
        #expect(c.type == "s3")
        #expect(c.location == "s3://bkt/db (endpoint http://127.0.0.1:1)")
        d.bucket = ""
        #expect(throws: ReplicationError.self) { try ReplicaClientFactory.make(ReplicaConfig(destination: .s3(d))) }
    }

    @Test func unreachableEndpointRetriesThenFailsWithCurlText() throws {
        var o = CurlHTTPOptions()
        o.maxAttempts = 3
        o.baseDelay = .milliseconds(10)
        o.connectTimeout = .seconds(2)
        // Port 1 on loopback: connection refused.
        let c = S3ReplicaClient(location: S3Location(bucket: "bkt", prefix: "p", endpoint: "http://127.0.0.1:1"),
                                credentials: Self.creds, httpOptions: o)
        let started = Date()
        do {
            _ = try c.generations()
            Issue.record("expected an error")
        } catch {
            let text = error.oneLine
            #expect(text.contains("127.0.0.1"), "\(text)")
            #expect(text.contains("curl error 7"), "\(text)")
            #expect(!text.contains("topSecret"))
            #expect(!text.contains("\n"))
        }
        #expect(Date().timeIntervalSince(started) < 10)
    }
}

/// Counts what a range receiver publishes.
private final class Published: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int] = []
    func add(_ n: Int) { lock.lock(); values.append(n); lock.unlock() }
    var all: [Int] { lock.lock(); defer { lock.unlock() }; return values }
}

extension S3UnitTests {
    @Test func aRetriedRangeOnlyAppendsWhatEarlierAttemptsDidNotDeliver() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 1)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        let published = Published()
        let r = S3RangeReceiver(buffer: buffer, publish: { published.add($0) }, stop: { false })
        data.withUnsafeBytes { all in
            // First attempt: 6,000 bytes, then the connection drops.
            #expect(r.receiveHead(status: 206, headers: []))
            #expect(r.receive(UnsafeRawBufferPointer(rebasing: all[0..<2500])))
            #expect(r.receive(UnsafeRawBufferPointer(rebasing: all[2500..<6000])))
            // Second attempt from the start: nothing below 6,000 is written again; the rest is appended.
            #expect(r.receiveHead(status: 206, headers: []))
            buffer[10] = 0xEE  // a byte already handed out stays as the reader saw it
            #expect(r.receive(UnsafeRawBufferPointer(rebasing: all[0..<4000])))
            #expect(r.receive(UnsafeRawBufferPointer(rebasing: all[4000..<10_000])))
            #expect(!r.receive(UnsafeRawBufferPointer(rebasing: all[0..<1])))  // more than the range: refused
        }
        #expect(r.available == 10_000 && r.overflow)
        #expect(published.all == [2500, 6000, 10_000])
        #expect(buffer[10] == 0xEE)
        #expect(Array(buffer[11...]) == Array(data[11...]))
        // An error status: the body is kept for the message, the range is untouched.
        let e = S3RangeReceiver(buffer: buffer, publish: { published.add($0) }, stop: { true })
        #expect(e.receiveHead(status: 403, headers: []))
        Array("<Error><Code>AccessDenied</Code></Error>".utf8).withUnsafeBytes { #expect(e.receive($0)) }
        #expect(e.available == 0 && String(decoding: e.errorBody, as: UTF8.self).contains("AccessDenied") && e.shouldStop())
    }
}
