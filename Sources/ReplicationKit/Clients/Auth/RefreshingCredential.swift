import Foundation

/// A short-lived credential (an OAuth2 access token, temporary AWS keys, an Azure AD token) as a fetch returned it.
public struct Expiring<Value: Sendable>: Sendable {
    /// The credential.
    public var value: Value
    /// When the issuer says it stops working; nil = never (static credentials).
    public var expiresAt: Date?

    /// Creates a credential.
    public init(_ value: Value, expiresAt: Date?) {
        self.value = value
        self.expiresAt = expiresAt
    }
}

/// Caches a short-lived credential and fetches a new one shortly before it expires, so every identity token is
/// fetched once per lifetime, not once per request, and replication never signs with an expired one.
///
/// `get()` blocks (the fetch is an HTTP call): callers are replica threads, never the cooperative pool. Concurrent
/// callers wait for one fetch instead of each starting their own. A failed fetch is not cached: the next call
/// tries again, and while the previous credential is still valid it is returned instead of the error.
public final class RefreshingCredential<Value: Sendable>: Sendable {
    /// How long before its expiry a credential is replaced.
    public let refreshMargin: Duration
    private let fetch: @Sendable () throws -> Expiring<Value>
    private let now: @Sendable () -> Date
    private let state = Locked<Expiring<Value>?>(nil)
    // Serialises fetches; never held together with `state`'s lock except to publish a result.
    private let fetching = NSLock()

    /// Creates a cache around `fetch`.
    /// - Parameters:
    ///   - refreshMargin: replace a credential this long before it expires (5 minutes, as the AWS and Google SDKs).
    ///   - now: the clock (tests fake it).
    ///   - fetch: obtains a new credential; its error is thrown from `get()` when no valid credential is cached.
    public init(refreshMargin: Duration = .seconds(300), now: @escaping @Sendable () -> Date = { Date() },
                fetch: @escaping @Sendable () throws -> Expiring<Value>) {
        self.refreshMargin = refreshMargin
        self.fetch = fetch
        self.now = now
    }

    /// The current credential, fetched first when there is none or it is within `refreshMargin` of its expiry.
    public func get() throws -> Value {
        if let v = fresh() { return v }
        fetching.lock()
        defer { fetching.unlock() }
        if let v = fresh() { return v }  // another caller fetched while this one waited
        do {
            let e = try fetch()
            state.withLock { $0 = e }
            return e.value
        } catch {
            // Still valid (only inside the margin): keep serving it, the next call retries the fetch.
            if let cached = state.current, let exp = cached.expiresAt, exp > now() { return cached.value }
            throw error
        }
    }

    /// Forgets the cached credential (e.g. after the server rejected it), so the next `get()` fetches anew.
    public func invalidate() { state.withLock { $0 = nil } }

    /// When the cached credential expires, for logs and tests; nil when none is cached or it never expires.
    public var expiresAt: Date? { state.current?.expiresAt }

    private func fresh() -> Value? {
        guard let cached = state.current else { return nil }
        guard let exp = cached.expiresAt else { return cached.value }
        let margin = Double(refreshMargin.components.seconds) + Double(refreshMargin.components.attoseconds) / 1e18
        return exp.timeIntervalSince(now()) > margin ? cached.value : nil
    }
}
