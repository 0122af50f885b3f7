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
        ListingOutput.addFlag(to: &fs)
        let flags = try parseFlags(fs, args, usage: usage)
        guard flags.positionals.isEmpty else { throw ReplicationError(.invalidInput, "too many arguments") }
        let config = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"),
                                            required: false)
        ConfigLocator.printWarnings(config)
        let output = ListingOutput(json: flags.bool("json"))
        if config.dbs.isEmpty && !output.json {
            say("No databases found in config file.")
            return 0
        }
        let rows = config.dbs.map { db in
            ListingRow(cells: [db.path, db.replicas.map(\.name).joined(separator: ",")],
                       json: ["path": db.path, "replicas": db.replicas.map { ["name": $0.name, "type": $0.type] }])
        }
        output.write(header: ["path", "replicas"], rows: rows)
        return 0
    }
}
