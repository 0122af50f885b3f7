import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// The readiness report behind `/readyz` (and the body of `/healthz`).
public struct HealthReport: Codable, Sendable {
    /// One replica of a database.
    public struct Replica: Codable, Sendable {
        public var name: String
        public var type: String
        /// Last position known to be on the replica (`generation/index:offset`), nil before the first sync.
        public var position: String?
        /// Seconds since the replica last held everything the database had, nil before that happened.
        public var lagSeconds: Double?
        /// The last sync error, nil when the last sync succeeded.
        public var error: String?

        /// Creates a replica entry.
        public init(name: String, type: String, position: String?, lagSeconds: Double?, error: String?) {
            self.name = name
            self.type = type
            self.position = position
            self.lagSeconds = lagSeconds
            self.error = error
        }
    }

    /// A database's single-writer lease.
    public struct Lease: Codable, Sendable, Equatable {
        /// Where the lease object lives.
        public var location: String
        /// `idle`, `waiting` (another launcher holds it), `held`, `lost` or `released`.
        public var state: String
        /// `hostname:pid` of the holder (this launcher when held).
        public var holder: String?
        /// When the holder's lease ends unless renewed (RFC 3339, the holder's clock).
        public var expiresAt: String?
        /// The last renewal error while held, or why it was lost.
        public var error: String?

        /// Creates a lease entry.
        public init(location: String, state: String, holder: String? = nil, expiresAt: String? = nil, error: String? = nil) {
            self.location = location
            self.state = state
            self.holder = holder
            self.expiresAt = expiresAt
            self.error = error
        }
    }

    /// One database.
    public struct Database: Codable, Sendable {
        public var path: String
        /// `primary` (tracked and replicated) or `follower` (applies an upstream's stream).
        public var role: String
        /// The local position (`generation/index:offset`), nil before the first sync / snapshot.
        public var position: String?
        /// Whether this database is ready (tracked; for a follower: its first snapshot applied).
        public var ready: Bool
        /// Base URL of the primary, for a follower.
        public var upstream: String?
        public var replicas: [Replica]
        /// The database's lease, when one is configured.
        public var lease: Lease?

        /// Creates a database entry.
        public init(path: String, role: String, position: String?, ready: Bool, upstream: String?, replicas: [Replica],
                    lease: Lease? = nil) {
            self.lease = lease
            self.path = path
            self.role = role
            self.position = position
            self.ready = ready
            self.upstream = upstream
            self.replicas = replicas
        }
    }

    /// Overall readiness: restores done, every database ready, and the child running (when there is one).
    public var ready: Bool
    /// Why it is not ready (nil when ready).
    public var reason: String?
    public var databases: [Database]

    /// Creates a report.
    public init(ready: Bool, reason: String?, databases: [Database]) {
        self.ready = ready
        self.reason = reason
        self.databases = databases
    }
}

/// Supplies `/readyz` (implemented by the launcher, which knows about restores and the child process).
public protocol HealthSource: Sendable {
    /// The current report; called off the event loop.
    func healthReport() -> HealthReport
}

/// `/stream`, `/metrics`, `/healthz`, `/readyz`, `/status`, `POST /sync`; everything else is Go's 404.
public final class ReplicationRoutes: HTTPRoutes, Sendable {
    private let databases: Locked<[String: (Database, StreamSnapshotCache)]> = Locked([:])
    private let followed: Locked<Set<String>> = Locked([])
    private let health: Locked<(any HealthSource)?> = Locked(nil)
    private let replicator: Locked<Replicator?> = Locked(nil)
    /// Whether `POST /sync` may sync: only once the replicator has started (before, a database may be restoring).
    private let syncEnabled = Locked(false)
    /// Runs `POST /sync`'s local syncs (which block on the databases' queues) and its polls, off the `work` queue,
    /// so `/metrics` and `/readyz` keep answering while a sync waits.
    private let syncQueue = DispatchQueue(label: "launcher.http.sync", attributes: .concurrent)
    private let logger: Logger

    /// Creates routes serving nothing yet.
    public init(logger: Logger) { self.logger = logger }

    /// Makes `db` available on `/stream` under its path.
    public func serve(_ db: Database) {
        databases.withLock { $0[db.path] = (db, StreamSnapshotCache()) }
    }

    /// Knows `path` as a database that follows another primary: it cannot be streamed on (chained), so
    /// `/stream` answers 503 as upstream does for a replica.
    public func refuseFollower(_ path: String) {
        followed.withLock { _ = $0.insert(path) }
    }

    /// Sets what `/readyz` reports (503 until set).
    public func setHealthSource(_ source: any HealthSource) { health.withLock { $0 = source } }

    /// Sets the replicator behind `/status` (503 until set; it reads published values only, so it may be set before
    /// the replicator starts, and shows the leases being waited for).
    public func setReplicator(_ r: Replicator) { replicator.withLock { $0 = r } }

    /// Lets `POST /sync` run (503 until then): call it once the replicator has started.
    public func enableSync() { syncEnabled.withLock { $0 = true } }

    /// The longest `POST /sync?wait=1` may wait (`timeout` is capped to it).
    public static let maxSyncWait: Duration = .seconds(3600)

    public func respond(method: HTTPMethod, path: String, query: [String: String],
                        complete: @escaping @Sendable (SimpleHTTPResponse) -> Void) {
        guard path == "/sync" else { return complete(respond(method: method, path: path, query: query)) }
        guard method == .POST else { return complete(.text(.methodNotAllowed, "Method not allowed: use POST /sync")) }
        guard let r = replicator.current, syncEnabled.current else {
            return complete(.text(.serviceUnavailable, "not replicating yet: " + (health.current?.healthReport().reason ?? "starting")))
        }
        let wait = query["wait"].map { ["1", "true", ""].contains($0) } ?? false
        var timeout = Duration.seconds(30)
        if let t = query["timeout"] {
            guard let d = try? GoDuration.parse(t), d > .zero else {
                return complete(.text(.badRequest, "invalid timeout \(goQuote(t)): expected a positive duration such as 30s"))
            }
            timeout = min(d, Self.maxSyncWait)
        }
        let db = query["db"].map { $0.isEmpty ? nil : $0 } ?? nil
        syncQueue.async { [self, timeout] in
            let request: SyncRequest
            do { request = try r.requestSync(path: db) } catch {
                return complete(.text(.notFound, error.oneLine))
            }
            logger.info("sync requested over http\(db.map { " for \($0)" } ?? "")\(wait ? ", waiting up to \(GoDuration.format(timeout))" : "")")
            guard wait else { return complete(Self.json(.ok, request.report().encoded())) }
            poll(request, deadline: .now() + timeout.timeInterval, complete: complete)
        }
    }

    /// Answers once every replica holds its target (200) or at `deadline` (504 with the same report); checks every
    /// 50 ms on `syncQueue` without holding a thread in between.
    private func poll(_ request: SyncRequest, deadline: DispatchTime, complete: @escaping @Sendable (SimpleHTTPResponse) -> Void) {
        let report = request.report()
        if report.complete { return complete(Self.json(.ok, report.encoded())) }
        if DispatchTime.now() >= deadline {
            logger.warning("sync over http timed out; lagging: \(report.lagging.joined(separator: "; "))")
            return complete(Self.json(.gatewayTimeout, report.encoded()))
        }
        syncQueue.asyncAfter(deadline: .now() + 0.05) { [self] in poll(request, deadline: deadline, complete: complete) }
    }

    private static func json(_ status: HTTPResponseStatus, _ body: [UInt8]) -> SimpleHTTPResponse {
        SimpleHTTPResponse(status: status, contentType: "application/json", body: body)
    }

    public func respond(method: HTTPMethod, path: String, query: [String: String]) -> SimpleHTTPResponse {
        switch path {
        case "/status":
            guard method == .GET else { return .text(.methodNotAllowed, "Method not allowed: use GET /status") }
            guard let r = replicator.current else {
                return .text(.serviceUnavailable, "not replicating yet: " + (health.current?.healthReport().reason ?? "starting"))
            }
            return Self.json(.ok, r.statusReport().encoded())
        case "/metrics":
            replicator.current?.recordLagMetrics()
            return SimpleHTTPResponse(status: .ok, contentType: ReplicationMetrics.contentType,
                                      body: ReplicationMetrics.exposition())
        case "/healthz":
            return SimpleHTTPResponse(status: .ok, contentType: "application/json", body: Array("{\"status\":\"ok\"}\n".utf8))
        case "/readyz":
            let report = health.current?.healthReport()
                ?? HealthReport(ready: false, reason: "starting", databases: [])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let body = ((try? encoder.encode(report)).map(Array.init) ?? Array("{}".utf8)) + [0x0A]
            return SimpleHTTPResponse(status: report.ready ? .ok : .serviceUnavailable, contentType: "application/json",
                                      body: body)
        default:
            return .text(.notFound, "404 page not found")
        }
    }

    public func stream(query: [String: String], channel: any Channel) -> SimpleHTTPResponse? {
        let request: StreamRequest
        switch StreamRequest.parse(query) {
        case .failure(let response): return response
        case .success(let r): request = r
        }
        if followed.current.contains(request.path) { return .text(.serviceUnavailable, "No generation available") }
        guard let (db, cache) = databases.current[request.path] else { return .text(.notFound, "Database not found") }
        StreamSession(db: db, channel: channel, request: request, cache: cache, logger: logger).start()
        return nil
    }
}
