import Foundation

/// The stored lease object and the store's version of it (an S3/Azure ETag, a GCS generation, a file digest).
public struct LeaseObject: Sendable, Equatable {
    /// The object's bytes (a JSON `LeaseRecord`).
    public var data: [UInt8]
    /// The store's version token, passed back to `replaceLease`/`deleteLease` as the compare-and-swap condition.
    public var version: String

    /// Creates a lease object.
    public init(data: [UInt8], version: String) {
        self.data = data
        self.version = version
    }
}

/// One lease object on a replica, changed only through the store's own compare-and-swap.
///
/// A write whose condition does not hold throws `ReplicationError(.conflict)`; any other failure is `.io` (retry).
/// Methods block: call them from a dedicated thread.
public protocol LeaseStore: AnyObject, Sendable {
    /// Where the lease object lives, for logs (`s3://bucket/prefix/lease.json`); never contains secrets.
    var location: String { get }
    /// The current lease object; nil when there is none.
    func readLease() throws -> LeaseObject?
    /// Creates the object only if none exists (`If-None-Match: *`); returns its version.
    func createLease(_ data: [UInt8]) throws -> String
    /// Replaces the object only if its version is still `version` (`If-Match`); returns the new version.
    func replaceLease(_ data: [UInt8], ifMatch version: String) throws -> String
    /// Deletes the object only if its version is still `version`; an object already gone is not an error.
    func deleteLease(ifMatch version: String) throws
}

/// A replica client that can keep a lease object beside its data.
public protocol LeaseCapableClient: ReplicaClient {
    /// A store for the lease object `<replica root>/lease.json`; requests give up after about `timeout`, so a
    /// renewal never outlives the time it has to prove the lease.
    func leaseStore(timeout: Duration) throws -> any LeaseStore
}

/// The lease object's name under the replica root.
public enum LeasePaths {
    /// `lease.json`
    public static let object = "lease.json"
}
