import CLauncherShims
import Foundation

/// The one owner of `waitpid` in the launcher (tini `reap_zombies`).
///
/// As PID 1 every orphan of the container is re-parented to us; elsewhere `becomeSubreaper` makes the orphans
/// of our descendants ours. Either way each SIGCHLD is answered by `reapAll`, which collects every exited child,
/// the exec process and orphaned grandchildren alike. Nothing else in the process may wait for children.
enum Reaper {
    /// A collected child: its pid and how it ended.
    struct Reaped: Equatable {
        var pid: pid_t
        var status: TerminationStatus
    }

    /// Registers as child subreaper (`PR_SET_CHILD_SUBREAPER`); returns the errno on failure.
    static func becomeSubreaper() -> Int32? {
        launcher_set_child_subreaper() == 0 ? nil : errno
    }

    /// Collects every child that has exited, without blocking (`waitpid(-1, WNOHANG)` until none is left).
    static func reapAll() -> [Reaped] {
        var out: [Reaped] = []
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 {
                if let s = TerminationStatus(waitStatus: status) { out.append(Reaped(pid: pid, status: s)) }
                continue
            }
            if pid < 0 && errno == EINTR { continue }
            return out  // 0: children left but none exited; ECHILD: no children at all
        }
    }
}
