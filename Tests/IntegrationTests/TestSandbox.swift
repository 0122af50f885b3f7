import Foundation
import Testing

/// Parent of the black-box `-exec` suites. Serialized: they start real process trees and signal them, and the
/// machine has 2 cores; every case is bounded by explicit timeouts.
@Suite(.serialized) enum ExecTests {}

/// The one scratch area of every black-box test: a temporary directory (symlinks resolved, so the absolute paths
/// the launcher prints compare equal to ours), the processes started in it with their logs, config and script
/// writers. `cleanup()` kills whatever still runs and removes the directory; use `defer { sb.cleanup() }`.
/// The servers the tests talk to are found through `TestServers`; outputs are scanned with
/// `TestServers.expectNoSecrets`.
final class TestSandbox: @unchecked Sendable {
    // @unchecked: only touched by the test that owns it.
    let dir: String
    private var processes: [RunningProcess] = []

    init(_ name: String = #function) throws {
        dir = URL(fileURLWithPath: try TestSupport.makeTempDir(name)).resolvingSymlinksInPath().path
        // Other users (the unprivileged replicate test) must be able to traverse it.
        chmod(dir, 0o755)
    }

    /// The layout of the `-exec` suites: a `data/` directory for the default database `db`.
    static func exec(_ name: String = #function) throws -> TestSandbox {
        let sb = try TestSandbox(name)
        try FileManager.default.createDirectory(atPath: sb.path("data"), withIntermediateDirectories: true)
        return sb
    }

    func path(_ name: String) -> String { dir + "/" + name }
    func url(_ name: String) -> String { "file://" + path(name) }

    /// The default database and file replica of the `-exec` suites.
    var db: String { path("data/app.db") }
    var replica: String { path("replica") }

    /// Writes `litestream.yml` with `dbs` (paths as written, relative ones resolve against the launcher's
    /// working directory) each replicated to `<dir>/replica-<i>` (the first to `<dir>/replica`); returns its path.
    @discardableResult
    func writeConfig(dbs: [String]? = nil, syncInterval: String = "1h", top: String = "") throws -> String {
        var text = top.isEmpty ? "" : top + "\n"
        text += "dbs:\n"
        for (i, d) in (dbs ?? [db]).enumerated() {
            text += """
              - path: \(d)
                replicas:
                  - path: \(i == 0 ? replica : path("replica-\(i)"))
                    sync-interval: \(syncInterval)

            """
        }
        let p = path("litestream.yml")
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// Writes an executable `/bin/sh` script and returns its path.
    @discardableResult
    func writeScript(_ name: String, _ body: String) throws -> String {
        let p = path(name)
        try ("#!/bin/sh\n" + body + "\n").write(toFile: p, atomically: true, encoding: .utf8)
        chmod(p, 0o755)
        return p
    }

    /// Starts `executable arguments` in the sandbox directory (with `environment`, ours when nil); combined
    /// output goes to `<dir>/<log>`. The process is SIGKILLed at `cleanup()` if still running.
    func start(_ executable: String, _ arguments: [String], log: String = "launcher.log",
               environment: [String: String]? = nil) throws -> RunningProcess {
        let p = try RunningProcess(executable, arguments, outputPath: path(log), environment: environment,
                                   currentDirectory: dir)
        processes.append(p)
        return p
    }

    /// Starts the launcher with `arguments`.
    func launch(_ arguments: [String], log: String = "launcher.log") throws -> RunningProcess {
        try start(TestSupport.launcher, arguments, log: log)
    }

    /// Runs the launcher to completion (bounded); throws when it does not exit in time.
    func run(_ arguments: [String], timeout: TimeInterval = 30, log: String = "launcher.log") throws -> (status: Int32, output: String) {
        let p = try launch(arguments, log: log)
        guard let status = p.wait(timeout: timeout) else {
            p.signal(SIGKILL)
            _ = p.wait(timeout: 5)
            throw TestFailure("launcher \(arguments) did not exit within \(timeout)s:\n\(p.output)")
        }
        return (status, p.output)
    }

    /// The trimmed contents of a file in the sandbox, nil when absent.
    func read(_ name: String) -> String? {
        (try? String(contentsOfFile: path(name), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Polls until `name` exists and its trimmed content satisfies `condition`.
    func waitForFile(_ name: String, timeout: TimeInterval = 10, _ condition: (String) -> Bool = { _ in true }) -> Bool {
        poll(timeout: timeout) { read(name).map(condition) ?? false }
    }

    /// Restores the default replica into `<dir>/<output>` with `launcher restore` and returns the row count of `t`.
    func restoredRowCount(_ output: String = "restored.db") throws -> Int {
        let r = try runCommand(TestSupport.launcher, ["restore", "-o", path(output), "file://" + replica], timeout: 60)
        guard r.status == 0 else { throw TestFailure("restore failed (\(r.status)):\n\(r.output)") }
        return Int(try sqlite(path(output), "SELECT count(*) FROM t")) ?? -1
    }

    /// Kills whatever is still running and removes the directory.
    func cleanup() {
        for p in processes where p.process.isRunning {
            p.signal(SIGKILL)
            _ = p.wait(timeout: 10)
        }
        processes.removeAll()
        // A test may have left a read-only directory behind; root removes it anyway, but be tidy.
        _ = try? shell("chmod -R u+rwX '\(dir)'", timeout: 30)
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Lines of the launcher's output that are not empty.
func nonEmptyLines(_ text: String) -> [Substring] {
    text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
}
