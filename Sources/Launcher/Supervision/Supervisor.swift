import Foundation
import Logging
import ReplicationKit

/// Runs the launcher's main loop on the main thread: spawn the exec process, relay signals, reap every child,
/// then run the final sync with a deadline and return the exit code (tini's loop, with Litestream's shutdown).
///
/// Everything arrives as a signal collected by `sigwaitinfo`/`sigtimedwait` (the mask is set up in `main`), so the
/// loop needs no other thread except the one that runs the blocking final sync. `SupervisorStateMachine` makes
/// every decision; this type only performs them.
final class Supervisor {
    private let replicator: Replicator
    private let logger: Logger
    private let shutdownTimeout: Duration?
    private var machine: SupervisorStateMachine
    private var child: pid_t?
    private var childTookTerminal = false
    private var finalSync: FinalSync?
    private let health: LauncherHealth
    /// When the child gets KILL after a lost lease (armed by `.terminateChildForLease`).
    private var leaseKillDeadline: ContinuousClock.Instant?

    /// Supervises `replicator` (already started); `supervisesChild` when a command will be spawned; a nil
    /// `shutdownTimeout` lets the final sync take as long as it needs.
    init(replicator: Replicator, logger: Logger, shutdownTimeout: Duration?, supervisesChild: Bool, health: LauncherHealth) {
        self.health = health
        self.replicator = replicator
        self.logger = logger
        self.shutdownTimeout = shutdownTimeout
        self.machine = SupervisorStateMachine(supervisesChild: supervisesChild)
    }

    /// Spawns `command` (when given), runs `afterSpawn` (also when the spawn failed), and runs until the final sync
    /// ends; returns the process exit code.
    ///
    /// Exits the process itself (`_exit`) when the final sync times out or is cut short, since the sync thread
    /// is then still inside a blocking call.
    func run(command: [String]?, environment: [(name: String, value: String)], afterSpawn: () -> Void = {}) -> Int32 {
        var pending: [SupervisorStateMachine.Action] = []
        if let command {
            if getpid() != 1, let err = Reaper.becomeSubreaper() {
                logger.warning("cannot register as child subreaper, orphans of the app will not be reaped: \(String(cString: strerror(err)))")
            }
            do {
                let spawned = try Spawner.spawn(argv: command, extraEnvironment: environment)
                let pid = spawned.pid
                child = pid
                childTookTerminal = spawned.tookTerminal
                logger.info("exec process started: pid=\(pid) command=\(command.map(goQuote).joined(separator: " "))")
                health.phase.withLock { $0 = .running }
            } catch {
                logger.error("\(error.message)")
                pending = machine.childExited(error.status)
            }
        }
        afterSpawn()
        if command == nil { health.phase.withLock { $0 = .running } }
        while true {
            for action in pending {
                if let code = perform(action) { return code }
            }
            pending = []
            // While the final sync runs, wake up regularly to see whether it finished or its deadline passed; with
            // a lease, regularly enough to stop the app well within the lease's margin once it is lost.
            var timeout = finalSync.map { min(max($0.remaining ?? .milliseconds(20), .zero), .milliseconds(20)) }
            if !replicator.leases.isEmpty { timeout = min(timeout ?? .milliseconds(100), .milliseconds(100)) }
            if let sig = SupervisorSignals.wait(timeout: timeout) {
                if sig == SIGCHLD {
                    pending += reap()
                } else {
                    pending += machine.signalReceived(sig)
                }
            }
            if machine.phase != .leaseLost, machine.phase != .finished, let lost = replicator.lostLease {
                logger.error("lease lost for \(lost.lease.databasePath): \(lost.reason)")
                health.phase.withLock { $0 = .leaseLost }
                pending += machine.leaseLost()
                continue
            }
            if let deadline = leaseKillDeadline, ContinuousClock.now >= deadline {
                leaseKillDeadline = nil
                pending += machine.leaseGracePassed()
            }
            if let sync = finalSync {
                if let failures = sync.failures.current {
                    for f in failures { logger.error("\(f)") }
                    pending += machine.finalSyncFinished(succeeded: failures.isEmpty)
                } else if let left = sync.remaining, left <= .zero {
                    pending += machine.deadlinePassed()
                }
            }
        }
    }

    /// Collects exited children; the exec process's end becomes a state-machine event, orphans are just logged.
    private func reap() -> [SupervisorStateMachine.Action] {
        var actions: [SupervisorStateMachine.Action] = []
        for r in Reaper.reapAll() {
            if r.pid == child {
                logger.info("exec process exited: \(r.status)")
                if childTookTerminal { Spawner.reclaimTerminal() }
                actions += machine.childExited(r.status)
            } else {
                logger.debug("reaped orphaned process pid=\(r.pid): \(r.status)")
            }
        }
        return actions
    }

    /// Performs one action; returns the exit code when the process should exit.
    private func perform(_ action: SupervisorStateMachine.Action) -> Int32? {
        switch action {
        case .relay(let sig):
            guard let pgid = child else { return nil }
            let name = SignalName.name(sig)
            if SupervisorSignals.isStopRequest(sig) && machine.phase == .running {
                logger.info("signal received: \(name), sending it to exec process group \(pgid); waiting for exec process to close")
            } else if sig == SIGWINCH {
                logger.debug("relaying signal \(name) to exec process group \(pgid)")
            } else {
                logger.info("relaying signal \(name) to exec process group \(pgid)")
            }
            if kill(-pgid, sig) != 0 {
                let err = errno
                // ESRCH: the whole group is gone already (the child exited, its SIGCHLD is on its way).
                if err == ESRCH {
                    logger.debug("signal \(name) not delivered: exec process group \(pgid) has no process left")
                } else {
                    logger.warning("cannot signal exec process group \(pgid): \(String(cString: strerror(err)))")
                }
            } else if SupervisorSignals.isStopRequest(sig) {
                // A stopped (SIGSTOP, SIGTSTP) process would keep a stop request pending until someone continues
                // it: continue the group so it can shut down, as `kill` in a shell does for a stopped job.
                _ = kill(-pgid, SIGCONT)
            }
        case .terminateChildForLease:
            guard let pgid = child else { return nil }
            let grace = replicator.leases.map(\.margin).min().map { $0 / 2 } ?? .seconds(1)
            logger.error("stopping the exec process (group \(pgid)) because the lease is lost: TERM now, KILL in \(GoDuration.format(grace))")
            _ = kill(-pgid, SIGTERM)
            _ = kill(-pgid, SIGCONT)
            leaseKillDeadline = .now + grace
        case .killChild:
            guard let pgid = child else { return nil }
            logger.error("exec process group \(pgid) still runs after the lease grace period; sending KILL")
            _ = kill(-pgid, SIGKILL)
        case .ignore(let sig):
            logger.info("signal received: \(SignalName.name(sig)), ignored (no exec process)")
        case .startFinalSync:
            health.phase.withLock { $0 = .stopping }
            // The sync thread first: its start (0.2-0.5 ms measured on a loaded machine) overlaps the log lines.
            finalSync = FinalSync(replicator: replicator, timeout: shutdownTimeout)
            if machine.supervisesChild {
                logger.info("subprocess exited, litestream shutting down")
            } else {
                logger.info("signal received, litestream shutting down")
            }
            let limit = shutdownTimeout.map { "timeout \(GoDuration.format($0))" } ?? "no timeout"
            logger.info("final sync of every database to every replica (\(limit))")
        case .hintSecondStop(let sig):
            logger.info("signal received: \(SignalName.name(sig)) during the final sync; send TERM or INT again to stop waiting for it")
        case .exit(let code, let reason):
            switch reason {
            case .synced:
                logger.info("litestream shut down")
            case .syncFailed:
                logger.error("final sync failed; litestream shut down")
            case .timedOut:
                logger.error("final sync did not finish within \(shutdownTimeout.map(GoDuration.format) ?? "its deadline"); aborting the uploads in flight")
                abortFinalSync(reason: "final sync deadline passed")
            case .interrupted:
                logger.error("final sync cut short by a second stop signal; aborting the uploads in flight")
                abortFinalSync(reason: "final sync cut short")
            case .leaseLost:
                logger.error("lease lost: nothing more is written to the replicas; another launcher may own them now")
            }
            logger.info("exiting with status \(code)")
            if reason == .leaseLost || ((reason == .timedOut || reason == .interrupted) && finalSync?.failures.current == nil) {
                // A sync thread is still blocked (in local I/O: transfers were aborted); leave without running exit
                // handlers under its feet.
                _exit(code)
            }
            return code
        }
        return nil
    }

    /// Reports what each replica holds at the deadline, aborts every network transfer, and gives the final sync up to
    /// `abortGrace` to come back with its failures (logged), so the process leaves through its normal path.
    private func abortFinalSync(reason: String) {
        reportUnsynced()
        TransferAbort.trigger(reason: reason)
        if let sync = finalSync {
            let deadline = ContinuousClock.now + Self.abortGrace
            while sync.failures.current == nil && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.01)
            }
            if let failures = sync.failures.current {
                for f in failures { logger.error("\(f)") }
            } else {
                logger.error("the final sync did not return within \(GoDuration.format(Self.abortGrace)) of the abort (blocked in local I/O)")
            }
        }
    }

    /// How long the final sync gets to return once its transfers are aborted.
    static let abortGrace: Duration = .seconds(2)

    /// Logs, per database still open and replica, the position the replica holds and the local position that
    /// may not have made it (read without waiting: the sync thread may be blocked).
    private func reportUnsynced() {
        for e in replicator.entries {
            // nil once the database is closed, which happens only after its replicas finished their final sync.
            guard let local = e.database.position else { continue }
            for r in e.replicas {
                let held = r.syncedPosition.current.map { "\($0)" } ?? "nothing"
                logger.error("final sync incomplete: db=\(e.database.path) replica=\"\(r.name)\" (\(r.client.location)) holds \(held); local position \(local) or later did not make it")
            }
        }
    }
}

/// The final sync on a dedicated thread (it blocks on I/O), with the deadline the main loop enforces.
final class FinalSync: Sendable {
    /// nil while running; then one line per failure (empty on success).
    let failures = Locked<[String]?>(nil)
    private let deadline: ContinuousClock.Instant?

    /// Starts `replicator.shutdown()` on a new thread; nil `timeout`: no deadline.
    init(replicator: Replicator, timeout: Duration?) {
        deadline = timeout.map { ContinuousClock.now + $0 }
        let box = failures
        // The thread inherits the main thread's signal mask, so it never takes a signal meant for the loop.
        Thread.detachNewThread {
            let result = replicator.shutdown()
            box.withLock { $0 = result }
            // Wake the main loop now instead of at its next 20 ms slice: SIGCHLD is in its wait set and never
            // relayed, and a spurious one only makes it reap nothing.
            kill(getpid(), SIGCHLD)
        }
    }

    /// Time left before the deadline (negative once passed); nil without a deadline.
    var remaining: Duration? { deadline.map { $0 - ContinuousClock.now } }
}
