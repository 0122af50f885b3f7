import CLauncherShims
import Foundation
import ReplicationKit

/// Starts the exec process with `posix_spawn` (swift-subprocess `process_shims.c`, tini `spawn`).
///
/// The child gets: the launcher's environment byte for byte plus `LITESTREAM_DB_PATH` (replacing an inherited
/// one), stdin/stdout/stderr inherited, every other descriptor closed, default dispositions for all signals, an
/// empty signal mask, and a process group of its own (so relayed signals reach the app and everything it starts
/// in that group). When stdin is our controlling terminal and we are its foreground group, the child's group
/// becomes the foreground group, as a shell would do.
enum Spawner {
    /// A spawn failure: the mapped status (127/126) and a Go-style sentence.
    struct Failure: Error {
        var status: TerminationStatus
        var message: String
    }

    /// A started child.
    struct Spawned {
        /// The child's pid, also its process-group id.
        var pid: pid_t
        /// Whether the child's group was made the terminal's foreground group (take it back when it exits).
        var tookTerminal: Bool
    }

    /// Spawns `argv` (`argv[0]` looked up in `$PATH` unless it contains a `/`).
    static func spawn(argv: [String], extraEnvironment: [(name: String, value: String)]) throws(Failure) -> Spawned {
        precondition(!argv.isEmpty, "the command was validated as non-empty")

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Belt and braces: everything we open is O_CLOEXEC, and the child closes whatever is left above 2.
        launcher_spawn_addclosefrom(&actions, 3)
        let handsOverTerminal = isatty(STDIN_FILENO) == 1 && tcgetpgrp(STDIN_FILENO) == getpgrp()
        if handsOverTerminal { launcher_spawn_addtcsetpgrp(&actions, STDIN_FILENO) }

        let cArgv = argv.map { strdup($0) } + [nil]
        defer { for p in cArgv { free(p) } }
        // The environment is passed through as raw C strings, so non-UTF-8 values arrive unchanged.
        var owned: [UnsafeMutablePointer<CChar>?] = []
        defer { for p in owned { free(p) } }
        var envp: [UnsafeMutablePointer<CChar>?] = []
        let overridden = extraEnvironment.map { Array(($0.name + "=").utf8CString.dropLast()) }
        let environment: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        if var e = environment {
            while let entry = e.pointee {
                let isOverridden = overridden.contains { prefix in
                    prefix.withUnsafeBufferPointer { strncmp(entry, $0.baseAddress!, prefix.count) == 0 }
                }
                if !isOverridden { envp.append(entry) }
                e += 1
            }
        }
        for (name, value) in extraEnvironment {
            let p = strdup("\(name)=\(value)")
            owned.append(p)
            envp.append(p)
        }
        envp.append(nil)

        var pid: pid_t = 0
        let program = argv[0]
        let rc: Int32 = cArgv.withUnsafeBufferPointer { argvBuf in
            envp.withUnsafeBufferPointer { envBuf in
                let a = UnsafeMutablePointer(mutating: argvBuf.baseAddress!)
                let e = UnsafeMutablePointer(mutating: envBuf.baseAddress!)
                if program.contains("/") {
                    return posix_spawn(&pid, program, &actions, &attr, a, e)
                }
                return posix_spawnp(&pid, program, &actions, &attr, a, e)
            }
        }
        if rc == 0 { return Spawned(pid: pid, tookTerminal: handsOverTerminal) }
        throw failure(program: program, errno: rc)
    }

    /// Makes the launcher's own group the terminal's foreground group again (after the child exited), so that a
    /// second Ctrl-C reaches the launcher during the final sync. SIGTTOU is ignored, so this works from the
    /// background.
    static func reclaimTerminal() {
        _ = tcsetpgrp(STDIN_FILENO, getpgrp())
    }

    /// Maps a spawn errno to 127/126 and Go's wording (`exec: "x": executable file not found in $PATH`).
    static func failure(program: String, errno code: Int32) -> Failure {
        let status: TerminationStatus = (code == ENOENT || code == ENOTDIR) ? .notFound : .notExecutable
        if status == .notFound && !program.contains("/") {
            return Failure(status: status,
                           message: "cannot start exec command: exec: \(goQuote(program)): executable file not found in $PATH")
        }
        var reason = String(cString: strerror(code))
        if let first = reason.first { reason = first.lowercased() + reason.dropFirst() }
        return Failure(status: status, message: "cannot start exec command: fork/exec \(program): \(reason)")
    }
}
