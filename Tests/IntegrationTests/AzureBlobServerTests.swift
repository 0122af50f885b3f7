import Foundation
import Testing
import TestFixtures
@testable import ReplicationKit

/// The Azure Blob client against the verifying test server (`scripts/start-azure.sh`): the shared contract under
/// every authorisation mode, block uploads, pagination, bearer-token caching, and the error texts.
@Suite("Azure Blob client against the test server", .serialized)
struct AzureBlobServerTests {
    static func cleanup(_ c: AzureBlobReplicaClient) {
        for g in (try? c.generations()) ?? [] { try? c.deleteGeneration(g) }
    }

    @Test(arguments: ["sharedkey", "sas", "imds", "appservice", "workload"])
    func conformance(mode: String) throws {
        guard let s = AzureTestServer.get() else { return }
        let c: AzureBlobReplicaClient
        switch mode {
        case "sharedkey": c = try s.client(key: s.key)
        case "sas": c = try s.client(sas: s.sas)
        default: c = try s.client(env: s.identityEnvironment(mode))
        }
        defer { Self.cleanup(c) }
        let okBefore = mode == "sharedkey" ? try s.counter("sharedkey_ok")
            : mode == "sas" ? try s.counter("sas_ok") : try s.counter("bearer_ok", mode)
        let fetchesBefore = try s.fetches(mode)
        try ReplicaClientConformance.check(c)
        let okAfter = mode == "sharedkey" ? try s.counter("sharedkey_ok")
            : mode == "sas" ? try s.counter("sas_ok") : try s.counter("bearer_ok", mode)
        #expect(okAfter - okBefore >= 20, "\(mode): the server saw \(okAfter - okBefore) requests authorised this way")
        if mode != "sharedkey" && mode != "sas" {
            // The token lives an hour: fetched once for the whole run, not per request.
            #expect(try s.fetches(mode) - fetchesBefore == 1)
            #expect(c.authDescription.contains(mode == "workload" ? "workload identity" : "managed identity"))
        }
    }

    @Test func blockUploadOfALargeObjectIsByteExact() throws {
        guard let s = AzureTestServer.get() else { return }
        let c = try s.client(key: s.key, blockThreshold: 1 << 20, blockSize: 256 << 10)
        defer { Self.cleanup(c) }
        let g = try #require(Generation(name: "00000000000000aa"))
        var data = [UInt8](repeating: 0, count: (3 << 20) + 12345)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 13) }
        let blocksBefore = try s.counter("put_block", prefix: c.abs.prefix)
        let listsBefore = try s.counter("put_block_list", prefix: c.abs.prefix)
        let info = try c.writeSnapshot(generation: g, index: 1, body: ReplicaClientConformance.body(data))
        #expect(info.size == UInt64(data.count))
        #expect(try s.counter("put_block", prefix: c.abs.prefix) - blocksBefore == 13)  // 12 full 256 KiB blocks + the rest
        #expect(try s.counter("put_block_list", prefix: c.abs.prefix) - listsBefore == 1)
        let listed = try c.snapshots(generation: g)
        #expect(listed.map(\.size) == [UInt64(data.count)])
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(listed[0])) == data)
        // Exactly at the threshold is a block upload too; one byte less is a single Put Blob.
        let putsBefore = try s.counter("put_blob", prefix: c.abs.prefix)
        _ = try c.writeSnapshot(generation: g, index: 2, body: ReplicaClientConformance.body(Array(data.prefix((1 << 20) - 1))))
        #expect(try s.counter("put_blob", prefix: c.abs.prefix) - putsBefore == 1)
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(try c.snapshots(generation: g)[1])) == Array(data.prefix((1 << 20) - 1)))
    }

    @Test func listingsFollowNextMarker() throws {
        guard let s = AzureTestServer.get() else { return }
        let c = try s.client(key: s.key, listPageSize: 7)
        defer { Self.cleanup(c) }
        let gens = try (0..<9).map { try #require(Generation(name: String(format: "%016x", 0x100 + $0))) }
        for g in gens { _ = try c.writeSnapshot(generation: g, index: 0, body: ReplicaClientConformance.body([1])) }
        for i in 0..<25 {
            _ = try c.writeWALSegment(position: WALPosition(generation: gens[0], index: UInt32(i / 10), offset: UInt64(i % 10) * 4096),
                                      body: ReplicaClientConformance.body([UInt8(i)]))
        }
        let listsBefore = try s.counter("list", prefix: c.abs.prefix)
        let segs = try c.walSegments(generation: gens[0])
        #expect(segs.count == 25)
        #expect(segs == segs.sorted { ($0.index, $0.offset) < ($1.index, $1.offset) })
        #expect(try s.counter("list", prefix: c.abs.prefix) - listsBefore == 4)  // 7 + 7 + 7 + 4
        #expect(try c.generations() == gens)  // 9 prefixes over 2 pages
        try c.deleteGeneration(gens[0])
        #expect(try c.walSegments(generation: gens[0]).isEmpty)
    }

    @Test func v03FlatLayoutIsReadable() throws {
        guard let s = AzureTestServer.get() else { return }
        let c = try s.client(key: s.key)
        defer { Self.cleanup(c) }
        let g = try #require(Generation(name: "00000000000003aa"))
        _ = try c.put(ReplicaPaths.snapshot(g, index: 1, layout: .v03), body: ReplicaClientConformance.body([3, 1]))
        _ = try c.put(ReplicaPaths.walSegment(g, index: 1, offset: 0, layout: .v03), body: ReplicaClientConformance.body([0]))
        _ = try c.put(ReplicaPaths.walSegment(g, index: 1, offset: 4152, layout: .v03), body: ReplicaClientConformance.body([1]))
        _ = try c.put("generations/\(g.name)/wal/junk.wal.lz4", body: ReplicaClientConformance.body([9]))
        let snaps = try c.snapshots(generation: g)
        #expect(snaps.map(\.layout) == [.v03] && snaps.map(\.index) == [1])
        let segs = try c.walSegments(generation: g)
        #expect(segs.map { "\($0.index)/\($0.offset)/\($0.layout)" } == ["1/0/v03", "1/4152/v03"])
        #expect(try ReplicaClientConformance.bytes(of: c.openWALSegment(segs[1])) == [1])
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(snaps[0])) == [3, 1])
    }

    @Test func operationMetricsAreCountedAsAbs() throws {
        guard let s = AzureTestServer.get() else { return }
        ReplicationMetrics.bootstrap()
        func value(_ op: String, _ kind: String = "total") -> Double {
            MetricsExposition.scrape().samples["litestream_replica_operation_\(kind){operation=\"\(op)\",replica_type=\"abs\"}"] ?? 0
        }
        let c = try s.client(key: s.key, listPageSize: 1)
        let g = try #require(Generation(name: "00000000000004aa"))
        let (put0, putBytes0, get0, getBytes0, list0, del0) =
            (value("PUT"), value("PUT", "bytes"), value("GET"), value("GET", "bytes"), value("LIST"), value("DELETE"))
        let data = [UInt8](repeating: 7, count: 1000)
        let snap = try c.writeSnapshot(generation: g, index: 0, body: ReplicaClientConformance.body(data))
        _ = try c.writeSnapshot(generation: g, index: 1, body: ReplicaClientConformance.body(data))
        #expect(try ReplicaClientConformance.bytes(of: c.openSnapshot(snap)) == data)
        try c.deleteGeneration(g)  // a listing of 2 pages (page size 1) and 2 deletes
        #expect(value("PUT") >= put0 + 2 && value("PUT", "bytes") >= putBytes0 + 2000)
        #expect(value("GET") >= get0 + 1 && value("GET", "bytes") >= getBytes0 + 1000)
        #expect(value("LIST") >= list0 + 2 && value("DELETE") >= del0 + 2)
    }

    @Test func bearerTokenIsRefreshedBeforeExpiryAndFetchedOncePerLifetime() throws {
        guard let s = AzureTestServer.get() else { return }
        try s.control("/_config?kind=imds&token_lifetime=4")
        defer { _ = try? s.control("/_config?kind=imds&token_lifetime=3600") }
        // Tokens live 4 s and are replaced 2 s before expiry: one fetch per ~2 s of use.
        let c = try s.client(env: s.identityEnvironment("imds"), refreshMargin: .seconds(2))
        let before = try s.fetches("imds"), okBefore = try s.counter("bearer_ok", "imds")
        let started = Date()
        var requests = 0
        while Date().timeIntervalSince(started) < 7 {
            _ = try c.generations()
            requests += 1
        }
        let fetches = try s.fetches("imds") - before
        let elapsed = Date().timeIntervalSince(started)
        print("bearer refresh: \(requests) requests, \(fetches) token fetches in \(String(format: "%.1f", elapsed)) s")
        #expect(fetches >= 3, "the token was not refreshed while in use: \(fetches) fetches")
        #expect(fetches <= Int(elapsed / 2) + 2, "more than one fetch per usable lifetime: \(fetches) in \(elapsed) s")
        #expect(requests >= 2 * fetches, "\(requests) requests for \(fetches) token fetches")
        #expect(try s.counter("bearer_ok", "imds") - okBefore == requests, "a request was sent with an expired token")
    }

    @Test func rejectedTokenIsInvalidatedAndFetchedOnceMore() throws {
        guard let s = AzureTestServer.get() else { return }
        let c = try s.client(env: s.identityEnvironment("workload"))
        _ = try c.generations()
        let before = try s.fetches("workload"), rejected = try s.counter("bearer_rejected")
        try s.control("/_revoke?client_id=\(s.clientID)")
        #expect(try c.generations().isEmpty)
        #expect(try s.fetches("workload") - before == 1)
        #expect(try s.counter("bearer_rejected") - rejected == 1)
    }

    /// Runs `body` expecting a failure; returns its one-line text after the common checks.
    func failure(_ s: AzureTestServer, _ what: String, _ body: () throws -> Void) -> String {
        do {
            try body()
            Issue.record("\(what): expected an error")
            return ""
        } catch {
            let text = error.oneLine
            print("\(what) -> \(text)")
            #expect(!text.contains("\n"), "\(what): not one line: \(text)")
            s.expectNoSecrets(text, what)
            return text
        }
    }

    @Test func authenticationFailuresAreOneLineWithoutSecrets() throws {
        guard let s = AzureTestServer.get() else { return }
        let wrongKey = Data((0..<64).map { UInt8($0) }).base64EncodedString()
        var text = failure(s, "wrong key") { _ = try s.client(key: wrongKey).generations() }
        #expect(text.contains("HTTP 403 AuthenticationFailed") && text.contains("(auth: shared key)"), "\(text)")
        #expect(text.contains("\(s.account)/\(s.container)/") && !text.contains(wrongKey), "\(text)")

        let badSig = s.sas.replacingOccurrences(of: "sig=", with: "sig=AAAA")
        text = failure(s, "tampered SAS") { _ = try s.client(sas: badSig).generations() }
        #expect(text.contains("HTTP 403 AuthenticationFailed") && text.contains("(auth: SAS token)"), "\(text)")
        #expect(!text.contains("AAAA"), "\(text)")

        let readOnly = s.sas.replacingOccurrences(of: "sp=racwdl", with: "sp=rl")
        text = failure(s, "SAS with changed permissions") { _ = try s.client(sas: readOnly).generations() }
        #expect(text.contains("AuthenticationFailed"), "a SAS whose fields were changed must not verify: \(text)")

        let ro = try s.client(sas: s.sasReadOnly)
        #expect(try ro.generations().isEmpty)
        text = failure(s, "read-only SAS writing") {
            _ = try ro.writeSnapshot(generation: Generation(name: "00000000000000ac")!, index: 0, body: ReplicaClientConformance.body([1]))
        }
        #expect(text.contains("HTTP 403 AuthorizationPermissionMismatch"), "\(text)")
        text = failure(s, "expired SAS") { _ = try s.client(sas: s.sasExpired).generations() }
        #expect(text.contains("HTTP 403 AuthenticationFailed: Signature not valid in the specified time frame"), "\(text)")

        var env = s.identityEnvironment("appservice")
        env["IDENTITY_HEADER"] = "wrong-header-value"
        text = failure(s, "wrong identity header") { _ = try s.client(env: env).generations() }
        #expect(text.contains("token request to managed identity") && text.contains("HTTP 401"), "\(text)")
        #expect(!text.contains("wrong-header-value"), "\(text)")

        env = s.identityEnvironment("workload")
        env["AZURE_CLIENT_ID"] = "someone-else"
        text = failure(s, "wrong workload client") { _ = try s.client(env: env).generations() }
        #expect(text.contains("unauthorized_client"), "\(text)")
    }

    @Test func missingContainerIsContainerNotFound() throws {
        guard let s = AzureTestServer.get() else { return }
        let name = "rk-missing-\(UUID().uuidString.prefix(8).lowercased())"
        for c in [try s.client(container: name, key: s.key), try s.client(container: name, env: s.identityEnvironment("imds"))] {
            let text = failure(s, "missing container") { _ = try c.generations() }
            #expect(text.contains("HTTP 404 ContainerNotFound") && text.contains("container \"\(name)\""), "\(text)")
            let w = failure(s, "write to missing container") {
                _ = try c.writeWALSegment(position: WALPosition(generation: Generation(name: "00000000000000ab")!, index: 0, offset: 0),
                                          body: ReplicaClientConformance.body([1]))
            }
            #expect(w.contains("ContainerNotFound"), "\(w)")
        }
    }

    @Test func serverRefusingForAWhileIsRetried() throws {
        guard let s = AzureTestServer.get() else { return }
        var o = CurlHTTPOptions()
        o.maxAttempts = 6
        o.baseDelay = .milliseconds(300)
        let loc = try AzureBlobLocation(account: s.account, container: s.container, prefix: "refuse-\(UUID().uuidString.prefix(6))",
                                        endpoint: s.endpoint)
        let c = AzureBlobReplicaClient(location: loc, auth: .sharedKey(try AzureSharedKeySigner(account: s.account, base64Key: s.key)),
                                       httpOptions: o)
        let refused = try s.counter("refused")
        try s.control("/_refuse?seconds=1&prefix=\(s.container)/\(loc.prefix)")
        #expect(try c.generations().isEmpty)
        #expect(try s.counter("refused") > refused)
    }
}
