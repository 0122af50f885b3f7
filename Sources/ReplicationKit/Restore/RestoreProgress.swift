#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// How a restore reports its progress.
public enum RestoreProgressMode: Sendable, Equatable {
    /// Nothing.
    case off
    /// One info log line every `interval` while the restore runs (the default: every 5 seconds).
    case log(interval: Duration)
    /// A single line on standard error, rewritten in place a few times a second (for a terminal).
    case terminal

    /// `.terminal` when standard error is a terminal, one log line every 5 seconds otherwise.
    public static var automatic: RestoreProgressMode {
        isatty(STDERR_FILENO) != 0 ? .terminal : .log(interval: .seconds(5))
    }
}

/// Bytes written and downloaded so far, and the rate, reported as `RestoreProgressMode` says.
///
/// Updated from the restoring thread only; cheap to call often (it looks at the clock and returns).
final class RestoreProgress {
    private let mode: RestoreProgressMode
    private let logger: Logger
    private let name: String
    /// Compressed bytes of every object the restore downloads, when known.
    private let total: UInt64?
    private let started = ContinuousClock.now
    private var lastReport: ContinuousClock.Instant
    private var printed = false
    /// The terminal line has been ended: the log lines of the WAL steps follow on their own lines.
    private var lineEnded = false
    /// Bytes written and compressed bytes read by the steps already finished.
    private var baseWritten: UInt64 = 0
    private var baseRead: UInt64 = 0
    private var written: UInt64 = 0
    private var read: UInt64 = 0

    init(mode: RestoreProgressMode, logger: Logger, name: String, total: UInt64?) {
        self.mode = mode
        self.logger = logger
        self.name = name
        self.total = total
        lastReport = started
    }

    /// Progress within the current step (the snapshot): cumulative counts of that step.
    func update(read stepRead: UInt64, written stepWritten: UInt64) {
        read = baseRead + stepRead
        written = baseWritten + stepWritten
        tick()
    }

    /// Ends a step (the snapshot, or one WAL index) that read and wrote these many bytes in all.
    func completeStep(read stepRead: UInt64, written stepWritten: UInt64) {
        baseRead += stepRead
        baseWritten += stepWritten
        read = baseRead
        written = baseWritten
        tick()
    }

    private func tick() {
        let now = ContinuousClock.now
        switch mode {
        case .off:
            return
        case .log(let interval):
            guard now - lastReport >= interval else { return }
            lastReport = now
            logger.info("restore progress: \(line(now))")
        case .terminal:
            guard !lineEnded, now - lastReport >= .milliseconds(250) else { return }
            lastReport = now
            draw("\r" + line(now) + "\u{1B}[K")
        }
    }

    /// Ends the terminal line (the last figures stay on screen); later steps are not drawn, since their log lines
    /// (`applied wal …`) go to the same terminal.
    func finish() {
        guard mode == .terminal, printed, !lineEnded else { return }
        lineEnded = true
        draw("\r" + line(ContinuousClock.now) + "\u{1B}[K\n")
    }

    private func draw(_ text: String) {
        printed = true
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(STDERR_FILENO, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            done += n
        }
        bytes.removeAll()
    }

    /// `restoring NAME: 123.4 MB written, 61.7 of 180.0 MB downloaded (34%), 150.2 MB/s`
    private func line(_ now: ContinuousClock.Instant) -> String {
        let seconds = max(Self.seconds(now - started), 0.001)
        var s = "restoring \(name): \(Self.mb(written)) MB written, "
        if let total, total > 0 {
            s += "\(Self.mb(read)) of \(Self.mb(total)) MB downloaded (\(min(100, read * 100 / total))%)"
        } else {
            s += "\(Self.mb(read)) MB downloaded"
        }
        return s + ", \(Self.mb(UInt64(Double(written) / seconds))) MB/s"
    }

    private static func mb(_ bytes: UInt64) -> String { String(format: "%.1f", Double(bytes) / 1e6) }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
