import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Time as a lease needs it: a monotonic clock for every deadline, the wall clock only for what the lease object
/// tells operators. Injectable so unit tests run a lease's hours in microseconds.
public struct LeaseClock: Sendable {
    /// Monotonic time since an arbitrary origin.
    public var monotonic: @Sendable () -> Duration
    /// Wall-clock time (written into `lease.json`).
    public var wall: @Sendable () -> Date
    /// Blocks the calling thread.
    public var sleep: @Sendable (Duration) -> Void

    /// The system clocks.
    public static let system: LeaseClock = {
        let origin = ContinuousClock.now
        return LeaseClock(monotonic: { ContinuousClock.now - origin }, wall: { Date() },
                          sleep: { d in if d > .zero { Thread.sleep(forTimeInterval: Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18) } })
    }()

    /// Creates a clock from its three functions.
    public init(monotonic: @escaping @Sendable () -> Duration, wall: @escaping @Sendable () -> Date,
                sleep: @escaping @Sendable (Duration) -> Void) {
        self.monotonic = monotonic
        self.wall = wall
        self.sleep = sleep
    }
}

/// The single-writer lease of one database, kept in a `LeaseStore` on one of its replicas.
///
/// Protocol (README "One writer per replica"):
/// - **take**: create `lease.json` if absent; otherwise wait. A holder's lease is expired when the waiting launcher
///   has seen the same version of the object for the holder's whole ttl (its own monotonic clock, no trust in the
///   holder's clock), or when the object's own `expires_at` is more than a ttl in the past; it is then replaced
///   with `If-Match` on the version seen, so of two waiters exactly one wins.
/// - **renew** every ttl/3 with `If-Match`. A renewal sent at monotonic time `t` proves the lease until `t + ttl`;
///   writes stop at `t + ttl - margin` (margin = ttl/3) unless a later renewal succeeded: since a waiter cannot
///   observe that version before `t`, it cannot take over before `t + ttl`, a margin after the holder's last write.
/// - **release** after the final sync: delete with `If-Match`, so a waiter takes over within one poll.
///
/// Every replica write of the database passes `checkWritable()` first (`FencedReplicaClient`).
public final class ReplicaLease: Sendable {
    /// Where the lease stands.
    public enum Status: Sendable, Equatable {
        /// Not asked for yet.
        case idle
        /// Another launcher holds it; `holder` is its `hostname:pid`, `expiresAt` its own claim.
        case waiting(holder: String, expiresAt: Date)
        /// Held until `expiresAt` (this process's wall clock, as written in the object).
        case held(expiresAt: Date)
        /// Lost: renewals could not prove it in time, or another launcher took it. Nothing is written any more.
        case lost(reason: String)
        /// Released after the final sync.
        case released
    }

    private struct State {
        var status: Status = .idle
        var version: String?
        var record: LeaseRecord?
        /// Monotonic time until which replica writes are allowed.
        var writableUntil: Duration?
        /// Monotonic time the last successful renewal (or the take) was sent.
        var lastProven: Duration = .zero
        var lastError: String?
        var stopRenewing = false
        var renewerRunning = false
    }

    /// The database the lease protects.
    public let databasePath: String
    /// Where the lease object lives.
    public let store: any LeaseStore
    /// ttl, wait and replica.
    public let config: LeaseConfig
    /// `hostname:pid`.
    public let owner: String
    /// This process's random instance id.
    public let instance: String
    private let clock: LeaseClock
    private let logger: Logger
    private let state = Locked(State())
    /// The generation written into renewals (set once the database is open).
    private let generationSource = Locked<(@Sendable () -> String?)?>(nil)
    private let renewerDone = DispatchSemaphore(value: 0)

    /// How often a waiting launcher reads the lease object (a release is seen within this time).
    public let pollInterval: Duration
    /// How often a waiting launcher logs who holds the lease.
    public static let waitLogInterval: Duration = .seconds(10)

    /// Creates the lease of `databasePath` on `store`; nothing is read or written until `acquire`.
    public init(databasePath: String, store: any LeaseStore, config: LeaseConfig, clock: LeaseClock = .system,
                pollInterval: Duration = .milliseconds(250), owner: String? = nil, logger: Logger) {
        self.databasePath = databasePath
        self.store = store
        self.config = config
        self.clock = clock
        self.pollInterval = pollInterval
        self.logger = logger
        self.owner = owner ?? "\(Syscall.hostName()):\(getpid())"
        self.instance = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        LeaseMetrics.for(path: databasePath).setHeld(until: nil)  // the series exist (at 0) while waiting
    }

    private var metrics: LeaseMetrics { LeaseMetrics.for(path: databasePath) }

    /// What `/readyz` shows of the lease.
    public var healthEntry: HealthReport.Lease {
        let (status, error) = state.withLock { ($0.status, $0.lastError) }
        var l = HealthReport.Lease(location: store.location, state: "idle")
        switch status {
        case .idle: break
        case .waiting(let holder, let exp):
            l.state = "waiting"; l.holder = holder; l.expiresAt = LeaseRecord.format(exp)
        case .held(let exp):
            l.state = "held"; l.holder = owner; l.expiresAt = LeaseRecord.format(exp); l.error = error
        case .lost(let reason):
            l.state = "lost"; l.error = reason
        case .released:
            l.state = "released"
        }
        return l
    }

    /// ttl/3: the renewal period, and the margin between the end of our writes and the earliest takeover.
    public var margin: Duration { config.ttl / 3 }

    /// The current status.
    public var status: Status { state.withLock { $0.status } }

    /// The last renewal error while the lease is still held (nil when the last renewal worked).
    public var lastError: String? { state.withLock { $0.lastError } }

    /// Supplies the generation to write into renewals.
    public func setGenerationSource(_ source: @escaping @Sendable () -> String?) { generationSource.withLock { $0 = source } }

    // MARK: taking

    /// Takes the lease, waiting while another launcher holds it (up to `config.wait`, forever when nil), logging
    /// the holder every 10 s. `shouldStop` is polled between attempts.
    /// - Throws: `.cancelled` when `shouldStop` turned true; `.conflict` when `config.wait` passed; `.corrupt` for
    ///   an unreadable lease object; store errors only as log lines (it keeps trying).
    public func acquire(shouldStop: @Sendable () -> Bool = { false }) throws {
        let started = clock.monotonic()
        var seen: (version: String, since: Duration)?
        var lastLog: Duration?
        var lastStoreError: String?
        while true {
            if shouldStop() { throw ReplicationError(.cancelled, "stopped while waiting for the lease on \(store.location)") }
            let now = clock.monotonic()
            do {
                if let current = try store.readLease() {
                    let rec = try LeaseRecord.decode(current.data, location: store.location)
                    if seen?.version != current.version { seen = (current.version, now) }
                    let holderTTL = Duration.milliseconds(Int64(max(rec.ttlSeconds, 0) * 1000))
                    let ttl = max(holderTTL, config.ttl)
                    let unchangedFor = now - seen!.since
                    let staleByItsClock = clock.wall().timeIntervalSince(rec.expiresAt) > Self.seconds(ttl)
                    if unchangedFor >= ttl || staleByItsClock {
                        let why = staleByItsClock ? "it expired at \(LeaseRecord.format(rec.expiresAt))"
                                                  : "it was not renewed for \(GoDuration.format(unchangedFor))"
                        if try take(replacing: current) {
                            logger.warning("lease on \(store.location) taken over from \(rec.owner) (instance \(rec.instance)): \(why)",
                                           metadata: ["db": "\(databasePath)"])
                            return
                        }
                        // Another waiter won the race: it holds the lease now; look again after a poll.
                    }
                    state.withLock { $0.status = .waiting(holder: rec.owner, expiresAt: rec.expiresAt) }
                    if lastLog == nil || now - lastLog! >= Self.waitLogInterval {
                        lastLog = now
                        logger.info("waiting for the lease on \(store.location): held by \(rec.owner) (instance \(rec.instance)) until \(LeaseRecord.format(rec.expiresAt)) by its clock; unchanged for \(GoDuration.format(unchangedFor)) of its \(GoDuration.format(ttl)) ttl",
                                    metadata: ["db": "\(databasePath)"])
                    }
                } else if try take(replacing: nil) {
                    return
                }
                lastStoreError = nil
            } catch let e as ReplicationError where e.code != .corrupt {
                if lastStoreError != e.message {
                    logger.error("lease on \(store.location): \(e.message); retrying", metadata: ["db": "\(databasePath)"])
                    lastStoreError = e.message
                }
            }
            if let w = config.wait, clock.monotonic() - started >= w {
                let holder: String
                if case .waiting(let h, let exp) = status { holder = "held by \(h) until \(LeaseRecord.format(exp))" } else { holder = "not available" }
                throw ReplicationError(.conflict, "the lease on \(store.location) is \(holder); gave up after \(GoDuration.format(w)) (lease.wait)")
            }
            clock.sleep(pollInterval)
        }
    }

    /// One compare-and-swap attempt to take the lease (create when `current` is nil, else replace it); false when
    /// another launcher won the race.
    private func take(replacing current: LeaseObject?) throws -> Bool {
        let sent = clock.monotonic()
        let now = clock.wall()
        let rec = LeaseRecord(owner: owner, instance: instance, acquiredAt: now, expiresAt: now + Self.seconds(config.ttl),
                              ttlSeconds: Self.seconds(config.ttl), generation: generationSource.current?(),
                              database: databasePath, renewals: 0)
        let bytes = rec.encoded()
        let version: String
        do {
            version = try current.map { try store.replaceLease(bytes, ifMatch: $0.version) } ?? store.createLease(bytes)
        } catch let e as ReplicationError where e.code == .conflict {
            // A retried request whose first attempt succeeded also answers 412: the object then holds our bytes.
            guard let now = try store.readLease(), now.data == bytes else { return false }
            version = now.version
        }
        state.withLock {
            $0.status = .held(expiresAt: rec.expiresAt)
            $0.version = version
            $0.record = rec
            $0.writableUntil = sent + config.ttl - margin
            $0.lastProven = sent
            $0.lastError = nil
        }
        metrics.setHeld(until: rec.expiresAt.timeIntervalSince1970)
        logger.info("lease taken on \(store.location) (ttl \(GoDuration.format(config.ttl)), instance \(instance))",
                    metadata: ["db": "\(databasePath)"])
        return true
    }

    // MARK: keeping

    /// Starts the renewal thread (every ttl/3; retries every second while failing, until the lease is lost).
    public func startRenewing() {
        let start = state.withLock { s -> Bool in
            guard case .held = s.status, !s.renewerRunning else { return false }
            s.renewerRunning = true
            return true
        }
        guard start else { return }
        let t = Thread { [self] in
            renewLoop()
            renewerDone.signal()
        }
        t.name = "lease-renewal"
        t.start()
    }

    private func renewLoop() {
        let retry = min(Duration.seconds(1), config.ttl / 10)
        while true {
            let (stop, due) = state.withLock { s -> (Bool, Duration) in
                guard case .held = s.status else { return (true, .zero) }
                return (s.stopRenewing, s.lastError == nil ? s.lastProven + margin : .zero)
            }
            if stop { return }
            // Sleep in short steps so a release is not held up by a whole period.
            let now = clock.monotonic()
            if now < due {
                clock.sleep(min(due - now, .milliseconds(100)))
                continue
            }
            if lossReason != nil { return }
            renewOnce()
            if state.withLock({ $0.lastError != nil }) { clock.sleep(retry) }
        }
    }

    /// One renewal attempt.
    func renewOnce() {
        guard let (version, record) = state.withLock({ s -> (String, LeaseRecord)? in
            guard case .held = s.status, let v = s.version, let r = s.record else { return nil }
            return (v, r)
        }) else { return }
        let sent = clock.monotonic()
        var rec = record
        rec.expiresAt = clock.wall() + Self.seconds(config.ttl)
        rec.renewals += 1
        if let g = generationSource.current?() { rec.generation = g }
        let bytes = rec.encoded()
        do {
            let newVersion: String
            do {
                newVersion = try store.replaceLease(bytes, ifMatch: version)
            } catch let e as ReplicationError where e.code == .conflict {
                guard let now = try store.readLease() else {
                    lose("the lease object \(store.location) was deleted by someone else")
                    return
                }
                guard now.data == bytes else {
                    let other = (try? LeaseRecord.decode(now.data, location: store.location)).map { "\($0.owner) (instance \($0.instance))" }
                    lose("the lease on \(store.location) was taken by \(other ?? "an unreadable object")")
                    return
                }
                newVersion = now.version
            }
            let recovered = state.withLock { s -> String? in
                guard case .held = s.status else { return nil }
                let was = s.lastError
                s.version = newVersion
                s.record = rec
                s.status = .held(expiresAt: rec.expiresAt)
                s.writableUntil = sent + config.ttl - margin
                s.lastProven = sent
                s.lastError = nil
                return was
            }
            metrics.setHeld(until: rec.expiresAt.timeIntervalSince1970)
            if recovered != nil {
                logger.info("lease on \(store.location) renewed again", metadata: ["db": "\(databasePath)"])
            }
        } catch {
            metrics.renewErrors.increment()
            let message = error.oneLine
            let first = state.withLock { s -> Bool in
                let first = s.lastError != message
                s.lastError = message
                return first
            }
            if first {
                let left = state.withLock { $0.writableUntil }.map { $0 - clock.monotonic() } ?? .zero
                logger.error("cannot renew the lease on \(store.location) (\(GoDuration.format(max(left, .zero))) left before it is given up): \(message)",
                             metadata: ["db": "\(databasePath)"])
            }
        }
    }

    private func lose(_ reason: String) {
        let first = state.withLock { s -> Bool in
            if case .lost = s.status { return false }
            s.status = .lost(reason: reason)
            s.writableUntil = nil
            return true
        }
        metrics.setHeld(until: nil)
        if first { logger.error("lease lost: \(reason); replica writes stopped", metadata: ["db": "\(databasePath)"]) }
    }

    /// Why the lease is no longer ours, or nil while it is held (or was never taken or released).
    ///
    /// Turns the lease to `.lost` the first time it is read after the renewals missed their deadline, whatever the
    /// renewal thread is doing (it may be stuck in a request).
    public var lossReason: String? {
        let (status, until, lastError) = state.withLock { ($0.status, $0.writableUntil, $0.lastError) }
        switch status {
        case .lost(let r): return r
        case .held:
            guard let until, clock.monotonic() >= until else { return nil }
            lose("could not renew the lease on \(store.location) within \(GoDuration.format(config.ttl - margin))"
                 + (lastError.map { ": \($0)" } ?? ""))
            return self.lossReason
        default: return nil
        }
    }

    /// The fence of every replica write: passes only while the lease is held and proven.
    /// - Throws: `.conflict` saying why nothing may be written.
    public func checkWritable() throws {
        if let r = lossReason { throw ReplicationError(.conflict, "lease lost, not writing to the replica: \(r)") }
        guard case .held = status else {
            throw ReplicationError(.conflict, "lease on \(store.location) not held, not writing to the replica")
        }
    }

    // MARK: giving back

    /// Stops renewing and deletes the lease object (if it is still ours), so a waiting launcher takes over at once.
    /// Call only when no replica write of the database is in flight (after the final sync). Logs what happened.
    public func release() {
        let running = state.withLock { s -> Bool in
            s.stopRenewing = true
            defer { s.renewerRunning = false }  // a second release must not wait for a thread that is gone
            return s.renewerRunning
        }
        if running { renewerDone.wait() }
        let version = state.withLock { s -> String? in
            guard case .held = s.status, let v = s.version else { return nil }
            s.status = .released
            s.writableUntil = nil
            return v
        }
        guard let version else { return }
        metrics.setHeld(until: nil)
        do {
            try store.deleteLease(ifMatch: version)
            logger.info("lease released on \(store.location)", metadata: ["db": "\(databasePath)"])
        } catch let e as ReplicationError where e.code == .conflict {
            logger.warning("lease on \(store.location) was already taken by another launcher; not released", metadata: ["db": "\(databasePath)"])
        } catch {
            logger.error("cannot release the lease on \(store.location) (the next launcher waits for its ttl): \(error.oneLine)",
                         metadata: ["db": "\(databasePath)"])
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
