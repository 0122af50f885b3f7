import Foundation
import Testing
@testable import ReplicationKit

/// The token cache every cloud identity uses, on a fake clock.
@Suite struct RefreshingCredentialTests {
    struct FetchFailed: Error {}

    @Test func fetchesOncePerLifetimeAndRefreshesBeforeExpiry() throws {
        let clock = Locked(Date(timeIntervalSince1970: 1_000_000))
        let fetches = Locked(0)
        let c = RefreshingCredential<String>(refreshMargin: .seconds(300), now: { clock.current }) {
            let n = fetches.withLock { $0 += 1; return $0 }
            return Expiring("token-\(n)", expiresAt: clock.current.addingTimeInterval(3600))
        }
        #expect(try c.get() == "token-1")
        for _ in 0..<100 { #expect(try c.get() == "token-1") }
        #expect(fetches.current == 1)
        clock.withLock { $0 = $0.addingTimeInterval(3600 - 301) }
        #expect(try c.get() == "token-1")
        clock.withLock { $0 = $0.addingTimeInterval(2) }  // inside the margin: replaced
        #expect(try c.get() == "token-2")
        #expect(fetches.current == 2)
        c.invalidate()
        #expect(try c.get() == "token-3")
    }

    @Test func aFailedRefreshKeepsAValidTokenAndRetriesNextTime() throws {
        let clock = Locked(Date(timeIntervalSince1970: 0))
        let fail = Locked(false)
        let c = RefreshingCredential<Int>(now: { clock.current }) {
            if fail.current { throw FetchFailed() }
            return Expiring(7, expiresAt: clock.current.addingTimeInterval(600))
        }
        #expect(try c.get() == 7)
        fail.withLock { $0 = true }
        clock.withLock { $0 = $0.addingTimeInterval(400) }  // inside the margin, not expired
        #expect(try c.get() == 7)
        clock.withLock { $0 = $0.addingTimeInterval(300) }  // expired
        #expect(throws: FetchFailed.self) { try c.get() }
        fail.withLock { $0 = false }
        #expect(try c.get() == 7)
    }

    @Test func neverExpiringIsFetchedOnce() throws {
        let fetches = Locked(0)
        let c = RefreshingCredential<String> { fetches.withLock { $0 += 1 }; return Expiring("static", expiresAt: nil) }
        DispatchQueue.concurrentPerform(iterations: 16) { _ in _ = try? c.get() }
        #expect(fetches.current == 1)
    }
}
