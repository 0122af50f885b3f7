import Foundation
import Testing
@testable import ReplicationKit

/// The Azure Blob client without a server: SharedKey signing, query canonicalisation, SAS redaction, List Blobs
/// parsing, endpoint resolution and the credential chain.
@Suite("Azure Blob client units")
struct AzureBlobUnitTests {
    /// The well-known Azurite development key (public; TESTING §5's test vector uses it).
    static let devKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

    static func client(endpoint: String? = "http://127.0.0.1:14600/devstoreaccount1", account: String? = nil,
                       auth: AzureAuth? = nil, prefix: String = "db") throws -> AzureBlobReplicaClient {
        let loc = try AzureBlobLocation(account: account, container: "litestream", prefix: prefix, endpoint: endpoint)
        return AzureBlobReplicaClient(location: loc, auth: try auth ?? .sharedKey(AzureSharedKeySigner(account: loc.account, base64Key: devKey)))
    }

    @Test func sharedKeyMatchesTheTestingVector() throws {
        let c = try Self.client()
        let addr = c.address(blob: "db/generations/0/wal/00000000.wal.lz4", query: [])
        #expect(addr.url == "http://127.0.0.1:14600/devstoreaccount1/litestream/db/generations/0/wal/00000000.wal.lz4")
        let sts = AzureSharedKeySigner.stringToSign(
            account: "devstoreaccount1", method: "GET", encodedPath: addr.path, query: [],
            headers: [("x-ms-date", "Thu, 26 Nov 2026 19:10:00 GMT"), ("x-ms-version", "2021-08-06")])
        #expect(sts == "GET" + String(repeating: "\n", count: 12) + "x-ms-date:Thu, 26 Nov 2026 19:10:00 GMT\n" +
            "x-ms-version:2021-08-06\n/devstoreaccount1/devstoreaccount1/litestream/db/generations/0/wal/00000000.wal.lz4")
        let signer = try AzureSharedKeySigner(account: "devstoreaccount1", base64Key: Self.devKey)
        #expect(signer.authorization(stringToSign: sts) == "SharedKey devstoreaccount1:ZJae1+DFFynsfBDOkY354w0oCqfXKIS0NmGrZjXbzpo=")
    }

    @Test func standardHeadersAndZeroContentLength() {
        let put = AzureSharedKeySigner.stringToSign(account: "a", method: "put", encodedPath: "/c/b", query: [],
                                                    headers: [("Content-Length", "0"), ("Content-MD5", "bWQ1"),
                                                              ("X-MS-Blob-Type", " BlockBlob ")])
        #expect(put == "PUT\n\n\n\nbWQ1\n" + String(repeating: "\n", count: 7) + "x-ms-blob-type:BlockBlob\n/a/c/b")
        let sized = AzureSharedKeySigner.stringToSign(account: "a", method: "PUT", encodedPath: "/c/b", query: [],
                                                      headers: [("Content-Length", "12")])
        #expect(sized.hasPrefix("PUT\n\n\n12\n"))
    }

    @Test func queryIsSortedLowercasedAndUnescaped() throws {
        let c = try Self.client(endpoint: "http://127.0.0.1:1/acct", prefix: "")
        let q = [("restype", "container"), ("comp", "list"), ("prefix", "db/gen/"), ("marker", "abc")]
        let addr = c.address(blob: nil, query: q)
        #expect(addr.url == "http://127.0.0.1:1/acct/litestream?restype=container&comp=list&prefix=db%2Fgen%2F&marker=abc")
        let sts = AzureSharedKeySigner.stringToSign(account: "acct", method: "GET", encodedPath: "/acct/c", query: q, headers: [])
        #expect(sts.hasSuffix("/acct/acct/c\ncomp:list\nmarker:abc\nprefix:db/gen/\nrestype:container"))
        let block = c.address(blob: "x", query: [("comp", "block"), ("blockid", "YQ+/=")])
        #expect(block.url.hasSuffix("/acct/litestream/x?comp=block&blockid=YQ%2B%2F%3D"))
        let ids = (0..<12).map { AzureBlobReplicaClient.blockID($0 * 999) }
        #expect(Set(ids.map(\.count)).count == 1 && Set(ids).count == 12)
    }

    @Test func sasSignaturesAreRedactedEverywhere() throws {
        let sas = "sv=2021-08-06&sr=c&sp=racwdl&se=2030-01-01T00%3A00%3A00Z&sig=AbC%2Bd/EF%3D"
        let c = try Self.client(auth: .sas(sas))
        let url = c.address(blob: "b", query: [("comp", "list")]).url
        #expect(url.hasSuffix("?comp=list&" + sas))
        let scrubbed = c.scrub("GET \(url): Failed to connect\nagain SIG=xyz&a=1 (sig=\"q\") signature=keep")
        #expect(!scrubbed.contains("AbC") && !scrubbed.contains("xyz") && !scrubbed.contains("\n"))
        #expect(scrubbed.contains("sig=[redacted]") && scrubbed.contains("signature=keep") && scrubbed.contains("a=1"))
        #expect(!c.location.contains("sig") && !c.location.contains("AbC"))
        #expect(AzureRedaction.redactSig("https://h/c?sv=1&sig=abc") == "https://h/c?sv=1&sig=[redacted]")
        #expect(AzureCredentialChain.normaliseSAS("?" + sas) == sas)
    }

    @Test func unreachableEndpointIsOneLineWithoutSecrets() throws {
        var o = CurlHTTPOptions()
        o.maxAttempts = 2
        o.baseDelay = .milliseconds(10)
        let sas = "sv=2021-08-06&sr=c&sp=rl&se=2030-01-01&sig=TopSecretSig%2B"
        let loc = try AzureBlobLocation(account: "acct", container: "c", prefix: "p", endpoint: "http://127.0.0.1:1/acct")
        for auth in [AzureAuth.sas(sas), .sharedKey(try AzureSharedKeySigner(account: "acct", base64Key: Self.devKey))] {
            let c = AzureBlobReplicaClient(location: loc, auth: auth, httpOptions: o)
            do {
                _ = try c.generations()
                Issue.record("expected an error")
            } catch {
                let text = error.oneLine
                #expect(text.hasPrefix("abs: list acct/c/p/generations/"), "\(text)")
                #expect(text.contains("curl error 7"), "\(text)")
                #expect(!text.contains("TopSecretSig") && !text.contains(Self.devKey) && !text.contains("\n"), "\(text)")
            }
        }
    }

    @Test func listBlobsParsing() throws {
        let xml = """
            <?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://h/a/" ContainerName="c">
            <Prefix>p/</Prefix><Blobs><Blob><Name>p/a&amp;b</Name><Properties><Creation-Time>Thu, 26 Nov 2026 19:10:00 GMT</Creation-Time>
            <Last-Modified>Fri, 27 Nov 2026 08:00:01 GMT</Last-Modified><Content-Length>42</Content-Length></Properties></Blob>
            <Blob><Name>p/old</Name><Properties><Last-Modified>Fri, 27 Nov 2026 08:00:01 GMT</Last-Modified>
            <Content-Length>0</Content-Length></Properties></Blob><BlobPrefix><Name>p/dir/</Name></BlobPrefix></Blobs>
            <NextMarker>2!72!MDAwMDA</NextMarker></EnumerationResults>
            """
        let page = try #require(AzureBlobReplicaClient.parseListPage(Array(xml.utf8)))
        #expect(page.blobs.map(\.name) == ["p/a&b", "p/old"])
        #expect(page.blobs.map(\.size) == [42, 0])
        #expect(page.blobs[0].created == Date(timeIntervalSince1970: 1_795_720_200))
        #expect(page.blobs[1].created == Date(timeIntervalSince1970: 1_795_766_401))  // Last-Modified fallback
        #expect(page.prefixes == ["p/dir/"])
        #expect(page.nextMarker == "2!72!MDAwMDA")
        let last = try #require(AzureBlobReplicaClient.parseListPage(Array("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>".utf8)))
        #expect(last.nextMarker == nil && last.blobs.isEmpty)
        #expect(AzureBlobReplicaClient.parseListPage(Array("<Error><Code>X</Code></Error>".utf8)) == nil)
        #expect(AzureDate.format(Date(timeIntervalSince1970: 1_795_720_200)) == "Thu, 26 Nov 2026 19:10:00 GMT")
    }

    @Test func endpointAndAccountResolution() throws {
        let emu = try AzureBlobLocation(account: nil, container: "c", prefix: "./a//b/", endpoint: "http://127.0.0.1:10000/devstoreaccount1/")
        #expect(emu.account == "devstoreaccount1" && emu.prefix == "a/b" && emu.serviceURL == "http://127.0.0.1:10000/devstoreaccount1")
        let cloud = try AzureBlobLocation(account: "acct", container: "c", prefix: nil, endpoint: nil)
        #expect(cloud.serviceURL == "https://acct.blob.core.windows.net" && cloud.prefix == "")
        let c = try Self.client(endpoint: nil, account: "acct", prefix: "")
        #expect(c.address(blob: "generations/x", query: []).url == "https://acct.blob.core.windows.net/litestream/generations/x")
        #expect(c.location == "abs://acct@litestream")
        let named = try AzureBlobLocation(account: "mine", container: "c", prefix: "p", endpoint: "http://127.0.0.1:10000/devstoreaccount1")
        #expect(named.account == "mine")
        #expect(throws: ReplicationError.self) { try AzureBlobLocation(account: nil, container: "c", prefix: nil, endpoint: "http://h:1") }
        #expect(throws: ReplicationError.self) { try AzureBlobLocation(account: nil, container: "c", prefix: nil, endpoint: nil) }
        let emuClient = try Self.client()
        #expect(emuClient.location == "abs://devstoreaccount1@litestream/db (endpoint http://127.0.0.1:14600/devstoreaccount1)")
    }

    @Test func credentialChainOrder() throws {
        let tokens = CurlHTTPClient()
        func mode(_ key: String?, _ sas: String?, _ env: [String: String]) throws -> String {
            try AzureCredentialChain.resolve(account: "a", accountKey: key, sasToken: sas, environment: env,
                                             refreshMargin: .seconds(300), tokens: tokens).description
        }
        let full = ["LITESTREAM_AZURE_ACCOUNT_KEY": Self.devKey, "LITESTREAM_AZURE_SAS_TOKEN": "sv=1&sig=x",
                    "AZURE_FEDERATED_TOKEN_FILE": "/tmp/f", "AZURE_CLIENT_ID": "cid", "AZURE_TENANT_ID": "tid",
                    "AZURE_AUTHORITY_HOST": "http://127.0.0.1:9/", "IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token",
                    "IDENTITY_HEADER": "h", "AZURE_IMDS_ENDPOINT": "http://127.0.0.1:8/"]
        #expect(try mode(Self.devKey, "sv=1&sig=y", full) == "shared key")
        #expect(try mode(nil, "sv=1&sig=y", full) == "SAS token")
        #expect(try mode("", nil, full) == "shared key")
        var env = full
        env["LITESTREAM_AZURE_ACCOUNT_KEY"] = nil
        #expect(try mode(nil, nil, env) == "SAS token")
        env["LITESTREAM_AZURE_SAS_TOKEN"] = nil
        #expect(try mode(nil, nil, env).hasPrefix("workload identity (client cid, tenant tid, authority http://127.0.0.1:9/)"))
        env["AZURE_FEDERATED_TOKEN_FILE"] = nil
        #expect(try mode(nil, nil, env) == "managed identity (identity endpoint http://127.0.0.1:9/msi/token)")
        env["IDENTITY_HEADER"] = nil
        #expect(try mode(nil, nil, env) == "managed identity (IMDS http://127.0.0.1:8)")
        #expect(try mode(nil, nil, [:]) == "managed identity (IMDS http://169.254.169.254)")
        #expect(throws: ReplicationError.self) { try mode(nil, nil, ["AZURE_FEDERATED_TOKEN_FILE": "/tmp/f"]) }
        do {
            _ = try mode("not base64 secret!", nil, [:])
            Issue.record("expected a config error")
        } catch {
            #expect(error.oneLine.contains("not valid base64") && !error.oneLine.contains("secret!"), "\(error.oneLine)")
        }
    }

    @Test func unreachableIMDSSaysWhyItWasAsked() throws {
        let d = AzureDestination(accountName: "acct", container: "c", path: "p", endpoint: "http://127.0.0.1:1/acct")
        let c = try AzureBlobReplicaClient(destination: d, environment: ["AZURE_IMDS_ENDPOINT": "http://127.0.0.1:1"])
        #expect(c.authDescription == "managed identity (IMDS http://127.0.0.1:1)")
        do {
            _ = try c.generations()
            Issue.record("expected an error")
        } catch {
            let text = error.oneLine
            #expect(text.hasPrefix("abs: list acct/c/p/generations/: token request to managed identity (IMDS http://127.0.0.1:1) failed:"), "\(text)")
            #expect(text.contains("curl error 7") && text.contains("so the instance metadata service was asked"), "\(text)")
            #expect(ReplicationError.cause(of: error) == .curl(7), "the curl code is kept as data, not only in the text")
        }
    }

    @Test func tokenExpiryFields() {
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(AzureTokenProvider.expiry(["expires_on": "1800000600"], requestedAt: t0) == t0.addingTimeInterval(600))
        #expect(AzureTokenProvider.expiry(["expires_in": 3599], requestedAt: t0) == t0.addingTimeInterval(3599))
        #expect(AzureTokenProvider.expiry(["expires_in": "60"], requestedAt: t0) == t0.addingTimeInterval(60))
        #expect(AzureTokenProvider.expiry([:], requestedAt: t0) == t0.addingTimeInterval(3600))
    }

    @Test func factoryBuildsAzureClients() throws {
        let d = AzureDestination(accountName: nil, container: "c", path: "p", endpoint: "http://127.0.0.1:1/acct",
                                 accountKey: Self.devKey)
        let c = try ReplicaClientFactory.make(ReplicaConfig(destination: .azure(d)))
        #expect(c.type == "abs")
        #expect(c.location == "abs://acct@c/p (endpoint http://127.0.0.1:1/acct)")
        #expect(!c.location.contains(Self.devKey))
    }
}
