/// An error a user can act on: one line naming what is at fault (file, key, URL) and why.
public struct ReplicationError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure, for callers that branch on it.
    public enum Code: Sendable, Equatable {
        case notFound
        case invalidInput
        case corrupt
        case io
        case sqlite
        /// SQLite reported SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock; retrying may succeed.
        case busy
        case config
        case conflict
        case cancelled
        case other
    }

    /// What went wrong.
    public let code: Code
    /// One line for the user; never contains secrets.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// Prefixes the message with context, keeping the code (`"snapshot: " + cause`).
    public func wrapped(_ context: String) -> ReplicationError {
        ReplicationError(code, "\(context): \(message)")
    }
}

extension Error {
    /// The error's one-line text (the message of a ReplicationError, else its description).
    public var oneLine: String {
        if let e = self as? ReplicationError { return e.message }
        return String(describing: self)
    }
}
