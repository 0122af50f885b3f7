import Foundation
import Testing
@testable import Launcher
import LauncherSupport

/// White-box tests of the pure parts of supervision: shell words, exit-status mapping, the lifecycle machine.
@Suite struct ExecUnitTests {
    // go-shellwords v1.0.12 `testcases` plus the rules of INTERFACES §1.4.2.
    static let words: [(String, [String])] = [
        ("", []),
        (#""""#, [""]),
        ("''", [""]),
        ("var --bar=baz", ["var", "--bar=baz"]),
        (#"var --bar="baz""#, ["var", "--bar=baz"]),
        (#"var "--bar=baz""#, ["var", "--bar=baz"]),
        (#"var "--bar='baz'""#, ["var", "--bar='baz'"]),
        ("var --bar=`baz`", ["var", "--bar=`baz`"]),
        (#"var "--bar=\"baz'""#, ["var", #"--bar="baz'"#]),
        (#"var "--bar=\'baz\'""#, ["var", "--bar='baz'"]),
        (#"var --bar='\'"#, ["var", #"--bar=\"#]),
        (#"var "--bar baz""#, ["var", "--bar baz"]),
        (#"var --"bar baz""#, ["var", "--bar baz"]),
        (#"var  --"bar baz""#, ["var", "--bar baz"]),
        (#"a "b""#, ["a", "b"]),
        (#"a " b ""#, ["a", " b "]),
        (#"a "   ""#, ["a", "   "]),
        ("a 'b'", ["a", "b"]),
        ("a ' b '", ["a", " b "]),
        ("a '   '", ["a", "   "]),
        ("foo bar\\  ", ["foo", "bar "]),
        (#"foo "" bar ''"#, ["foo", "", "bar", ""]),
        (#"foo \\"#, ["foo", "\\"]),
        (#"foo \& bar"#, ["foo", "&", "bar"]),
        // §1.4.2 specifics
        ("a\tb\r\nc", ["a", "b", "c"]),
        (#"echo "\n""#, ["echo", "n"]),
        ("app serve && echo x", ["app", "serve"]),
        ("app; rm -rf /", ["app"]),
        ("app | tee log", ["app"]),
        ("app < in", ["app"]),
        ("app 2>/dev/null", ["app"]),
        ("app x2>/dev/null", ["app", "x2"]),
        ("app >out", ["app"]),
        ("echo `date +%s now`", ["echo", "`date +%s now`"]),
        ("echo $(date +%s now) x", ["echo", "$(date +%s now)", "x"]),
        ("echo $HOME ${USER}", ["echo", "$HOME", "${USER}"]),
        ("myapp -dsn '/data/my db' -v", ["myapp", "-dsn", "/data/my db", "-v"]),
    ]

    @Test func shellWordsSplit() throws {
        for (line, expected) in Self.words {
            #expect(try ShellWords.split(line) == expected, "\(line)")
        }
    }

    @Test func shellWordsInvalid() {
        for line in ["foo '", #"foo ""#, "foo `", "foo \\", "a (b)", "echo $(x", "a ) b", "echo $(a (b))"] {
            #expect(throws: ShellWords.ParseError.invalid, "\(line)") { try ShellWords.split(line) }
        }
        for line in ["", "   ", "\t\n", "; app", "2> x"] {
            #expect(throws: ShellWords.ParseError.empty, "\(line)") { try ShellWords.command(line) }
        }
    }

    @Test func terminationStatusExitCodes() {
        #expect(TerminationStatus.exited(0).exitCode == 0)
        #expect(TerminationStatus.exited(255).exitCode == 255)
        #expect(TerminationStatus.signaled(SIGKILL).exitCode == 137)
        #expect(TerminationStatus.signaled(SIGTERM).exitCode == 143)
        #expect(TerminationStatus.notFound.exitCode == 127)
        #expect(TerminationStatus.notExecutable.exitCode == 126)
        // Raw wait statuses: exit code in bits 8-15, signal in bits 0-6.
        #expect(TerminationStatus(waitStatus: 42 << 8) == .exited(42))
        #expect(TerminationStatus(waitStatus: SIGKILL) == .signaled(SIGKILL))
        #expect(TerminationStatus(waitStatus: 0x137f) == nil)  // stopped by SIGSTOP
        #expect(launcherExitCode(child: 0, finalSyncSucceeded: false) == 1)
        #expect(launcherExitCode(child: 3, finalSyncSucceeded: false) == 3)
        #expect(launcherExitCode(child: 3, finalSyncSucceeded: true) == 3)
        #expect(launcherExitCode(child: 0, finalSyncSucceeded: true) == 0)
    }

    @Test func spawnFailureWording() {
        let f = Spawner.failure(program: "myapp", errno: ENOENT)
        #expect(f.status == .notFound)
        #expect(f.message == #"cannot start exec command: exec: "myapp": executable file not found in $PATH"#)
        let g = Spawner.failure(program: "/bin/app", errno: EACCES)
        #expect(g.status == .notExecutable)
        #expect(g.message == "cannot start exec command: fork/exec /bin/app: permission denied")
    }

    @Test func lifecycleWithChild() {
        var m = SupervisorStateMachine(supervisesChild: true)
        #expect(m.signalReceived(SIGHUP) == [.relay(SIGHUP)])
        #expect(m.signalReceived(SIGTERM) == [.relay(SIGTERM)])
        #expect(m.phase == .running, "the launcher never stops on its own while the child runs")
        #expect(m.childExited(.exited(3)) == [.startFinalSync])
        #expect(m.phase == .finalSync(childCode: 3))
        #expect(m.childExited(.exited(4)) == [], "only the first exit counts")
        // Second TERM overall during the final sync cuts it short, with the child's code.
        #expect(m.signalReceived(SIGTERM) == [.relay(SIGTERM), .exit(code: 3, reason: .interrupted)])
        #expect(m.phase == .finished)
        #expect(m.finalSyncFinished(succeeded: true) == [])
    }

    /// A lost lease stops the child first (TERM, KILL after the grace period), then exits 75 without a final sync;
    /// without a child, or during the final sync, it exits at once.
    @Test func lostLeaseStopsTheChildThenExits75() {
        var m = SupervisorStateMachine(supervisesChild: true)
        #expect(m.leaseGracePassed() == [], "no grace period before a loss")
        #expect(m.leaseLost() == [.terminateChildForLease])
        #expect(m.phase == .leaseLost)
        #expect(m.leaseLost() == [], "reported once")
        #expect(m.signalReceived(SIGTERM) == [.relay(SIGTERM)], "signals still reach the child")
        #expect(m.leaseGracePassed() == [.killChild])
        #expect(m.childExited(.signaled(SIGKILL)) == [.exit(code: 75, reason: .leaseLost)])
        #expect(m.phase == .finished)

        var noChild = SupervisorStateMachine(supervisesChild: false)
        #expect(noChild.leaseLost() == [.exit(code: 75, reason: .leaseLost)])
        var syncing = SupervisorStateMachine(supervisesChild: true)
        _ = syncing.childExited(.exited(0))
        #expect(syncing.leaseLost() == [.exit(code: 75, reason: .leaseLost)])
        #expect(syncing.finalSyncFinished(succeeded: true) == [])
    }

    @Test func firstStopDuringFinalSyncOnlyHints() {
        var m = SupervisorStateMachine(supervisesChild: true)
        _ = m.childExited(.exited(0))
        #expect(m.signalReceived(SIGINT) == [.relay(SIGINT), .hintSecondStop(SIGINT)])
        #expect(m.signalReceived(SIGUSR1) == [.relay(SIGUSR1)])
        #expect(m.signalReceived(SIGINT) == [.relay(SIGINT), .exit(code: 1, reason: .interrupted)])
    }

    @Test func finalSyncOutcomes() {
        var ok = SupervisorStateMachine(supervisesChild: true)
        _ = ok.childExited(.signaled(SIGKILL))
        #expect(ok.finalSyncFinished(succeeded: true) == [.exit(code: 137, reason: .synced)])
        var failed = SupervisorStateMachine(supervisesChild: true)
        _ = failed.childExited(.exited(0))
        #expect(failed.finalSyncFinished(succeeded: false) == [.exit(code: 1, reason: .syncFailed)])
        var late = SupervisorStateMachine(supervisesChild: true)
        _ = late.childExited(.exited(5))
        #expect(late.deadlinePassed() == [.exit(code: 5, reason: .timedOut)])
        var notStarted = SupervisorStateMachine(supervisesChild: true)
        #expect(notStarted.deadlinePassed() == [], "no deadline before the final sync")
        _ = notStarted.childExited(.notFound)
        #expect(notStarted.finalSyncFinished(succeeded: true) == [.exit(code: 127, reason: .synced)])
    }

    @Test func lifecycleWithoutChild() {
        var m = SupervisorStateMachine(supervisesChild: false)
        #expect(m.signalReceived(SIGHUP) == [.ignore(SIGHUP)])
        #expect(m.signalReceived(SIGTERM) == [.startFinalSync])
        #expect(m.signalReceived(SIGUSR1) == [.ignore(SIGUSR1)])
        #expect(m.signalReceived(SIGTERM) == [.exit(code: 1, reason: .interrupted)])
        var n = SupervisorStateMachine(supervisesChild: false)
        _ = n.signalReceived(SIGINT)
        #expect(n.finalSyncFinished(succeeded: true) == [.exit(code: 0, reason: .synced)])
    }

    @Test func commandSources() throws {
        #expect(ReplicateCommand.splitAtDoubleDash(["-config", "x", "--", "app", "--", "-v"]).argv == ["app", "--", "-v"])
        #expect(ReplicateCommand.splitAtDoubleDash(["-config", "x"]).argv == nil)
        #expect(ReplicateCommand.handles(["-exec", "app"]))
        #expect(ReplicateCommand.handles(["--", "app"]))
        #expect(ReplicateCommand.handles(["replicate"]))
        #expect(!ReplicateCommand.handles(["restore", "-o", "x"]))
        #expect(!ReplicateCommand.handles(["-h"]))
        #expect(!ReplicateCommand.handles([]))
    }
}
