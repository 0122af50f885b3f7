import Foundation
import Testing
@testable import ReplicationKit

/// The bounded I/O pool and its serial lanes: order and mutual exclusion within a lane, the thread bound across
/// lanes (also while every thread is blocked, as in curl on a frozen store), `sync`, timers, idle threads ending.
@Suite struct IOPoolTests {
    /// Polls `condition` until it holds or `seconds` pass.
    private func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(2000)
        }
        return condition()
    }

    /// Counts work running at once, overall and per lane.
    final class Tracker: @unchecked Sendable {
        private let lock = NSLock()
        private var running = 0
        private(set) var maxRunning = 0
        private var perLane: [Int: Int] = [:]
        private(set) var overlapInLane = false
        private(set) var order: [Int: [Int]] = [:]
        private(set) var done = 0

        func enter(lane: Int, item: Int) {
            lock.lock(); defer { lock.unlock() }
            running += 1
            maxRunning = max(maxRunning, running)
            perLane[lane, default: 0] += 1
            if perLane[lane]! > 1 { overlapInLane = true }
            order[lane, default: []].append(item)
        }

        func leave(lane: Int) {
            lock.lock(); defer { lock.unlock() }
            running -= 1
            perLane[lane]! -= 1
            done += 1
        }

        var finished: Int { lock.lock(); defer { lock.unlock() }; return done }
    }

    @Test func lanesRunInOrderOneAtATimeOnBoundedThreads() throws {
        let pool = IOPool(kind: "test-order", size: 3)
        let t = Tracker()
        let lanes = (0..<20).map { SerialLane(label: "lane-\($0)", pool: pool) }
        for item in 0..<25 {
            for (n, lane) in lanes.enumerated() {
                lane.async {
                    t.enter(lane: n, item: item)
                    usleep(UInt32.random(in: 0...200))
                    t.leave(lane: n)
                }
            }
        }
        #expect(eventually { t.finished == 20 * 25 })
        #expect(!t.overlapInLane, "two items of one lane ran at once")
        #expect(t.maxRunning <= 3, "more items ran at once than the pool has threads")
        #expect(t.maxRunning >= 2, "the lanes did not run in parallel")
        for n in 0..<20 { #expect(t.order[n] == Array(0..<25), "lane \(n) ran out of order") }
        #expect(pool.threadCount <= 3)
    }

    /// Every thread blocked (a frozen store): the pool does not grow, and the other lanes wait instead.
    @Test func blockedWorkDoesNotGrowThePool() throws {
        let pool = IOPool(kind: "test-blocked", size: 4)
        let gate = DispatchSemaphore(value: 0)
        let started = Locked(0), finished = Locked(0)
        let lanes = (0..<40).map { SerialLane(label: "frozen-\($0)", pool: pool) }
        for lane in lanes {
            lane.async {
                started.withLock { $0 += 1 }
                gate.wait()
                finished.withLock { $0 += 1 }
            }
        }
        #expect(eventually { started.current == 4 })
        usleep(100_000)  // give a wrongly unbounded pool the chance to start more
        #expect(started.current == 4, "\(started.current) items started with 4 threads")
        #expect(pool.threadCount == 4)
        for _ in 0..<40 { gate.signal() }
        #expect(eventually { finished.current == 40 })
        #expect(pool.threadCount <= 4)
    }

    @Test func syncWaitsForTheRunningItemAndRunsOnTheCaller() throws {
        let pool = IOPool(kind: "test-sync", size: 2)
        let lane = SerialLane(label: "sync", pool: pool)
        let t = Tracker()
        let gate = DispatchSemaphore(value: 0)
        let inFirst = DispatchSemaphore(value: 0)
        lane.async { t.enter(lane: 0, item: 0); inFirst.signal(); gate.wait(); t.leave(lane: 0) }
        inFirst.wait()
        let caller = Thread.current
        let released = Locked(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { released.withLock { $0 = true }; gate.signal() }
        let ranOn: Thread = lane.sync {
            #expect(released.current, "sync ran while the first item was still running")
            t.enter(lane: 0, item: 1)
            lane.async { t.enter(lane: 0, item: 3); t.leave(lane: 0) }  // queued during the sync: runs after it
            t.leave(lane: 0)
            return Thread.current
        }
        #expect(ranOn === caller)
        lane.async { t.enter(lane: 0, item: 4); t.leave(lane: 0) }
        #expect(eventually { t.finished == 4 })
        #expect(t.order[0] == [0, 1, 3, 4])
        #expect(!t.overlapInLane)
    }

    /// `syncInOrder` is `DispatchQueue.sync`: the body follows everything queued before it (a database's close
    /// after the open queued at startup), runs on the caller, and holds no pool thread while it waits, so callers
    /// waiting on many lanes of a one-thread pool still get through.
    @Test func syncInOrderRunsAfterQueuedItemsOnTheCaller() throws {
        let pool = IOPool(kind: "test-sync-in-order", size: 1)
        let lane = SerialLane(label: "in-order", pool: pool)
        let t = Tracker()
        let gate = DispatchSemaphore(value: 0)
        let inFirst = DispatchSemaphore(value: 0)
        lane.async { t.enter(lane: 0, item: 0); inFirst.signal(); gate.wait(); t.leave(lane: 0) }
        inFirst.wait()
        lane.async {
            #expect(lane.isCurrent)
            t.enter(lane: 0, item: 1); t.leave(lane: 0)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { gate.signal() }
        let caller = Thread.current
        #expect(!lane.isCurrent)
        let ranOn: Thread = lane.syncInOrder {
            #expect(lane.isCurrent)
            t.enter(lane: 0, item: 2)
            lane.async { t.enter(lane: 0, item: 4); t.leave(lane: 0) }  // queued during the body: runs after it
            t.leave(lane: 0)
            return Thread.current
        }
        #expect(ranOn === caller)
        #expect(!lane.isCurrent)
        #expect(t.order[0]?.prefix(3) == [0, 1, 2], "the body ran before an item queued ahead of it")
        #expect(eventually { t.finished == 4 })
        #expect(t.order[0] == [0, 1, 2, 4])
        #expect(!t.overlapInLane)

        // An idle lane is taken at once, on the caller's thread.
        #expect(lane.syncInOrder { Thread.current } === caller)

        // Twenty callers at once, each behind a queued item of its own lane, on a pool of one thread; each body
        // needs that thread for an item of another lane. A caller given its turn holds no pool thread, or the
        // first body would wait forever.
        let lanes = (0..<20).map { SerialLane(label: "wait-\($0)", pool: pool) }
        let other = SerialLane(label: "other", pool: pool)
        let blocker = DispatchSemaphore(value: 0)
        lanes[0].async { blocker.wait() }
        for l in lanes { l.async { t.enter(lane: 1, item: 0); t.leave(lane: 1) } }
        let bodies = Locked(0)
        let group = DispatchGroup()
        for l in lanes {
            DispatchQueue.global().async(group: group) {
                l.syncInOrder {
                    let ran = DispatchSemaphore(value: 0)
                    other.async { ran.signal() }
                    if ran.wait(timeout: .now() + 10) == .success { bodies.withLock { $0 += 1 } }
                }
            }
        }
        blocker.signal()
        #expect(group.wait(timeout: .now() + 30) == .success)
        #expect(bodies.current == 20)
        #expect(pool.threadCount <= 1)
    }

    @Test func timerTicksDoNotPileUpOnABlockedLane() throws {
        let pool = IOPool(kind: "test-timer", size: 1)
        let lane = SerialLane(label: "timer", pool: pool)
        let ticks = Locked(0)
        let gate = DispatchSemaphore(value: 0)
        lane.async { gate.wait() }  // the lane is stuck for a while
        let timer = lane.makeTimer(every: .milliseconds(5)) { ticks.withLock { $0 += 1 } }
        defer { timer.cancel() }
        usleep(200_000)  // about 40 ticks while blocked
        gate.signal()
        #expect(eventually { ticks.current >= 1 })
        let afterRelease = ticks.current
        #expect(afterRelease <= 2, "\(afterRelease) ticks ran at once after the lane was free")
        #expect(eventually { ticks.current >= afterRelease + 3 }, "the timer keeps ticking")
    }

    @Test func idleThreadsEnd() throws {
        let pool = IOPool(kind: "test-idle", size: 3, idleTimeout: 0.1)
        let lanes = (0..<6).map { SerialLane(label: "idle-\($0)", pool: pool) }
        let done = Locked(0)
        for lane in lanes { lane.async { usleep(20_000); done.withLock { $0 += 1 } } }
        #expect(eventually { done.current == 6 })
        #expect(eventually { pool.threadCount == 0 }, "\(pool.threadCount) threads still running")
        lanes[0].async { done.withLock { $0 += 1 } }
        #expect(eventually { done.current == 7 }, "a pool whose threads ended starts one again")
    }

    @Test func sizeComesFromTheEnvironment() {
        #expect(IOPool.configuredSize([:]) == IOPool.defaultSize)
        #expect(IOPool.configuredSize(["LAUNCHER_IO_THREADS": "4"]) == 4)
        #expect(IOPool.configuredSize(["LAUNCHER_IO_THREADS": "0"]) == IOPool.defaultSize)
        #expect(IOPool.configuredSize(["LAUNCHER_IO_THREADS": "lots"]) == IOPool.defaultSize)
        #expect(IOPool.configuredSize(["LAUNCHER_IO_THREADS": "100000"]) == 1024)
        // The launcher refuses a value it cannot use, naming it, instead of falling back silently.
        #expect(throws: Never.self) { try Replicator.checkEnvironment(["LAUNCHER_IO_THREADS": "32", "LAUNCHER_SYNC_CONCURRENCY": "8"]) }
        for bad in ["0", "lots", "2000", ""] {
            do {
                try Replicator.checkEnvironment(["LAUNCHER_IO_THREADS": bad])
                Issue.record("LAUNCHER_IO_THREADS=\(bad) accepted")
            } catch {
                #expect(error.oneLine.contains("LAUNCHER_IO_THREADS=\"\(bad)\": want a whole number from 1 to 1024"), "\(error.oneLine)")
            }
        }
        #expect(throws: (any Error).self) { try Replicator.checkEnvironment(["LAUNCHER_SYNC_CONCURRENCY": "-1"]) }
    }
}
