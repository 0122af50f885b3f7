import Foundation
import Testing
@testable import ReplicationKit

/// The pure parts of `launcher status` and `POST /sync`: lag, "holds the target", the JSON shape, and how a
/// launcher's `-addr` becomes a URL to connect to.
@Suite("Status and sync units")
struct StatusReportTests {
    static let g = Generation(value: 0x0123_4567_89ab_cdef)
    static let h = Generation(value: 0x0fed_cba9_8765_4321)
    static func p(_ index: UInt32, _ offset: UInt64, _ gen: Generation = g) -> WALPosition {
        WALPosition(generation: gen, index: index, offset: offset)
    }

    @Test func lagBytes() {
        typealias R = StatusReport
        #expect(R.lagBytes(local: Self.p(3, 9000), replica: Self.p(3, 4000)) == 5000)
        #expect(R.lagBytes(local: Self.p(3, 4000), replica: Self.p(3, 4000)) == 0)
        #expect(R.lagBytes(local: Self.p(3, 4000), replica: Self.p(3, 9000)) == 0)
        // An earlier index: the local offset, a lower bound.
        #expect(R.lagBytes(local: Self.p(4, 132), replica: Self.p(3, 9000)) == 132)
        #expect(R.lagBytes(local: Self.p(3, 132), replica: Self.p(4, 32)) == 0)
        #expect(R.lagBytes(local: Self.p(3, 132), replica: Self.p(3, 132, Self.h)) == nil)
        #expect(R.lagBytes(local: nil, replica: Self.p(3, 132)) == nil)
        #expect(R.lagBytes(local: Self.p(3, 132), replica: nil) == nil)
    }

    @Test func lagSeconds() {
        let now = Date(timeIntervalSince1970: 1_000_000)
        let ago = now.addingTimeInterval(-12.5)
        typealias R = StatusReport
        #expect(R.lagSeconds(local: Self.p(1, 64), synced: Self.p(1, 64), lastSyncedAt: ago, now: now) == 0)
        #expect(R.lagSeconds(local: Self.p(1, 96), synced: Self.p(1, 64), lastSyncedAt: ago, now: now) == 12.5)
        // A failing replica has forgotten its position: the lag still grows from its last good sync.
        #expect(R.lagSeconds(local: Self.p(1, 96), synced: nil, lastSyncedAt: ago, now: now) == 12.5)
        #expect(R.lagSeconds(local: Self.p(1, 96), synced: nil, lastSyncedAt: nil, now: now) == nil)
        #expect(R.lagSeconds(local: Self.p(1, 96), synced: Self.p(1, 64), lastSyncedAt: now.addingTimeInterval(5), now: now) == 0)
    }

    @Test func holdsTheTarget() {
        let target = Self.p(2, 500)
        #expect(SyncRequest.holds(Self.p(2, 500), target: target, current: Self.p(2, 800)))
        #expect(SyncRequest.holds(Self.p(3, 32), target: target, current: Self.p(3, 32)))
        #expect(!SyncRequest.holds(Self.p(2, 499), target: target, current: Self.p(2, 800)))
        #expect(!SyncRequest.holds(Self.p(1, 9999), target: target, current: Self.p(2, 800)))
        #expect(!SyncRequest.holds(nil, target: target, current: Self.p(2, 800)))
        // A newer generation began with a snapshot of everything: it counts only when the database is on it now.
        #expect(SyncRequest.holds(Self.p(0, 32, Self.h), target: target, current: Self.p(0, 64, Self.h)))
        #expect(!SyncRequest.holds(Self.p(0, 32, Self.h), target: target, current: Self.p(2, 800)))
    }

    /// Every documented field is present (null when unknown), snake_case, and `healthy` follows the errors.
    @Test func jsonShape() throws {
        let replicas = [
            StatusReport.Replica(name: "s3", type: "s3", position: nil, lagBytes: nil, lagSeconds: nil, error: "HTTP 403"),
            StatusReport.Replica(name: "disk", type: "file", position: .init(Self.p(1, 64)), lagBytes: 0, lagSeconds: 0, error: nil),
        ]
        let lease = StatusReport.Lease(location: "/r/lease.json", state: "free", holder: nil, expiresAt: nil, error: nil)
        let report = StatusReport(source: "stores", databases: [
            .init(path: "/d/app.db", role: "primary", position: .init(Self.p(1, 64)), error: nil, replicas: replicas, lease: lease),
        ])
        #expect(!report.healthy)
        let o = try JSONSerialization.jsonObject(with: Data(report.encoded())) as? [String: Any] ?? [:]
        #expect(Set(o.keys) == ["source", "healthy", "databases"])
        let d = (o["databases"] as? [[String: Any]])?.first ?? [:]
        #expect(Set(d.keys) == ["path", "role", "position", "error", "replicas", "lease"] && d["error"] is NSNull)
        let pos = d["position"] as? [String: Any] ?? [:]
        #expect(pos["generation"] as? String == "0123456789abcdef" && (pos["index"] as? NSNumber)?.intValue == 1
                && (pos["offset"] as? NSNumber)?.intValue == 64 && pos.count == 3, "\(pos)")
        let r = (d["replicas"] as? [[String: Any]])?.first ?? [:]
        #expect(Set(r.keys) == ["name", "type", "position", "lag_bytes", "lag_seconds", "error"])
        #expect(r["position"] is NSNull && r["lag_bytes"] is NSNull && r["lag_seconds"] is NSNull)
        #expect(Set((d["lease"] as? [String: Any])?.keys ?? [:].keys) == ["location", "state", "holder", "expires_at", "error"])
        // And it reads back.
        let back = try JSONDecoder().decode(StatusReport.self, from: Data(report.encoded()))
        #expect(back.databases.first?.replicas.map(\.error) == ["HTTP 403", nil] && back.healthy == false)
        #expect(StatusReport(source: "launcher", databases: [.init(path: "/a", role: "follower", position: nil, error: nil,
                                                                   replicas: [], lease: nil)]).healthy)
    }

    @Test func launcherAddress() throws {
        #expect(try LauncherClient(address: ":9090").baseURL == "http://127.0.0.1:9090")
        #expect(try LauncherClient(address: "0.0.0.0:9090").baseURL == "http://127.0.0.1:9090")
        #expect(try LauncherClient(address: "[::]:9090").baseURL == "http://[::1]:9090")
        #expect(try LauncherClient(address: "app.internal:80").baseURL == "http://app.internal:80")
        #expect(try LauncherClient(address: "http://127.0.0.1:9/").baseURL == "http://127.0.0.1:9")
        for bad in ["9090", "host:", "127.0.0.1:0", "h:99999"] {
            #expect(throws: ReplicationError.self, "\(bad)") { _ = try LauncherClient(address: bad) }
        }
    }
}
