import CLauncherShims

/// How the exec process ended, and the launcher exit code it maps to (tini's contract).
///
/// | Child                               | Launcher exit code |
/// |-------------------------------------|--------------------|
/// | exited with code N                  | N                  |
/// | killed by signal N                  | 128 + N            |
/// | program not found (ENOENT)          | 127                |
/// | found but not executable (EACCES…)  | 126                |
enum TerminationStatus: Equatable, Sendable, CustomStringConvertible {
    /// `exit(code)`.
    case exited(Int32)
    /// Killed by a signal.
    case signaled(Int32)
    /// `posix_spawn` failed: the program does not exist (127).
    case notFound
    /// `posix_spawn` failed: the program exists but cannot be executed (126).
    case notExecutable

    /// Decodes a `waitpid` status word; nil for a stop/continue report.
    init?(waitStatus status: Int32) {
        if launcher_wifexited(status) != 0 {
            self = .exited(launcher_wexitstatus(status))
        } else if launcher_wifsignaled(status) != 0 {
            self = .signaled(launcher_wtermsig(status))
        } else {
            return nil
        }
    }

    /// The exit code the launcher passes on.
    var exitCode: Int32 {
        switch self {
        case .exited(let code): return code
        case .signaled(let sig): return 128 + sig
        case .notFound: return 127
        case .notExecutable: return 126
        }
    }

    var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let sig): return "killed by signal \(SignalName.name(sig)) (exit code \(128 + sig))"
        case .notFound: return "program not found (exit code 127)"
        case .notExecutable: return "program could not be executed (exit code 126)"
        }
    }
}

/// The launcher's exit code once the final sync is over: the child's code, except that a failed or unfinished
/// final sync never exits 0.
func launcherExitCode(child: Int32, finalSyncSucceeded: Bool) -> Int32 {
    if finalSyncSucceeded { return child }
    return child != 0 ? child : 1
}
