import Foundation
import Testing
import TestFixtures
@testable import ReplicationKit

/// The part of the "Metrics" suite that needs the S3 server (the rest is in UnitTests/MetricsTests.swift).
@Suite("Metrics", .serialized)
struct MetricsTests {
    /// The S3 client's counts against a real server (skipped without RK_S3_ENDPOINT, like the S3 suite).
    @Test func s3OperationCounters() throws {
        guard let server = S3IntegrationTests.server() else { return }
        ReplicationMetrics.bootstrap()
        func value(_ op: String, _ kind: String = "total") -> Double {
            MetricsExposition.scrape().samples["litestream_replica_operation_\(kind){operation=\"\(op)\",replica_type=\"s3\"}"] ?? 0
        }
        let c = S3IntegrationTests.client(server)
        let g = try #require(Generation(name: "00000000000000aa"))
        let data = [UInt8](repeating: 7, count: 1000)
        // Other suites may use S3 at the same time: counters only ever grow, so compare with lower bounds.
        let (put0, putBytes0, get0, getBytes0, list0, del0) =
            (value("PUT"), value("PUT", "bytes"), value("GET"), value("GET", "bytes"), value("LIST"), value("DELETE"))
        let s = try c.writeSnapshot(generation: g, index: 0, body: S3IntegrationTests.body(data))
        #expect(try S3IntegrationTests.bytes(of: c.openSnapshot(s)) == data)
        _ = try c.snapshots(generation: g)
        try c.deleteGeneration(g)
        #expect(value("PUT") >= put0 + 1)
        #expect(value("PUT", "bytes") >= putBytes0 + 1000)
        #expect(value("GET") >= get0 + 1)
        #expect(value("GET", "bytes") >= getBytes0 + 1000)
        #expect(value("LIST") >= list0 + 2)
        #expect(value("DELETE") >= del0 + 1)
    }
}
