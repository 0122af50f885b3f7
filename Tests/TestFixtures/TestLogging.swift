import Foundation
import Logging

/// Log lines captured from a `Logger`, for tests that check what the engine logs.
public final class DBTestLogLines: @unchecked Sendable {
    public init() {}
    private let lock = NSLock()
    private var stored: [String] = []
    public func append(_ s: String) { lock.lock(); stored.append(s); lock.unlock() }
    public var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
    public func contains(_ s: String) -> Bool { lines.contains { $0.contains(s) } }
}

public struct DBTestLogHandler: LogHandler {
    public let sink: DBTestLogLines
    public init(sink: DBTestLogLines) { self.sink = sink }
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .debug
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    public func log(event: LogEvent) { sink.append(event.message.description) }
}
