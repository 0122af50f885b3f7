import Foundation
import Testing
import ReplicationKit
@testable import Launcher

private func restoreFlags() -> GoFlagSet {
    var fs = GoFlagSet(name: "litestream-restore")
    fs.string("config", usage: "Specifies path to configuration file.")
    fs.bool("no-expand-env", usage: "Disables environment variable expansion in configuration file.")
    fs.string("o", usage: "output path")
    fs.string("replica", usage: "replica name")
    fs.string("generation", usage: "generation name")
    fs.hex32("index", usage: "restore up to a specific WAL index (inclusive)")
    fs.string("timestamp", usage: "restore to a specific point-in-time")
    fs.bool("if-db-not-exists", usage: "skip if the database exists")
    fs.bool("if-replica-exists", usage: "skip if no backups")
    fs.int("parallelism", default: 8, usage: "number of WAL files to download in parallel")
    return fs
}

private func flagError(_ fs: GoFlagSet, _ args: [String]) -> GoFlagError? {
    do {
        _ = try fs.parse(args)
        return nil
    } catch {
        return error
    }
}

@Suite struct GoFlagSetTests {
    @Test func stopsAtFirstPositional() throws {
        let p = try restoreFlags().parse(["/db", "-o", "x"])
        #expect(p.positionals == ["/db", "-o", "x"])
        #expect(!p.isSet("o") && p.string("o") == "")
    }

    @Test func singleAndDoubleDash() throws {
        let p = try restoreFlags().parse(["--config", "/etc/a.yml", "-o=/tmp/out", "--replica=s3", "/db"])
        #expect(p.string("config") == "/etc/a.yml")
        #expect(p.string("o") == "/tmp/out")
        #expect(p.string("replica") == "s3")
        #expect(p.positionals == ["/db"])
        #expect(p.isSet("config") && !p.isSet("generation"))
    }

    @Test func boolFlags() throws {
        let fs = restoreFlags()
        #expect(try fs.parse(["-no-expand-env"]).bool("no-expand-env"))
        #expect(try !fs.parse(["-no-expand-env=false"]).bool("no-expand-env"))
        #expect(try fs.parse(["--if-db-not-exists=1"]).bool("if-db-not-exists"))
        for v in ["true", "t", "T", "TRUE", "True", "1"] {
            #expect(try fs.parse(["-if-replica-exists=\(v)"]).bool("if-replica-exists"))
        }
        for v in ["false", "f", "F", "FALSE", "False", "0"] {
            #expect(try !fs.parse(["-if-replica-exists=\(v)"]).bool("if-replica-exists"))
        }
        // "-b false": false becomes the first positional.
        let p = try fs.parse(["-no-expand-env", "false", "/db"])
        #expect(p.bool("no-expand-env") && p.positionals == ["false", "/db"])
        #expect(flagError(fs, ["-no-expand-env=yes"]) == .message(#"invalid boolean value "yes" for -no-expand-env: parse error"#))
    }

    @Test func errors() {
        let fs = restoreFlags()
        #expect(flagError(fs, ["-x"]) == .message("flag provided but not defined: -x"))
        #expect(flagError(fs, ["--bogus=1", "/db"]) == .message("flag provided but not defined: -bogus"))
        #expect(flagError(fs, ["-o"]) == .message("flag needs an argument: -o"))
        #expect(flagError(fs, ["-index", "zz"]) == .message(#"invalid value "zz" for flag -index: invalid hexadecimal format"#))
        #expect(flagError(fs, ["-index", "0x10"]) == .message(#"invalid value "0x10" for flag -index: invalid hexadecimal format"#))
        #expect(flagError(fs, ["-index=100000000"]) == .message(#"invalid value "100000000" for flag -index: invalid hexadecimal format"#))
        #expect(flagError(fs, ["-parallelism", "abc"]) == .message(#"invalid value "abc" for flag -parallelism: parse error"#))
        #expect(flagError(fs, ["-parallelism", "99999999999999999999"]) == .message(#"invalid value "99999999999999999999" for flag -parallelism: value out of range"#))
        #expect(flagError(fs, ["---o", "x"]) == .message("bad flag syntax: ---o"))
        #expect(flagError(fs, ["-=x"]) == .message("bad flag syntax: -=x"))
    }

    @Test func help() throws {
        let fs = restoreFlags()
        #expect(flagError(fs, ["-h"]) == .helpRequested)
        #expect(flagError(fs, ["-help"]) == .helpRequested)
        #expect(flagError(fs, ["--help"]) == .helpRequested)
        #expect(flagError(fs, ["/db", "-h"]) == nil)  // after a positional: not a flag
        var withH = GoFlagSet(name: "x")
        withH.bool("h", usage: "human")
        #expect(try withH.parse(["-h"]).bool("h"))
    }

    @Test func doubleDashAndLoneDash() throws {
        let fs = restoreFlags()
        var p = try fs.parse(["-o", "out", "--", "-config", "x"])
        #expect(p.string("o") == "out" && p.positionals == ["-config", "x"])
        p = try fs.parse(["--"])
        #expect(p.positionals.isEmpty)
        p = try fs.parse(["-", "-o", "x"])
        #expect(p.positionals == ["-", "-o", "x"])
        p = try fs.parse([])
        #expect(p.positionals.isEmpty && p.int("parallelism") == 8)
    }

    @Test func valuesAndLastWins() throws {
        let fs = restoreFlags()
        let p = try fs.parse(["-index", "ff", "-parallelism", "0x10", "-o", "a", "-o", "b", "-generation", "-x"])
        #expect(p.hex32("index") == 255)
        #expect(p.int("parallelism") == 16)
        #expect(p.string("o") == "b")
        #expect(p.string("generation") == "-x")  // a value may start with a dash
        #expect(try fs.parse(["-index=-1"]).hex32("index") == -1)
        #expect(try fs.parse([]).hex32("index") == nil)
        #expect(try fs.parse(["-index=7fffffff"]).hex32("index") == Int32.max)
    }

    @Test func usageText() {
        var fs = GoFlagSet(name: "x")
        fs.string("config", usage: "Specifies `path` to config.")
        fs.bool("v", usage: "verbose")
        fs.int("parallelism", default: 8, usage: "workers")
        fs.string("addr", default: ":9090", usage: "bind address")
        #expect(fs.usageText() == """
              -addr string
                \tbind address (default ":9090")
              -config path
                \tSpecifies path to config.
              -parallelism int
                \tworkers (default 8)
              -v\tverbose

            """)
    }
}

@Suite struct TabWriterTests {
    @Test func generationsExample() {
        let out = TabWriter.render([
            ["name", "generation", "lag", "start", "end"],
            ["file", "0000000000000000", "0s", "2000-01-01T00:00:00Z", "2000-01-03T00:00:00Z"],
            ["file", "0000000000000001", "48h0m0s", "2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z"],
        ])
        #expect(out == """
            name  generation        lag      start                 end
            file  0000000000000000  0s       2000-01-01T00:00:00Z  2000-01-03T00:00:00Z
            file  0000000000000001  48h0m0s  2000-01-01T00:00:00Z  2000-01-01T00:00:00Z

            """)
        #expect(!out.contains("\t"))
    }

    @Test func headerOnly() {
        #expect(TabWriter.render([["name", "generation", "lag", "start", "end"]]) == "name  generation  lag  start  end\n")
        #expect(TabWriter.render([]) == "")
    }

    @Test func emptyLastCellKeepsTrailingSpaces() {
        let out = TabWriter.render([
            ["name", "path", "replicas"],
            ["/db/a", "x", ""],
            ["/db/long-name", "", "file"],
        ])
        #expect(out == "name           path  replicas\n/db/a          x     \n/db/long-name        file\n")
    }

    @Test func runeWidthsAndBlocks() {
        // Widths count code points; a row with fewer cells ends the column block (Go semantics).
        let out = TabWriter.render([
            ["µµ", "b"],
            ["a", "b"],
            ["only"],
            ["xxxxxx", "y"],
        ])
        #expect(out == "µµ  b\na   b\nonly\nxxxxxx  y\n")
    }
}

@Suite("restore progress setting")
struct RestoreProgressSettingTests {
    @Test func intervalFromTheEnvironment() throws {
        // Unset: a terminal line on a TTY, else a log line every 5 s (the tests' standard error is not a TTY
        // under `swift test` with its output captured, but may be one by hand: compare with the same rule).
        #expect(try RestoreCommand.progressMode(environment: [:]) == RestoreProgressMode.automatic)
        if RestoreProgressMode.automatic != .terminal {
            #expect(try RestoreCommand.progressMode(environment: ["LAUNCHER_RESTORE_PROGRESS_INTERVAL": "1500ms"])
                    == .log(interval: .milliseconds(1500)))
        }
        #expect(try RestoreCommand.progressMode(environment: ["LAUNCHER_RESTORE_PROGRESS_INTERVAL": "0"]) == .off)
        do {
            _ = try RestoreCommand.progressMode(environment: ["LAUNCHER_RESTORE_PROGRESS_INTERVAL": "soon"])
            Issue.record("an invalid interval was accepted")
        } catch {
            #expect("\(error)".contains("invalid LAUNCHER_RESTORE_PROGRESS_INTERVAL \"soon\""), "\(error)")
        }
    }
}

@Suite("log line timestamp")
struct LogTimestampTests {
    @Test("UTC, zero-padded, milliseconds truncated")
    func format() {
        #expect(StdoutLogHandler.timestamp(timeval(tv_sec: 1_733_456_789, tv_usec: 7_999)) == "2024-12-06T03:46:29.007Z")
        #expect(StdoutLogHandler.timestamp(timeval(tv_sec: 0, tv_usec: 999_999)) == "1970-01-01T00:00:00.999Z")
        #expect(StdoutLogHandler.timestamp(timeval(tv_sec: 253_402_300_799, tv_usec: 0)) == "9999-12-31T23:59:59.000Z")
    }
}
