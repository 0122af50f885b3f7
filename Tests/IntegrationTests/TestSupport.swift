import Foundation
import Testing

/// Helpers for black-box tests of the built `launcher` and `example-writer` binaries.
enum TestSupport {
    /// Directory holding the built products (next to the test bundle).
    static var productsDirectory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    /// Path of the built `launcher`.
    static var launcher: String { productsDirectory.appendingPathComponent("launcher").path }
    /// Path of the built `example-writer`.
    static var exampleWriter: String { productsDirectory.appendingPathComponent("example-writer").path }

    /// A fresh temporary directory, removed by the caller with `cleanup`.
    static func makeTempDir(_ name: String = #function) throws -> String {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("launcher-test-\(safe)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Whether the suite runs under CI (where missing tools are failures, not skips).
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
}

/// A child process with its output captured to a file, killed on deinit if still running.
final class RunningProcess: @unchecked Sendable {
    // @unchecked: `process` is only touched by the test that owns this object.
    let process = Process()
    let outputPath: String

    /// Starts `executable` with `arguments`; stdout and stderr go to `outputPath`.
    init(_ executable: String, _ arguments: [String], outputPath: String, environment: [String: String]? = nil,
         currentDirectory: String? = nil) throws {
        self.outputPath = outputPath
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    var pid: Int32 { process.processIdentifier }

    /// The captured output so far.
    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Sends `signal`.
    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for exit up to `timeout` seconds; returns the exit status, or nil on timeout.
    @discardableResult
    func wait(timeout: TimeInterval = 60) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { return nil }
        return process.terminationStatus
    }

    /// Polls the output until it contains `text` or `timeout` passes.
    func waitForOutput(_ text: String, timeout: TimeInterval = 30) -> Bool {
        poll(timeout: timeout) { self.output.contains(text) }
    }
}

/// Polls `condition` every 20 ms until it is true or `timeout` seconds pass.
func poll(timeout: TimeInterval, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

/// Runs a command to completion (bounded by `timeout`) and returns (status, combined output).
@discardableResult
func runCommand(_ executable: String, _ arguments: [String], timeout: TimeInterval = 120,
                environment: [String: String]? = nil, currentDirectory: String? = nil) throws -> (status: Int32, output: String) {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString).log").path
    defer { try? FileManager.default.removeItem(atPath: out) }
    let p = try RunningProcess(executable, arguments, outputPath: out, environment: environment,
                               currentDirectory: currentDirectory)
    guard let status = p.wait(timeout: timeout) else {
        p.signal(SIGKILL)
        _ = p.wait(timeout: 5)
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)s:\n\(p.output)")
    }
    return (status, p.output)
}

/// Runs a shell command line through /bin/sh -c.
@discardableResult
func shell(_ command: String, timeout: TimeInterval = 120) throws -> (status: Int32, output: String) {
    try runCommand("/bin/sh", ["-c", command], timeout: timeout)
}

/// Runs the sqlite3 CLI on `db` with `sql` and returns its stdout (trimmed).
func sqlite(_ db: String, _ sql: String) throws -> String {
    let r = try runCommand("/usr/bin/sqlite3", [db, sql])
    guard r.status == 0 else { throw TestFailure("sqlite3 \(db) \(sql) failed: \(r.output)") }
    return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A test failure with a message.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
