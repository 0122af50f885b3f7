import Foundation

/// A bounded set of threads that runs blocking I/O (replica uploads and listings, live stream sessions) for any
/// number of serial lanes.
///
/// One serial dispatch queue per replica put one thread per replica in curl as soon as a store stopped answering
/// (libdispatch adds a thread for each blocked queue: 203 threads for 200 replicas). Here a replica is a
/// `SerialLane`: its work still runs one item at a time and in order, but on at most `size` threads shared by every
/// lane of the pool. Pools are per kind of work (`shared(kind:)`: `database`, the replica type, or `stream`), so a
/// frozen S3 store cannot starve the databases, the file replicas or the live followers. Threads start on demand
/// and end after a minute idle.
///
/// The size is `LAUNCHER_IO_THREADS` (default 16) for every pool.
public final class IOPool: @unchecked Sendable {
    // @unchecked: every mutable property is guarded by `cond`.
    /// Most threads this pool runs at once.
    public let size: Int
    /// The pool's name (thread names, diagnostics).
    public let kind: String
    private let cond = NSCondition()
    private var ready: [SerialLane] = []
    private var readyHead = 0
    private var threads = 0
    private var idle = 0
    private let idleTimeout: TimeInterval

    /// Default number of threads per pool.
    public static let defaultSize = 16
    /// The environment variable that sets the size of every pool.
    public static let sizeVariable = "LAUNCHER_IO_THREADS"

    /// Creates a pool of at most `size` threads.
    public init(kind: String, size: Int, idleTimeout: TimeInterval = 60) {
        self.kind = kind
        self.size = max(1, size)
        self.idleTimeout = idleTimeout
    }

    private static let pools = Locked<[String: IOPool]>([:])

    /// The process-wide pool for `kind` (created on first use with the configured size).
    public static func shared(kind: String) -> IOPool {
        pools.withLock { p in
            if let pool = p[kind] { return pool }
            let pool = IOPool(kind: kind, size: configuredSize())
            p[kind] = pool
            return pool
        }
    }

    /// `LAUNCHER_IO_THREADS` when it is a positive number (at most 1,024), else the default.
    public static func configuredSize(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        guard let text = env[sizeVariable], let n = Int(text), n > 0 else { return defaultSize }
        return min(n, 1024)
    }

    /// Threads running now (busy or idle), for tests and diagnostics.
    public var threadCount: Int { cond.lock(); defer { cond.unlock() }; return threads }

    /// A serial timer queue for every lane's delayed work and timers: its handlers only enqueue work.
    static let timers = DispatchQueue(label: "launcher.io.timers")

    /// Makes `lane` runnable: an idle thread takes it, or a new one if the pool is not full.
    func enqueue(_ lane: SerialLane) {
        cond.lock()
        ready.append(lane)
        if idle > 0 {
            cond.signal()
        } else if threads < size {
            threads += 1
            let t = Thread { [self] in work() }
            t.name = "launcher-io-\(kind)"
            t.start()
        }
        cond.unlock()
    }

    private func work() {
        cond.lock()
        while true {
            while readyHead == ready.count {
                idle += 1
                let woken = cond.wait(until: Date(timeIntervalSinceNow: idleTimeout))
                idle -= 1
                if !woken && readyHead == ready.count {
                    threads -= 1
                    cond.unlock()
                    return
                }
            }
            let lane = ready[readyHead]
            readyHead += 1
            if readyHead > 64 && readyHead * 2 > ready.count {
                ready.removeFirst(readyHead)
                readyHead = 0
            }
            cond.unlock()
            lane.runOne()
            cond.lock()
        }
    }
}

/// A serial executor on an `IOPool`: work items run one at a time, in order, on the pool's threads. The
/// replacement for a private serial dispatch queue, with the same `async`, `asyncAfter`, `sync` and timers.
///
/// Two ways to run a body on the caller's thread with the lane held:
/// - `sync` waits only for the item running at the time, not for the items queued behind it, so the caller's body
///   runs ahead of them (never overlapping any). That is what stopping a replica and the final sync need:
///   exclusion from the upload in progress, without waiting for later ones.
/// - `syncInOrder` is `DispatchQueue.sync`: the body runs after everything queued before it. A database needs
///   that (its close must follow the open and first sync queued at startup). While the caller waits, no pool
///   thread is held: the lane is handed to the caller when its turn comes.
public final class SerialLane: @unchecked Sendable {
    // @unchecked: every mutable property is guarded by `cond`.
    /// The pool that runs this lane's work.
    public let pool: IOPool
    /// For diagnostics.
    public let label: String
    private let cond = NSCondition()
    private enum Item {
        case work(@Sendable () -> Void)
        /// A `syncInOrder` caller's turn: the lane passes to it, held (`running`) until its body ends.
        case handOff(HandOff)
    }
    private final class HandOff: @unchecked Sendable {
        // @unchecked: `given` is guarded by the lane's `cond`.
        var given = false
    }
    private var items: [Item] = []
    private var itemsHead = 0
    /// An item (async or sync) is executing.
    private var running = false
    /// The thread running the lane's current item or `sync` body (for `isCurrent`).
    private var owner: pthread_t?
    /// The lane is in the pool's ready list.
    private var scheduled = false

    /// A lane on `pool`.
    public init(label: String, pool: IOPool) {
        self.label = label
        self.pool = pool
    }

    /// Runs `work` after everything queued before it.
    public func async(_ work: @escaping @Sendable () -> Void) {
        cond.lock()
        items.append(.work(work))
        let schedule = !scheduled && !running
        if schedule { scheduled = true }
        cond.unlock()
        if schedule { pool.enqueue(self) }
    }

    /// Runs `work` on the lane after `delay`.
    public func asyncAfter(_ delay: Duration, _ work: @escaping @Sendable () -> Void) {
        IOPool.timers.asyncAfter(deadline: .now() + delay.timeInterval) { [self] in async(work) }
    }

    /// Runs `body` on the calling thread once the item running now (if any) is done, with the lane held, so it
    /// never overlaps another item; returns its result. Never call it from the lane's own work (deadlock).
    public func sync<T>(_ body: () throws -> T) rethrows -> T {
        cond.lock()
        while running { cond.wait() }
        running = true
        owner = pthread_self()
        cond.unlock()
        defer { finish(fromPool: false) }
        return try body()
    }

    /// Runs `body` on the calling thread after every item queued before it, with the lane held (what
    /// `DispatchQueue.sync` does); returns its result. An idle lane is taken at once. Never call it from the
    /// lane's own work (deadlock; `isCurrent` tells).
    public func syncInOrder<T>(_ body: () throws -> T) rethrows -> T {
        cond.lock()
        if running || itemsHead < items.count {
            let turn = HandOff()
            items.append(.handOff(turn))
            let schedule = !scheduled && !running
            if schedule { scheduled = true }
            if schedule {
                cond.unlock()
                pool.enqueue(self)
                cond.lock()
            }
            while !turn.given { cond.wait() }
            // `runOne` left `running` set for us.
        } else {
            running = true
        }
        owner = pthread_self()
        cond.unlock()
        defer { finish(fromPool: false) }
        return try body()
    }

    /// Whether the calling thread is running this lane's work now (an item, or a `sync` body).
    public var isCurrent: Bool {
        cond.lock(); defer { cond.unlock() }
        guard let o = owner else { return false }
        return pthread_equal(o, pthread_self()) != 0
    }

    /// Runs `handler` on the lane every `interval` until the timer is cancelled; a tick while the previous one is
    /// still waiting for the lane is dropped, so a lane stuck on a frozen store does not pile them up.
    public func makeTimer(every interval: Duration, _ handler: @escaping @Sendable () -> Void) -> any DispatchSourceTimer {
        let pending = Locked(false)
        let t = DispatchSource.makeTimerSource(queue: IOPool.timers)
        t.schedule(deadline: .now() + interval.timeInterval, repeating: interval.timeInterval)
        t.setEventHandler { [self] in
            if pending.withLock({ p in defer { p = true }; return p }) { return }
            async {
                pending.withLock { $0 = false }
                handler()
            }
        }
        t.resume()
        return t
    }

    /// Called by a pool thread: runs the next item, then hands the lane back to the pool if more are queued.
    func runOne() {
        cond.lock()
        guard !running, itemsHead < items.count else {
            // A `sync` holds the lane (it reschedules when it finishes), or nothing is left.
            scheduled = false
            cond.unlock()
            return
        }
        let item = items[itemsHead]
        itemsHead += 1
        if itemsHead == items.count {
            items.removeAll(keepingCapacity: true)
            itemsHead = 0
        }
        running = true
        switch item {
        case .work(let work):
            owner = pthread_self()
            cond.unlock()
            work()
            finish(fromPool: true)
        case .handOff(let turn):
            // The lane passes to the waiting caller, still `running`; its `finish` schedules what follows.
            scheduled = false
            turn.given = true
            cond.broadcast()
            cond.unlock()
        }
    }

    /// Ends an item. After a pool thread's item the lane goes back to the end of the pool's ready list if more is
    /// queued (so lanes take turns); after a `sync`, it is scheduled unless it already is.
    private func finish(fromPool: Bool) {
        cond.lock()
        running = false
        owner = nil
        let more = itemsHead < items.count
        var enqueue = false
        if fromPool {
            if more { enqueue = true } else { scheduled = false }
        } else if more && !scheduled {
            scheduled = true
            enqueue = true
        }
        cond.broadcast()
        cond.unlock()
        if enqueue { pool.enqueue(self) }
    }
}
