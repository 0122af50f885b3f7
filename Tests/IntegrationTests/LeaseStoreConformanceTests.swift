import Foundation
import Testing
@testable import ReplicationKit

/// The compare-and-swap every lease store must provide, against each real store: SeaweedFS enforces S3's
/// conditional writes; the GCS proxy enforces `ifGenerationMatch` (fake-gcs-server ignores it); the Azure test
/// server implements Put/Delete Blob conditions.
@Suite("Lease stores against servers", .serialized)
struct LeaseStoreConformanceTests {
    static func checkConditionalWrites(_ store: any LeaseStore) throws {
        #expect(try store.readLease() == nil)
        let v1 = try store.createLease(Array("one".utf8))
        #expect {
            _ = try store.createLease(Array("two".utf8))
        } throws: { ($0 as? ReplicationError)?.code == .conflict }
        #expect(try store.readLease() == LeaseObject(data: Array("one".utf8), version: v1))
        let v2 = try store.replaceLease(Array("two".utf8), ifMatch: v1)
        #expect(v2 != v1)
        #expect {
            _ = try store.replaceLease(Array("three".utf8), ifMatch: v1)
        } throws: { ($0 as? ReplicationError)?.code == .conflict }
        #expect {
            try store.deleteLease(ifMatch: v1)
        } throws: { ($0 as? ReplicationError)?.code == .conflict }
        #expect(try store.readLease() == LeaseObject(data: Array("two".utf8), version: v2))
        try store.deleteLease(ifMatch: v2)
        #expect(try store.readLease() == nil)
        try store.deleteLease(ifMatch: v2)  // already gone: not an error
        #expect {
            _ = try store.replaceLease(Array("four".utf8), ifMatch: v2)
        } throws: { ($0 as? ReplicationError)?.code == .conflict }
        #expect(try store.readLease() == nil, "a replace of a deleted lease created it")
    }

    @Test func file() throws {
        let dir = try TestSupport.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.checkConditionalWrites(try FileReplicaClient(root: dir).leaseStore(timeout: .seconds(5)))
    }

    @Test func s3() throws {
        guard let s = S3IntegrationTests.server() else { return }
        let client = S3IntegrationTests.client(s)
        let store = try client.leaseStore(timeout: .seconds(5))
        #expect(store.location.hasPrefix("s3://\(s.bucket)/\(client.s3.prefix)/lease.json"))
        try Self.checkConditionalWrites(store)
    }

    @Test func gcs() throws {
        guard let s = GCSIntegrationTests.server() else { return }
        let env = ["GOOGLE_APPLICATION_CREDENTIALS": s.saFile]
        let client = try GCSIntegrationTests.client(s, env: env, prefix: GCSIntegrationTests.prefix("lease"))
        let store = try client.leaseStore(timeout: .seconds(5))
        #expect(store.location.hasPrefix("gs://\(s.bucket)/\(client.gcs.prefix)/lease.json"))
        try Self.checkConditionalWrites(store)
    }

    @Test func azure() throws {
        guard let s = AzureTestServer.get() else { return }
        let client = try s.client(key: s.key)
        let store = try client.leaseStore(timeout: .seconds(5))
        #expect(store.location.hasPrefix("abs://\(s.account)@\(s.container)/"))
        try Self.checkConditionalWrites(store)
    }
}
