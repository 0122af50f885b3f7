import Foundation
import Logging
import ReplicationKit

/// Writes a line to stdout (through the same lock as the log, so lines never interleave).
func say(_ text: String) {
    StdoutWriter.write(text + "\n")
}

/// How the config file is found (INTERFACES §1.3, with the search order of our issue tracker).
enum ConfigLocator {
    /// The default path shown in help: `$LITESTREAM_CONFIG`, else `/etc/litestream.yml`.
    static var defaultPath: String {
        let env = ProcessInfo.processInfo.environment["LITESTREAM_CONFIG"] ?? ""
        return env.isEmpty ? "/etc/litestream.yml" : env
    }

    /// Loads the config: `-config` if given (must exist), else `$LITESTREAM_CONFIG`, `./litestream.yml`,
    /// `/etc/litestream.yml` in that order. With `required`, finding none is an error; otherwise an empty config.
    static func load(explicit: String, expandEnv: Bool, required: Bool) throws -> Configuration {
        if !explicit.isEmpty {
            return try Configuration.load(path: PathExpansion.expand(explicit), expandEnv: expandEnv)
        }
        var candidates: [String] = []
        let env = ProcessInfo.processInfo.environment["LITESTREAM_CONFIG"] ?? ""
        if !env.isEmpty { candidates.append(env) }
        candidates.append(FileManager.default.currentDirectoryPath + "/litestream.yml")
        candidates.append("/etc/litestream.yml")
        for c in candidates where FileManager.default.fileExists(atPath: c) {
            return try Configuration.load(path: c, expandEnv: expandEnv)
        }
        if required { throw ReplicationError(.config, "config file not found: \(defaultPath)") }
        return Configuration()
    }
}

extension ConfigLocator {
    /// Writes the config's warnings (keys not acted on) to stderr, so listings on stdout stay parseable.
    static func printWarnings(_ config: Configuration) {
        for w in config.warnings { FileHandle.standardError.write(Data("warning: config: \(w)\n".utf8)) }
    }
}

/// Shared flags of the config-reading commands.
struct ConfigFlags {
    /// Adds `-config` and `-no-expand-env` to a flag set.
    static func add(to fs: inout GoFlagSet) {
        fs.string("config", usage: "Specifies the configuration file.\nDefaults to \(ConfigLocator.defaultPath)")
        fs.bool("no-expand-env", usage: "Disables environment variable expansion in configuration file.")
    }
}

/// Parses flags, printing usage and signalling "help" the Go way.
func parseFlags(_ fs: GoFlagSet, _ args: [String], usage: String) throws -> ParsedFlags {
    do {
        return try fs.parse(args)
    } catch .helpRequested {
        say(usage)
        say(fs.usageText())
        throw GoFlagError.helpRequested
    } catch {
        throw error
    }
}

/// A replica to list or restore from: its name and client.
struct NamedClient {
    let name: String
    let client: any ReplicaClient
}

/// Resolves `DB_PATH | REPLICA_URL` into replicas (for the listing commands and restore).
enum ReplicaResolver {
    /// Returns the replicas of a database from the config, or the one replica of a URL argument.
    static func resolve(argument: String, config: Configuration, replicaName: String) throws -> (db: DatabaseConfig?, replicas: [NamedClient]) {
        if ReplicaURL.isURL(argument) {
            let rc = try config.replica(url: argument)
            return (nil, [NamedClient(name: rc.name, client: try ReplicaClientFactory.make(rc))])
        }
        let path = PathExpansion.expand(argument)
        guard let db = config.database(path: path) else {
            throw ReplicationError(.notFound, "database not found in config: \(path)")
        }
        var out: [NamedClient] = []
        for rc in db.replicas where replicaName.isEmpty || rc.name == replicaName {
            out.append(NamedClient(name: rc.name, client: try ReplicaClientFactory.make(rc)))
        }
        if !replicaName.isEmpty && out.isEmpty {
            throw ReplicationError(.notFound, "replica \"\(replicaName)\" not found for database \"\(db.path)\"")
        }
        return (db, out)
    }
}

/// Formats a date as UTC RFC 3339 with whole seconds, truncating as Go's `time.RFC3339` does
/// (`ISO8601DateFormatter` alone rounds, so 12:00:00.6 would print as 12:00:01).
func rfc3339(_ d: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    f.timeZone = TimeZone(identifier: "UTC")
    return f.string(from: Date(timeIntervalSince1970: d.timeIntervalSince1970.rounded(.down)))
}
