import CLauncherShims
import Foundation
import Logging
import ReplicationKit

/// The version printed by `launcher version` and in the startup banner.
let launcherVersion = "0.1.0"

/// What `launcher version` prints: the version and the git commit of the build (`launcherCommit`).
let launcherVersionDescription = "\(launcherVersion) (commit \(launcherCommit))"

/// Entry point: bootstraps logging, dispatches to a subcommand, maps errors to exit codes.
@main
struct Launcher {
    static func main() {
        // Swift decodes argv as UTF-8 and replaces what is not: a non-UTF-8 path would silently become another one.
        if let bad = invalidUTF8Argument() {
            say("argument \(bad.index) is not valid UTF-8: \(bad.quoted); paths that are not UTF-8 are not supported (rename the file or directory)")
            exit(1)
        }
        let args = Array(CommandLine.arguments.dropFirst())
        // `replicate` (and `launcher -exec ...`, `launcher [flags] -- app`) collects its signals with sigwaitinfo:
        // block them now, before any thread exists, so that every thread inherits the mask.
        if ReplicateCommand.handles(args) { SupervisorSignals.blockForSupervision() }
        LoggingSystem.bootstrap { label in StdoutLogHandler(label: label) }
        // liblz4 allocates block-sized (4 MiB) buffers for every frame it decodes; serve them from the heap and
        // keep freed memory, instead of an mmap/munmap pair and fresh page faults for every shadow segment.
        launcher_tune_malloc()
        let code = run(args)
        exit(code)
    }

    /// The first command-line argument whose bytes are not UTF-8, with its position and a Go-style quoted form
    /// (`\xff` escapes) that shows the bytes as they are.
    static func invalidUTF8Argument() -> (index: Int, quoted: String)? {
        for i in 1..<Int(CommandLine.argc) {
            guard let p = CommandLine.unsafeArgv[i] else { continue }
            let bytes = Array(UnsafeBufferPointer(start: p, count: strlen(p))).map { UInt8(bitPattern: $0) }
            if String(validating: bytes, as: UTF8.self) != nil { continue }
            var q = "\""
            for b in bytes {
                switch b {
                case 0x20..<0x7f where b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\"): q.append(Character(UnicodeScalar(b)))
                case UInt8(ascii: "\""): q += "\\\""
                case UInt8(ascii: "\\"): q += "\\\\"
                default: q += "\\x" + String(b, radix: 16).leftPadded(2)
                }
            }
            return (i, q + "\"")
        }
        return nil
    }

    /// Runs the command line `args` (without the program name) and returns the exit status.
    static func run(_ args: [String]) -> Int32 {
        mapCredentialEnvironment()
        guard let first = args.first else {
            say(usage)
            return 1
        }
        let rest = Array(args.dropFirst())
        do {
            switch first {
            case "help", "-h", "-help", "--help":
                say(usage)
                return 0
            case "version", "-version", "--version":
                say(launcherVersionDescription)
                return 0
            case "replicate": return try ReplicateCommand.run(rest)
            case "restore": return try RestoreCommand.run(rest)
            case "generations": return try GenerationsCommand.run(rest)
            case "snapshots": return try SnapshotsCommand.run(rest)
            case "wal": return try WALCommand.run(rest)
            case "databases": return try DatabasesCommand.run(rest)
            case "status": return try StatusCommand.run(rest)
            case "sync": return try SyncCommand.run(rest)
            default:
                // `launcher -exec "app"` and `launcher -config x` are shorthand for `launcher replicate ...`.
                if first.hasPrefix("-") { return try ReplicateCommand.run(args) }
                say("launcher \(first): unknown command")
                say("Run 'launcher help' for the list of commands.")
                return 1
            }
        } catch let e as GoFlagError {
            switch e {
            case .helpRequested:
                return 0
            case .message(let m):
                say(m)
                return 1
            }
        } catch {
            say(error.oneLine)
            return 1
        }
    }

    /// Upstream's credential mapping (INTERFACES §2.7), done before any command: `LITESTREAM_ACCESS_KEY_ID` and
    /// `LITESTREAM_SECRET_ACCESS_KEY` are copied to `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` when those are not
    /// set at all. It changes the process environment, so an `-exec` child sees the AWS names too.
    static func mapCredentialEnvironment() {
        for (from, to) in [("LITESTREAM_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
                           ("LITESTREAM_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")] {
            if let value = getenv(from), getenv(to) == nil { setenv(to, value, 0) }
        }
    }

    static let usage = """
    launcher keeps SQLite databases continuously replicated (Litestream v0.4 compatible).

    Usage:

    \tlauncher <command> [arguments]

    The commands are:

    \tdatabases    list databases specified in config file
    \tgenerations  list available generations for a database
    \treplicate    runs a server to replicate databases
    \trestore      recovers database backup from a replica
    \tsnapshots    list available snapshots for a database
    \tstatus       shows positions, replica lag, errors and lease holders
    \tsync         asks the running launcher to sync now (and wait for its replicas)
    \tversion      prints the binary version
    \twal          list available WAL files for a database

    To run your app under the launcher (restore if missing, replicate, relay signals,
    final sync, exit with the app's status):

    \tlauncher [replicate flags] -exec "myapp serve"
    \tlauncher [replicate flags] -- myapp serve

    Run 'launcher <command> -h' for the flags of a command.
    """
}

extension String {
    /// Left-pads with zeros to `width` characters.
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
