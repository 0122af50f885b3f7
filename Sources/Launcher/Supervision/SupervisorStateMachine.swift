/// The launcher lifecycle as a pure state machine: which signal to relay, when the final sync starts, and which
/// exit code ends the process. `Supervisor` performs the actions; this type does no I/O, so it is unit tested.
///
/// Lifecycle: `running` (the child runs; or, without a child, we wait for TERM/INT) → `finalSync` (the child is
/// gone or a stop was requested) → `finished`. Rules:
/// - with a child, every signal is relayed to its process group, in every phase; the launcher never signals
///   the child on its own initiative;
/// - without a child, TERM/INT start the final sync and other signals are ignored;
/// - during the final sync, the *second* TERM/INT overall cuts it short (the first one usually was the one that
///   made the app exit; a first one arriving during the sync only earns a hint in the log);
/// - exit code: the child's (`TerminationStatus.exitCode`), or the child's non-zero code / 1 when the final sync
///   failed, timed out or was cut short.
struct SupervisorStateMachine: Sendable {
    /// Where the lifecycle is.
    enum Phase: Equatable, Sendable {
        /// The child runs (or, without a child, replication runs until TERM/INT).
        case running
        /// The final sync runs; `childCode` is the code to exit with if it succeeds.
        case finalSync(childCode: Int32)
        /// The lease was lost while the child ran: it was sent TERM (KILL after the grace period); when it is gone
        /// the launcher exits with `leaseLostExitCode`, without a final sync (the replica belongs to another launcher).
        case leaseLost
        /// An exit action was returned; nothing else happens.
        case finished
    }

    /// The exit status when the lease could not be taken (`lease.wait` passed) or was lost: EX_TEMPFAIL, so a
    /// supervisor restarts the launcher, which then waits for the lease again.
    static let leaseLostExitCode: Int32 = 75

    /// Why the process exits.
    enum ExitReason: Equatable, Sendable {
        /// The final sync completed.
        case synced
        /// The final sync reported failures.
        case syncFailed
        /// The final sync did not finish within `-shutdown-timeout`.
        case timedOut
        /// A second TERM/INT cut the final sync short.
        case interrupted
        /// The lease was lost; nothing more was written to the replicas.
        case leaseLost
    }

    /// What the supervisor must do.
    enum Action: Equatable, Sendable {
        /// Send the signal to the child's process group.
        case relay(Int32)
        /// No child to give it to and not a stop request: log and drop.
        case ignore(Int32)
        /// Start the final sync (and its deadline).
        case startFinalSync
        /// First TERM/INT during the final sync: log that a second one cuts it short.
        case hintSecondStop(Int32)
        /// The lease is lost: send TERM (and CONT) to the child's process group and arm the kill deadline.
        case terminateChildForLease
        /// The child outlived the grace period after a lost lease: send KILL to its process group.
        case killChild
        /// Exit the process with this code.
        case exit(code: Int32, reason: ExitReason)
    }

    /// Whether a child process is supervised (`-exec`, `exec:` or `-- argv`).
    let supervisesChild: Bool
    /// Current phase.
    private(set) var phase: Phase = .running
    /// TERM/INT signals received so far.
    private(set) var stopRequests = 0
    /// How the child ended, once it has.
    private(set) var childStatus: TerminationStatus?

    /// Starts in `running`.
    init(supervisesChild: Bool) {
        self.supervisesChild = supervisesChild
    }

    /// A relayable signal arrived (SIGCHLD is not one: it goes through `childExited`).
    mutating func signalReceived(_ sig: Int32) -> [Action] {
        let isStop = SupervisorSignals.isStopRequest(sig)
        if isStop { stopRequests += 1 }
        switch phase {
        case .finished:
            return []
        case .leaseLost:
            return [.relay(sig)]
        case .running:
            if supervisesChild { return [.relay(sig)] }
            guard isStop else { return [.ignore(sig)] }
            phase = .finalSync(childCode: 0)
            return [.startFinalSync]
        case .finalSync(let code):
            var actions: [Action] = supervisesChild ? [.relay(sig)] : (isStop ? [] : [.ignore(sig)])
            guard isStop else { return actions }
            if stopRequests >= 2 {
                phase = .finished
                actions.append(.exit(code: launcherExitCode(child: code, finalSyncSucceeded: false), reason: .interrupted))
            } else {
                actions.append(.hintSecondStop(sig))
            }
            return actions
        }
    }

    /// The exec process ended (or could not be started: `.notFound`/`.notExecutable`).
    mutating func childExited(_ status: TerminationStatus) -> [Action] {
        if phase == .leaseLost {
            childStatus = status
            phase = .finished
            return [.exit(code: Self.leaseLostExitCode, reason: .leaseLost)]
        }
        guard supervisesChild, phase == .running else { return [] }
        childStatus = status
        phase = .finalSync(childCode: status.exitCode)
        return [.startFinalSync]
    }

    /// The final sync returned; `succeeded` is false when any database or replica failed.
    mutating func finalSyncFinished(succeeded: Bool) -> [Action] {
        guard case .finalSync(let code) = phase else { return [] }
        phase = .finished
        return [.exit(code: launcherExitCode(child: code, finalSyncSucceeded: succeeded),
                      reason: succeeded ? .synced : .syncFailed)]
    }

    /// A lease stopped being provable: stop the child first (there must never be two apps), then exit without a
    /// final sync; without a child, or during the final sync, exit at once.
    mutating func leaseLost() -> [Action] {
        switch phase {
        case .running where supervisesChild:
            phase = .leaseLost
            return [.terminateChildForLease]
        case .running, .finalSync:
            phase = .finished
            return [.exit(code: Self.leaseLostExitCode, reason: .leaseLost)]
        case .leaseLost, .finished:
            return []
        }
    }

    /// The grace period after a lost lease passed and the child still runs.
    mutating func leaseGracePassed() -> [Action] {
        phase == .leaseLost ? [.killChild] : []
    }

    /// `-shutdown-timeout` passed while the final sync was still running.
    mutating func deadlinePassed() -> [Action] {
        guard case .finalSync(let code) = phase else { return [] }
        phase = .finished
        return [.exit(code: launcherExitCode(child: code, finalSyncSucceeded: false), reason: .timedOut)]
    }
}
