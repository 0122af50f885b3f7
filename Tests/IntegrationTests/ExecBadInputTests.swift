import Foundation
import Testing

extension ExecTests {
    /// Bad `-exec` input: a one-line error and exit 1 before anything is spawned.
    @Suite struct ExecBadInputTests {
        enum Case: String, CaseIterable, CustomTestStringConvertible {
            case emptyExec, blankExec, unbalancedQuote, trailingBackslash, execAndDoubleDash, emptyAfterDoubleDash,
                 missingDatabaseDirectory, badShutdownTimeout
            var testDescription: String { rawValue }
        }

        @Test("bad input is a one-line error, exit 1, nothing spawned", arguments: Case.allCases)
        func rejected(_ c: Case) throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let marker = sb.path("spawned")
            let touch = "touch \(marker)"
            var config = try sb.writeConfig()
            let args: [String]
            let message: String
            switch c {
            case .emptyExec:
                args = ["-config", config, "-exec", ""]
                message = "cannot parse exec command: empty command"
            case .blankExec:
                args = ["-config", config, "-exec", " \t "]
                message = "cannot parse exec command: empty command"
            case .unbalancedQuote:
                args = ["-config", config, "-exec", "sh -c '\(touch)"]
                message = "cannot parse exec command: invalid command line string"
            case .trailingBackslash:
                args = ["-config", config, "-exec", "\(touch) \\"]
                message = "cannot parse exec command: invalid command line string"
            case .execAndDoubleDash:
                args = ["-config", config, "-exec", touch, "--", "touch", marker]
                message = "cannot use -exec together with a command after --"
            case .emptyAfterDoubleDash:
                args = ["-config", config, "--"]
                message = "cannot parse exec command: empty command after --"
            case .missingDatabaseDirectory:
                config = try sb.writeConfig(dbs: [sb.path("no/such/dir/app.db")])
                args = ["-config", config, "-exec", touch]
                message = "database directory does not exist: \(sb.path("no/such/dir"))"
            case .badShutdownTimeout:
                args = ["-config", config, "-shutdown-timeout", "soon", "-exec", touch]
                message = #"invalid value "soon" for flag -shutdown-timeout: parse error"#
            }
            let r = try sb.run(args, timeout: 20)
            #expect(r.status == 1, "\(r.output)")
            let lines = nonEmptyLines(r.output)
            #expect(lines.count == 1 && lines[0].hasPrefix(message), "\(r.output)")
            #expect(!FileManager.default.fileExists(atPath: marker), "the command was spawned")
            #expect(!FileManager.default.fileExists(atPath: sb.db), "the database was created")
        }
    }
}
