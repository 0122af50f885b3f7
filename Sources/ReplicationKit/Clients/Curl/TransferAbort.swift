/// A process-wide stop for every network transfer: once triggered (the shutdown deadline passed), each libcurl
/// transfer in flight fails at its next progress callback (at least once a second) and new ones fail at their first,
/// so the threads blocked in them return and the final sync reports what did not make it instead of hanging.
public enum TransferAbort {
    private static let state = Locked<String?>(nil)

    /// Aborts every transfer from now on, with `reason` in their errors.
    public static func trigger(reason: String) { state.withLock { $0 = reason } }

    /// Whether transfers are being aborted.
    public static var isTriggered: Bool { state.current != nil }

    /// Why (empty when not triggered).
    public static var reason: String { state.current ?? "" }

    /// Lets transfers run again (tests).
    public static func reset() { state.withLock { $0 = nil } }
}
