#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// Gives the heap's free pages back to the kernel (glibc `malloc_trim(0)`) once databases have gone idle.
///
/// glibc returns memory only from the top of the heap, and only past a threshold; the pages of free chunks between
/// live ones stay resident. Start-up is a burst (every database opens, syncs and snapshots at once), and when the
/// databases then go idle and close their spare connections, megabytes of such holes are left between the objects
/// that live on. Each database asks for a trim when it releases its idle connections; the requests of a burst
/// collapse into one trim, `quiet` after the last of them (or `maxWait` after the first, if they never stop).
/// It runs on a queue of its own: `malloc_trim` walks every arena and must not hold up a database or the pool.
public enum HeapTrim {
    /// Quiet time after the last request before the trim runs.
    static let quiet: Duration = .seconds(1)
    /// Longest a request waits while requests keep coming.
    static let maxWait: Duration = .seconds(10)

    private struct State {
        var first: ContinuousClock.Instant?
        var last: ContinuousClock.Instant?
        var scheduled = false
        var runs = 0
    }

    private static let state = Locked(State())
    private static let queue = DispatchQueue(label: "launcher.heap-trim", qos: .utility)

    /// glibc's `malloc_trim`, looked up once (nil on a C library without it).
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
#if canImport(Glibc)
        // RTLD_DEFAULT is a null handle in glibc: search the process's global symbols (libc's among them).
        guard let sym = dlsym(nil, "malloc_trim") else { return nil }
        return unsafeBitCast(sym, to: (@convention(c) (Int) -> Int32).self)
#else
        return nil
#endif
    }()

    /// Asks for a trim soon; requests made before it runs share it.
    public static func request() {
        let now = ContinuousClock.now
        let schedule = state.withLock { s -> Bool in
            s.last = now
            if s.first == nil { s.first = now }
            if s.scheduled { return false }
            s.scheduled = true
            return true
        }
        if schedule { queue.asyncAfter(deadline: .now() + quiet.timeInterval) { check() } }
    }

    /// Trims when the requests have been quiet long enough (or waited `maxWait`), else looks again later.
    private static func check() {
        let now = ContinuousClock.now
        // nil: trim now; else the time left to wait.
        let wait = state.withLock { s -> Duration? in
            let (first, last) = (s.first ?? now, s.last ?? now)
            let quietLeft = quiet - (now - last)
            if quietLeft > .zero && now - first < maxWait { return quietLeft }
            (s.first, s.last, s.scheduled) = (nil, nil, false)
            return nil
        }
        if let w = wait {
            queue.asyncAfter(deadline: .now() + max(w, .milliseconds(10)).timeInterval) { check() }
            return
        }
        _ = mallocTrim?(0)
        state.withLock { $0.runs += 1 }
    }

    /// Trims run so far (for tests).
    static var runs: Int { state.withLock { $0.runs } }
}
