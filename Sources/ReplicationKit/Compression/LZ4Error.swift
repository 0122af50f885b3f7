import CLZ4

/// An error raised by the LZ4 frame codec (corrupt, truncated or otherwise unusable data).
public struct LZ4Error: Error, CustomStringConvertible, Sendable {
    /// Human-readable description of the failure, e.g. "truncated lz4 frame".
    public let message: String

    /// Creates an error carrying the given message.
    public init(_ message: String) {
        self.message = message
    }

    /// The error message.
    public var description: String { message }

    /// The error thrown when the input ends in the middle of a frame (or holds no frame at all).
    static let truncated = LZ4Error("truncated lz4 frame")

    /// Returns `code` unchanged, or throws an `LZ4Error` (prefixed by `what`) naming the liblz4 error it denotes.
    @discardableResult
    static func check(_ code: LZ4F_errorCode_t, _ what: String) throws -> LZ4F_errorCode_t {
        if LZ4F_isError(code) != 0 {
            throw LZ4Error("\(what): \(String(cString: LZ4F_getErrorName(code)))")
        }
        return code
    }
}
