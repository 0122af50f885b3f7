import Foundation
import ReplicationKit

/// `launcher databases`: the databases of the config and their replica names.
enum DatabasesCommand {
    static let usage = """
    The databases command lists all databases in the configuration file.

    Usage:

    \tlauncher databases [arguments]

    Arguments:
    """

    static func run(_ args: [String]) throws -> Int32 {
        var fs = GoFlagSet(name: "databases")
        ConfigFlags.add(to: &fs)
        let flags = try parseFlags(fs, args, usage: usage)
        guard flags.positionals.isEmpty else { throw ReplicationError(.invalidInput, "too many arguments") }
        let config = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"),
                                            required: false)
        ConfigLocator.printWarnings(config)
        if config.dbs.isEmpty {
            say("No databases found in config file.")
            return 0
        }
        var rows = [["path", "replicas"]]
        for db in config.dbs {
            rows.append([db.path, db.replicas.map(\.name).joined(separator: ",")])
        }
        StdoutWriter.write(TabWriter.render(rows))
        return 0
    }
}
