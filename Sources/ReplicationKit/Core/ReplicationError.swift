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

    /// The cause at the bottom of the failure, kept as data through every layer (`wrapped` keeps it): code that
    /// must tell causes apart decides on this, never on the message text.
    public enum Cause: Sendable, Equatable {
        /// A system call failed with this errno.
        case errno(Int32)
        /// SQLite failed with this (extended) result code.
        case sqlite(Int32)
        /// A store answered with this HTTP status and its own error code (S3 `Code`, GCS `reason`, Azure
        /// `x-ms-error-code`), when it gave one.
        case http(status: Int, providerCode: String?)
        /// libcurl failed with this CURLcode (transport errors, and every SFTP failure).
        case curl(UInt32)
        /// A shared library opened at run time (libcurl) could not be loaded: its file name and the loader's reason.
        case library(name: String, reason: String)
    }

    /// What went wrong.
    public let code: Code
    /// One line for the user; never contains secrets.
    public let message: String
    /// The underlying cause, when one is known.
    public let cause: Cause?

    /// Creates an error.
    public init(_ code: Code, _ message: String, cause: Cause? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    /// Prefixes the message with context, keeping the code and the cause (`"snapshot: " + cause`).
    public func wrapped(_ context: String) -> ReplicationError {
        ReplicationError(code, "\(context): \(message)", cause: cause)
    }

    /// The cause carried by any error of the engine (nil for others).
    public static func cause(of error: any Error) -> Cause? {
        switch error {
        case let e as ReplicationError: return e.cause
        case let e as CurlError:
            if let s = e.httpStatus { return .http(status: s, providerCode: nil) }
            return e.curlCode.map { .curl($0.rawValue) }
        default: return nil
        }
    }
}

extension Error {
    /// The error's one-line text (the message of a ReplicationError, else its description).
    public var oneLine: String {
        if let e = self as? ReplicationError { return e.message }
        return String(describing: self)
    }
}
