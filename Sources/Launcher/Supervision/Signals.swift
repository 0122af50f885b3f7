import CLauncherShims
import Foundation

/// The signals the launcher handles while supervising, and the process-wide mask that makes `sigwaitinfo` work.
///
/// All relayed signals and SIGCHLD are blocked in `main` before any thread exists, so every thread inherits the
/// mask and the main thread alone collects them (tini `configure_signals`). Synchronous faults (SEGV, BUS, FPE,
/// ILL, TRAP, ABRT, SYS) keep their default action; SIGPIPE, SIGTTIN and SIGTTOU are ignored by the launcher
/// (the child gets default dispositions back).
enum SupervisorSignals {
    /// Asynchronous, catchable signals relayed to the child's process group.
    static let relayed: [Int32] = {
        var s: [Int32] = [SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGSTKFLT, SIGCONT,
                          SIGTSTP, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR]
        let low = launcher_sigrtmin(), high = launcher_sigrtmax()
        if low <= high { s.append(contentsOf: low...high) }
        return s
    }()

    /// Signals that ask the launcher to stop (relayed first when a child runs).
    static func isStopRequest(_ sig: Int32) -> Bool { sig == SIGTERM || sig == SIGINT }

    /// The set collected by the main thread: every relayed signal plus SIGCHLD.
    static var waitSet: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in relayed { sigaddset(&set, s) }
        sigaddset(&set, SIGCHLD)
        return set
    }

    /// Blocks `waitSet` in the calling thread and ignores SIGPIPE/SIGTTIN/SIGTTOU.
    ///
    /// - Important: call from `main` before any thread is created (dispatch queues, the inotify thread, restore
    ///   workers); threads created earlier would keep an open mask and could swallow a signal meant for the child.
    static func blockForSupervision() {
        var set = waitSet
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
        // The child may take the terminal's foreground; our own log writes must not stop us.
        signal(SIGTTIN, SIG_IGN)
        signal(SIGTTOU, SIG_IGN)
    }

    /// Waits for the next signal of `waitSet`: forever when `timeout` is nil; nil on timeout.
    static func wait(timeout: Duration?) -> Int32? {
        var set = waitSet
        var info = siginfo_t()
        while true {
            let r: Int32
            if let timeout {
                let (s, atto) = timeout.components
                var ts = timespec(tv_sec: Int(max(s, 0)), tv_nsec: s < 0 ? 0 : Int(atto / 1_000_000_000))
                r = sigtimedwait(&set, &info, &ts)
            } else {
                r = sigwaitinfo(&set, &info)
            }
            if r > 0 { return r }
            if errno == EINTR { continue }
            return nil  // EAGAIN: timed out
        }
    }
}

/// Signal names without the `SIG` prefix (`TERM`, `RTMIN+3`), for log lines.
enum SignalName {
    private static let names: [Int32: String] = [
        SIGHUP: "HUP", SIGINT: "INT", SIGQUIT: "QUIT", SIGILL: "ILL", SIGTRAP: "TRAP", SIGABRT: "ABRT",
        SIGBUS: "BUS", SIGFPE: "FPE", SIGKILL: "KILL", SIGUSR1: "USR1", SIGSEGV: "SEGV", SIGUSR2: "USR2",
        SIGPIPE: "PIPE", SIGALRM: "ALRM", SIGTERM: "TERM", SIGSTKFLT: "STKFLT", SIGCHLD: "CHLD", SIGCONT: "CONT",
        SIGSTOP: "STOP", SIGTSTP: "TSTP", SIGTTIN: "TTIN", SIGTTOU: "TTOU", SIGURG: "URG", SIGXCPU: "XCPU",
        SIGXFSZ: "XFSZ", SIGVTALRM: "VTALRM", SIGPROF: "PROF", SIGWINCH: "WINCH", SIGIO: "IO", SIGPWR: "PWR",
        SIGSYS: "SYS",
    ]

    /// `TERM` for 15, `RTMIN+2` for a real-time signal, the number otherwise.
    static func name(_ sig: Int32) -> String {
        if let n = names[sig] { return n }
        let low = launcher_sigrtmin()
        if sig >= low && sig <= launcher_sigrtmax() { return sig == low ? "RTMIN" : "RTMIN+\(sig - low)" }
        return String(sig)
    }
}
