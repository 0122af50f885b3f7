import Foundation
import Testing

extension ExecTests {
    /// Signals sent to the launcher reach the child's process group.
    @Suite struct ExecSignalTests {
        /// A child that records every signal it traps in `<dir>/signals`; TERM records and exits 0.
        static let trapScript = """
            rec="$1"
            for s in HUP INT QUIT USR1 USR2; do trap "echo $s >> '$rec'" $s; done
            trap "echo TERM >> '$rec'; exit 0" TERM
            echo $$ > "$rec.ready"
            # A background sleep plus `wait`: traps run as soon as a signal arrives (and a non-interactive shell's
            # background jobs ignore INT and QUIT, so no core dump from sleep).
            while :; do sleep 1 & wait $!; done
            """

        static let sequence: [(Int32, String)] = [
            (SIGHUP, "HUP"), (SIGINT, "INT"), (SIGQUIT, "QUIT"), (SIGUSR1, "USR1"), (SIGUSR2, "USR2"), (SIGTERM, "TERM"),
        ]

        enum Form: String, CaseIterable, CustomTestStringConvertible {
            /// `-exec "app REC"`: the app is the child.
            case direct
            /// `-exec "sh -c 'app REC; true'"`: the app is the shell's child, in the same process group.
            case underShell
            var testDescription: String { rawValue }
        }

        @Test("TERM, INT, HUP, QUIT, USR1, USR2 reach the app", arguments: Form.allCases)
        func signalsAreRelayed(form: Form) throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let app = try sb.writeScript("app.sh", Self.trapScript)
            let rec = sb.path("signals")
            let exec: String
            switch form {
            case .direct:
                exec = "\(app) \(rec)"
            case .underShell:
                // The shell ignores nothing (`:` traps are reset in the app) and stays the parent of the app.
                exec = "sh -c 'trap : HUP INT QUIT USR1 USR2 TERM; \(app) \(rec); true'"
            }
            let p = try sb.launch(["-config", config, "-exec", exec])
            try #require(sb.waitForFile("signals.ready"), "child did not start:\n\(p.output)")
            var expected: [String] = []
            for (sig, name) in Self.sequence {
                p.signal(sig)
                expected.append(name)
                let ok = sb.waitForFile("signals", timeout: 10) { $0.split(separator: "\n").map(String.init) == expected }
                #expect(ok, "after \(name): recorded \(sb.read("signals") ?? "nothing")\n\(p.output)")
                if !ok { return }
            }
            #expect(p.wait(timeout: 20) == 0, "\(p.output)")
            #expect(p.output.contains("relaying signal USR1 to exec process group"), "\(p.output)")
        }

        @Test("TERM to the launcher as PID 1 reaches the app; the launcher exits with its status")
        func termAsPID1() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let app = try sb.writeScript("app.sh", """
                trap 'echo TERM > "$1"; exit 7' TERM
                echo "$PPID" > "$1.ready"
                while :; do sleep 1 & wait $!; done
                """)
            let p = try sb.start("/usr/bin/unshare", ["--pid", "--fork", "--mount-proc",
                                                      TestSupport.launcher, "-config", config, "-exec", "\(app) \(sb.path("rec"))"])
            try #require(sb.waitForFile("rec.ready"), "child did not start:\n\(p.output)")
            #expect(sb.read("rec.ready") == "1", "the launcher is not PID 1")
            // The namespace's PID 1 seen from here is the only child of `unshare`.
            guard let launcherPID = ExecProc.children(of: p.pid).first else {
                Issue.record("no child of unshare found")
                return
            }
            kill(launcherPID, SIGTERM)
            #expect(p.wait(timeout: 20) == 7, "\(p.output)")
            #expect(sb.read("rec") == "TERM")
        }
    }
}

/// Reading process relations from /proc.
enum ExecProc {
    /// Direct children of `pid` (all its threads' children).
    static func children(of pid: pid_t) -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var out: [pid_t] = []
        for t in tasks {
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/children", encoding: .utf8)) ?? ""
            out += text.split(separator: " ").compactMap { pid_t($0) }
        }
        return out
    }
}
