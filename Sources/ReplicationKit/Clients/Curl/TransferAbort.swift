#if canImport(Glibc)
import Glibc
#endif

/// A process-wide stop for every network transfer: once triggered (the shutdown deadline passed), each libcurl
/// transfer in flight fails at its next progress callback (at least once a second) and new ones fail at their first,
/// so the threads blocked in them return and the final sync reports what did not make it instead of hanging.
///
/// `whileAllowed` adds a per-thread condition: the lease fence runs replica writes under it, so an upload that is
/// in flight when the lease stops being provable is cut off too, not only the next one.
public enum TransferAbort {
    private static let state = Locked<String?>(nil)

    /// Aborts every transfer from now on, with `reason` in their errors.
    public static func trigger(reason: String) { state.withLock { $0 = reason } }

    /// Whether transfers are being aborted process-wide.
    public static var isTriggered: Bool { state.current != nil }

    /// Why (empty when not triggered).
    public static var reason: String { state.current ?? "" }

    /// Lets transfers run again (tests).
    public static func reset() { state.withLock { $0 = nil } }

    /// Why the transfer running on this thread must stop now (process-wide or this thread's condition), or nil.
    static func reasonToStop() -> String? {
        if let r = state.current { return r }
        guard let raw = pthread_getspecific(key) else { return nil }
        return Unmanaged<Condition>.fromOpaque(raw).takeUnretainedValue().check()
    }

    /// Runs `body` with `condition` consulted by every transfer on this thread: a non-nil answer aborts the
    /// transfer with that reason. Nests (the inner condition replaces the outer one while it runs).
    public static func whileAllowed<T>(_ condition: @escaping () -> String?, _ body: () throws -> T) rethrows -> T {
        let previous = pthread_getspecific(key)
        let box = Unmanaged.passRetained(Condition(condition))
        pthread_setspecific(key, box.toOpaque())
        defer {
            pthread_setspecific(key, previous)
            box.release()
        }
        return try body()
    }

    private final class Condition {
        let check: () -> String?
        init(_ check: @escaping () -> String?) { self.check = check }
    }

    // A process-lifetime key; the values are owned by `whileAllowed` frames, so no destructor.
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()
}
