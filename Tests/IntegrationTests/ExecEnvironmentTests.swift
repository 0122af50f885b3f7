import Foundation
import Testing

extension ExecTests {
    /// What the child receives: environment, descriptors, argv; and the three ways to name it.
    @Suite struct ExecEnvironmentTests {
        @Test("LITESTREAM_DB_PATH is the first database (config order, absolute); the rest of the environment is unchanged; only fds 0-2")
        func environmentAndDescriptors() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            // Relative paths, resolved against the working directory; "zz" first so that config order ≠ name order.
            let config = try sb.writeConfig(dbs: ["data/zz.db", "data/aa.db"])
            // Launched through sh: an inherited descriptor 7 without close-on-exec, a non-UTF-8 value, a value
            // with spaces and an inherited LITESTREAM_DB_PATH that must be replaced. The child is `sleep`, a
            // program that opens nothing, inspected from here through /proc.
            let line = """
                exec 7</etc/hostname
                export WEIRD="$(printf 'caf\\351=x')" SPACED='a  b' LITESTREAM_DB_PATH=/wrong
                exec '\(TestSupport.launcher)' -config '\(config)' -exec 'sleep 30'
                """
            let p = try sb.start("/bin/sh", ["-c", line])
            var child: pid_t = 0
            let started = poll(timeout: 10) {
                guard let c = ExecProc.children(of: p.pid).first else { return false }
                child = c
                return (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(c)/exe"))?.hasSuffix("/sleep") == true
            }
            try #require(started, "child did not start:\n\(p.output)")

            let childEnv = try Self.entries("/proc/\(child)/environ")
            let launcherEnv = try Self.entries("/proc/\(p.pid)/environ")
            let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(child)/fd").sorted()
            let launcherHasFD7 = FileManager.default.fileExists(atPath: "/proc/\(p.pid)/fd/7")
            p.signal(SIGTERM)
            #expect(p.wait(timeout: 20) == 128 + SIGTERM, "sleep dies of the relayed TERM\n\(p.output)")

            let prefix = Array("LITESTREAM_DB_PATH=".utf8)
            let dbPath = prefix + Array(sb.path("data/zz.db").utf8)
            #expect(childEnv.filter { $0.starts(with: prefix) } == [dbPath])
            let expected = launcherEnv.filter { !$0.starts(with: prefix) } + [dbPath]
            #expect(Set(childEnv) == Set(expected), "child environment differs from the launcher's")
            #expect(childEnv.count == expected.count)
            #expect(launcherEnv.contains(prefix + Array("/wrong".utf8)), "the test did not set an inherited value")
            #expect(childEnv.contains(Array("WEIRD=caf".utf8) + [0xE9] + Array("=x".utf8)))
            #expect(childEnv.contains(Array("SPACED=a  b".utf8)))
            #expect(launcherHasFD7, "the test did not give the launcher an extra descriptor")
            #expect(fds == ["0", "1", "2"])
        }

        /// The NUL-separated entries of a /proc environ file.
        static func entries(_ path: String) throws -> [[UInt8]] {
            let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            return data.split(separator: 0, omittingEmptySubsequences: true).map(Array.init)
        }

        @Test("argv after -- is passed verbatim (no shell-word parsing)")
        func argvForm() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let out = sb.path("args")
            let r = try sb.run(["-config", config, "--", "/bin/sh", "-c", #"printf '%s\n' "$@" > "$0""#, out,
                                "a  b", "'q'", "$HOME", "*", "x;y"])
            #expect(r.status == 0, "\(r.output)")
            #expect(sb.read("args") == "a  b\n'q'\n$HOME\n*\nx;y")
        }

        @Test("replicate -exec: quoting follows go-shellwords")
        func execStringWords() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let out = sb.path("args")
            // "\n" inside double quotes is `n`; `;` ends the command (the rest is dropped, as upstream does).
            let r = try sb.run(["replicate", "-config", config, "-exec",
                                #"/bin/sh -c 'printf "%s\n" "$@" > "$0"' \#(out) "a  b" 'c d' "x\ny" e\ f ; touch \#(sb.path("dropped"))"#])
            #expect(r.status == 0, "\(r.output)")
            #expect(sb.read("args") == "a  b\nc d\nxny\ne f")
            #expect(!FileManager.default.fileExists(atPath: sb.path("dropped")))
        }

        @Test("exec: in the config file")
        func execFromConfig() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig(top: "exec: sh -c 'echo from-config > \(sb.path("marker")); exit 9'")
            let r = try sb.run(["-config", config])
            #expect(r.status == 9, "\(r.output)")
            #expect(sb.read("marker") == "from-config")
        }
    }
}
