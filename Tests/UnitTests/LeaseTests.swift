import Foundation
import Logging
import Testing
@testable import ReplicationKit

/// A clock whose time moves only when someone sleeps on it (or the test advances it); `onSleep` runs after each
/// step, so another lease's renewals can be interleaved with a waiter's polls in one thread.
final class SteppedClock: Sendable {
    let now = Locked<Duration>(.zero)
    let wallOrigin = Date(timeIntervalSince1970: 1_800_000_000)
    let onSleep = Locked<(@Sendable (Duration) -> Void)?>(nil)

    var clock: LeaseClock {
        LeaseClock(monotonic: { [now] in now.current },
                   wall: { [now, wallOrigin] in wallOrigin + ReplicaLease.seconds(now.current) },
                   sleep: { [self] d in advance(d) })
    }

    func advance(_ d: Duration) {
        now.withLock { $0 += d }
        onSleep.current?(now.current)
    }
}

/// A lease store that passes every call to a real one, and can make a write land but answer a conflict (as a retried
/// request whose first attempt succeeded does), or fail outright (an unreachable store).
final class FlakyLeaseStore: LeaseStore {
    let base: any LeaseStore
    let landThenConflict = Locked(false)
    let failing = Locked(false)
    init(_ base: any LeaseStore) { self.base = base }
    var location: String { base.location }
    private func check() throws { if failing.current { throw ReplicationError(.io, "store unreachable (test)") } }
    func readLease() throws -> LeaseObject? { try check(); return try base.readLease() }
    func createLease(_ data: [UInt8]) throws -> String {
        try check()
        let v = try base.createLease(data)
        if landThenConflict.current { throw ReplicationError(.conflict, "412 (test)") }
        return v
    }
    func replaceLease(_ data: [UInt8], ifMatch version: String) throws -> String {
        try check()
        let v = try base.replaceLease(data, ifMatch: version)
        if landThenConflict.current { throw ReplicationError(.conflict, "412 (test)") }
        return v
    }
    func deleteLease(ifMatch version: String) throws { try check(); try base.deleteLease(ifMatch: version) }
}

@Suite("Leases")
struct LeaseTests {
    static let logger = Logger(label: "test.lease")
    static let ttl: Duration = .seconds(30)

    static func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("lease-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// A scratch replica directory, a stepped clock at zero, and the directory's lease store.
    static func fixture() throws -> (String, SteppedClock, FileLeaseStore) {
        let dir = try tempDir()
        return (dir, SteppedClock(), FileLeaseStore(root: dir, timeout: .seconds(5)))
    }

    static func lease(_ store: any LeaseStore, _ clock: SteppedClock, owner: String, wait: Duration? = nil) -> ReplicaLease {
        ReplicaLease(databasePath: "/data/app.db", store: store, config: LeaseConfig(ttl: ttl, wait: wait), clock: clock.clock,
                     pollInterval: .milliseconds(250), owner: owner, logger: logger)
    }

    @Test func aFreeLeaseIsTakenAndItsObjectNamesTheHolder() throws {
        let (dir, clock, store) = try Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = Self.lease(store, clock, owner: "host-a:1")
        a.setGenerationSource { "0123456789abcdef" }
        try a.acquire()
        #expect(a.status == .held(expiresAt: clock.wallOrigin + 30))
        let rec = try LeaseRecord.decode(try #require(try store.readLease()).data, location: store.location)
        #expect(rec.owner == "host-a:1" && rec.instance == a.instance && rec.ttlSeconds == 30)
        #expect(rec.generation == "0123456789abcdef" && rec.database == "/data/app.db")
        #expect(rec.expiresAt == clock.wallOrigin + 30)
        try a.checkWritable()
        #expect(a.healthEntry.state == "held" && a.healthEntry.holder == "host-a:1")
    }

    /// A holder that stops renewing (crashed) is taken over once its object has been unchanged for a full ttl by
    /// the waiter's own clock, not before; a bounded wait gives up first with the holder's name.
    @Test func aSilentHolderIsTakenOverAfterItsTTLNeverBefore() throws {
        let (dir, clock, store) = try Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = Self.lease(store, clock, owner: "host-a:1")
        try a.acquire()
        let b = Self.lease(store, clock, owner: "host-b:2", wait: .seconds(20))
        #expect {
            try b.acquire()
        } throws: { error in
            let e = error as? ReplicationError
            return e?.code == .conflict && e!.message.contains("held by host-a:1") && e!.message.contains("gave up after 20s (lease.wait)")
        }
        let c = Self.lease(store, clock, owner: "host-c:3")
        let started = clock.now.current
        try c.acquire()
        let waited = clock.now.current - started
        #expect(waited >= Self.ttl && waited <= Self.ttl + .milliseconds(500), "took over after \(waited)")
        #expect(try LeaseRecord.decode(try #require(try store.readLease()).data, location: "").owner == "host-c:3")
        // The old holder finds out at its next renewal, and its fence is closed.
        a.renewOnce()
        #expect(a.lossReason?.contains("was taken by host-c:3") == true, "\(a.status)")
        #expect(throws: ReplicationError.self) { try a.checkWritable() }
    }

    /// While the holder renews every ttl/3, a waiter never takes the lease, however long it waits.
    @Test func renewalsKeepAWaiterOut() throws {
        let (dir, clock, store) = try Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = Self.lease(store, clock, owner: "host-a:1")
        try a.acquire()
        let renewedAt = Locked<Duration>(.zero)
        clock.onSleep.withLock {
            $0 = { now in
                guard now - renewedAt.current >= Self.ttl / 3 else { return }
                renewedAt.withLock { $0 = now }
                a.renewOnce()
            }
        }
        let b = Self.lease(store, clock, owner: "host-b:2", wait: .seconds(300))
        #expect(throws: ReplicationError.self) { try b.acquire() }
        #expect(clock.now.current >= .seconds(300))
        #expect(a.lossReason == nil)
        try a.checkWritable()
        let rec = try LeaseRecord.decode(try #require(try store.readLease()).data, location: "")
        #expect(rec.owner == "host-a:1" && rec.renewals >= 29, "\(rec)")
    }

    /// The fence closes ttl - margin after the last proven renewal, before any waiter can take over (a full ttl
    /// after it saw that version), and the loss is sticky.
    @Test func theFenceClosesAMarginBeforeATakeoverIsPossible() throws {
        let (dir, clock, store) = try Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let flaky = FlakyLeaseStore(store)
        let a = Self.lease(flaky, clock, owner: "host-a:1")
        try a.acquire()
        flaky.failing.withLock { $0 = true }
        clock.advance(.seconds(10))
        a.renewOnce()
        #expect(a.lastError?.contains("store unreachable") == true)
        #expect(a.lossReason == nil)
        try a.checkWritable()
        clock.advance(.seconds(9) + .milliseconds(999))
        try a.checkWritable()
        clock.advance(.milliseconds(1))
        #expect(a.lossReason?.contains("could not renew the lease") == true)
        #expect(a.lossReason?.contains("store unreachable") == true)
        #expect(throws: ReplicationError.self) { try a.checkWritable() }
        flaky.failing.withLock { $0 = false }
        a.renewOnce()
        #expect(a.lossReason != nil, "a lost lease came back")
        #expect(a.healthEntry.state == "lost")
    }

    /// A write that landed but answered 412 (a retried request) is recognised as ours, for a take and a renewal.
    @Test func aWriteThatLandedButAnsweredAConflictIsOurs() throws {
        let (dir, clock, store) = try Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let flaky = FlakyLeaseStore(store)
        flaky.landThenConflict.withLock { $0 = true }
        let a = Self.lease(flaky, clock, owner: "host-a:1")
        try a.acquire()
        #expect(clock.now.current == .zero, "the take was retried")
        clock.advance(.seconds(10))
        a.renewOnce()
        #expect(a.lossReason == nil && a.lastError == nil)
        if case .held(let exp) = a.status { #expect(exp == clock.wallOrigin + 40) } else { Issue.record("\(a.status)") }
    }

    /// After a release the object is gone and the next launcher takes the lease at its first poll.
    @Test func releaseLetsTheNextLauncherInAtOnce() throws {
        let (dir, clock, store) = try Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = Self.lease(store, clock, owner: "host-a:1")
        try a.acquire()
        a.startRenewing()
        a.release()
        a.release()  // idempotent: the renewal thread is gone, nothing waits for it again
        #expect(a.status == .released)
        #expect(try store.readLease() == nil)
        #expect(throws: ReplicationError.self) { try a.checkWritable() }
        let b = Self.lease(store, clock, owner: "host-b:2")
        let before = clock.now.current
        try b.acquire()
        #expect(clock.now.current == before, "the next launcher waited")
    }

    /// An object that is not a lease stops the launcher with a message naming it, instead of being overwritten.
    @Test func anUnreadableLeaseObjectIsAnErrorNamingIt() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #"{"owner": "x"}"#.write(toFile: dir + "/lease.json", atomically: true, encoding: .utf8)
        let a = Self.lease(FileLeaseStore(root: dir, timeout: .seconds(5)), SteppedClock(), owner: "host-a:1")
        #expect {
            try a.acquire()
        } throws: { error in
            let e = error as? ReplicationError
            return e?.code == .corrupt && e!.message.hasPrefix("lease object \(dir)/lease.json is unreadable (no \"instance\" field")
        }
        #expect(try String(contentsOfFile: dir + "/lease.json", encoding: .utf8) == #"{"owner": "x"}"#)
    }

    /// Eight launchers race for one expired lease on real threads: exactly one wins, the others keep waiting.
    @Test func racersForAnExpiredLeaseHaveOneWinner() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = FileLeaseStore(root: dir, timeout: .seconds(5))
        let old = LeaseRecord(owner: "gone:1", instance: "00", acquiredAt: Date(timeIntervalSinceNow: -3600),
                              expiresAt: Date(timeIntervalSinceNow: -3000), ttlSeconds: 30, generation: nil, database: "/d", renewals: 0)
        _ = try store.createLease(old.encoded())
        let winners = Locked(0), losers = Locked(0)
        let group = DispatchGroup()
        for i in 0..<8 {
            group.enter()
            Thread.detachNewThread {
                let l = ReplicaLease(databasePath: "/d", store: store, config: LeaseConfig(ttl: .seconds(30), wait: .seconds(1)),
                                     pollInterval: .milliseconds(20), owner: "racer:\(i)", logger: Self.logger)
                do { try l.acquire(); winners.withLock { $0 += 1 } } catch { losers.withLock { $0 += 1 } }
                group.leave()
            }
        }
        #expect(group.wait(timeout: .now() + 60) == .success)
        #expect(winners.current == 1 && losers.current == 7, "winners \(winners.current), losers \(losers.current)")
    }

    /// Replica writes pass the fence: once the lease is lost, nothing is written or deleted, reads still work.
    @Test func fencedClientRefusesWritesWithoutTheLease() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = SteppedClock()
        let base = FileReplicaClient(root: dir + "/replica")
        let lease = Self.lease(try base.leaseStore(timeout: .seconds(5)), clock, owner: "host-a:1")
        try lease.acquire()
        let fenced = FencedReplicaClient(base, lease: lease)
        let g = try #require(Generation(name: "0123456789abcdef"))
        _ = try fenced.writeSnapshot(generation: g, index: 0) { sink in try [1, 2, 3].withUnsafeBytes { try sink($0) } }
        clock.advance(Self.ttl)
        #expect {
            _ = try fenced.writeWALSegment(position: WALPosition(generation: g, index: 0, offset: 0)) { _ in }
        } throws: { error in
            (error as? ReplicationError)?.message.hasPrefix("lease lost, not writing to the replica") == true
        }
        #expect(throws: ReplicationError.self) { try fenced.deleteGeneration(g) }
        #expect(try fenced.snapshots(generation: g).count == 1)
        #expect(try base.walSegments(generation: g).isEmpty)
    }
}

/// A loopback TCP server that reads requests but never answers: a store that hangs. `received` turns true once a
/// request's first bytes arrived.
final class SilentServer: @unchecked Sendable {
    // @unchecked: `fd` and `port` are set in init; `received` is a lock.
    let fd: Int32
    let port: Int
    let received = Locked(false)
    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else { throw TestFailure("cannot listen on loopback: errno \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
        let flag = received
        Thread.detachNewThread {
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }
            var buf = [UInt8](repeating: 0, count: 65536)
            while buf.withUnsafeMutableBytes({ read(c, $0.baseAddress, $0.count) }) > 0 { flag.withLock { $0 = true } }
            close(c)
        }
    }

    deinit { close(fd) }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@Suite("Lease fence on transfers in flight")
struct LeaseFenceTransferTests {
    /// An upload already in flight when the lease stops being provable is aborted at curl's next progress
    /// callback, not left to finish (or to hang until the stall timeout).
    @Test func anUploadInFlightIsCutOffWhenTheLeaseIsLost() throws {
        let (dir, clock, store) = try LeaseTests.fixture()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lease = LeaseTests.lease(store, clock, owner: "host-a:1")
        try lease.acquire()
        let server = try SilentServer()
        let s3 = S3ReplicaClient(location: S3Location(bucket: "b", prefix: "p", endpoint: "http://127.0.0.1:\(server.port)"),
                                 credentials: AWSCredentials(accessKeyID: "AKIDTEST", secretAccessKey: "secret"))
        let fenced = FencedReplicaClient(s3, lease: lease)
        let g = try #require(Generation(name: "0123456789abcdef"))
        let result = Locked<Result<Void, any Error>?>(nil)
        Thread.detachNewThread {
            let r = Result {
                _ = try fenced.writeWALSegment(position: WALPosition(generation: g, index: 0, offset: 0)) { sink in
                    try [UInt8](repeating: 7, count: 1000).withUnsafeBytes { try sink($0) }
                }
            }
            result.withLock { $0 = r }
        }
        // The request is out (the server never answers): the write is blocked in curl.
        let sent = ContinuousClock.now + .seconds(10)
        while !server.received.current && ContinuousClock.now < sent { Thread.sleep(forTimeInterval: 0.01) }
        #expect(server.received.current, "no request reached the server")
        #expect(result.current == nil, "the write returned although the server never answered")
        let lost = ContinuousClock.now
        clock.advance(LeaseTests.ttl)
        let deadline = ContinuousClock.now + .seconds(10)
        while result.current == nil && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let took = ContinuousClock.now - lost
        #expect(took < .seconds(3), "the upload was cut off \(took) after the loss")
        #expect {
            try result.current?.get()
        } throws: { error in
            error.oneLine.contains("aborted: lease lost")
        }
    }
}
