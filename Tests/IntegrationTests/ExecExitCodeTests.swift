import Foundation
import Testing

extension ExecTests {
    /// The launcher exits with the child's status: its code, 128+N for signal N, 127/126 when exec fails.
    @Suite struct ExecExitCodeTests {
        @Test("child exit N → launcher exits N", arguments: [0, 1, 2, 3, 42, 255])
        func childExitCodeIsPropagated(code: Int) throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let r = try sb.run(["-config", config, "-exec", "sh -c 'exit \(code)'"])
            #expect(r.status == Int32(code), "\(r.output)")
            #expect(r.output.contains("exec process exited: exit status \(code)"), "\(r.output)")
        }

        @Test("child killed by SIGKILL → 137")
        func childKilledBySignal() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let r = try sb.run(["-config", config, "--", "/bin/sh", "-c", "kill -KILL $$"])
            #expect(r.status == 137, "\(r.output)")
            #expect(r.output.contains("killed by signal KILL"), "\(r.output)")
        }

        @Test("program not found → 127 (PATH lookup and explicit path)")
        func missingProgram() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let r = try sb.run(["-config", config, "-exec", "no-such-program-for-launcher-tests --flag"])
            #expect(r.status == 127, "\(r.output)")
            #expect(r.output.contains(#"cannot start exec command: exec: "no-such-program-for-launcher-tests": executable file not found in $PATH"#),
                    "\(r.output)")
            let r2 = try sb.run(["-config", config, "--", sb.path("missing/app")], log: "launcher2.log")
            #expect(r2.status == 127, "\(r2.output)")
        }

        @Test("file that cannot be executed → 126")
        func nonExecutableFile() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let script = try sb.writeScript("not-executable.sh", "exit 0")
            chmod(script, 0o644)
            let r = try sb.run(["-config", config, "-exec", script])
            #expect(r.status == 126, "\(r.output)")
            #expect(r.output.contains("permission denied"), "\(r.output)")
        }
    }
}
