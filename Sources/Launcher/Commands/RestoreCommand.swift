import Foundation
import Logging
import ReplicationKit

/// `launcher restore [flags] DB_PATH|REPLICA_URL`: rebuild a database from a replica (INTERFACES §1.5).
enum RestoreCommand {
    static let usage = """
    The restore command recovers a database from a previous snapshot and WAL.

    Usage:

    \tlauncher restore [arguments] DB_PATH

    \tlauncher restore [arguments] REPLICA_URL

    \tlauncher restore -config PATH [arguments]

    By default, the replica and generation holding the newest data are used, all WAL
    is replayed, and the database is written to its original path. The output file
    is never overwritten: the restore is built in <output>.tmp, verified, then renamed.

    With -config and no database argument, every database of the config is restored
    to its path (e.g. in an init container), one summary line each; -if-db-not-exists
    and -if-replica-exists apply to each database, and the exit status is 1 when any
    database failed (the others are still restored).

    Progress (bytes written and downloaded, rate) is one line rewritten in place when
    standard error is a terminal, else a log line every 5 seconds
    (LAUNCHER_RESTORE_PROGRESS_INTERVAL=DURATION changes the interval, 0 turns it off).

    Arguments:
    """

    static let examples = """
    Examples:

    \t# Restore latest replica for database to original location.
    \t$ launcher restore /path/to/db

    \t# Restore latest replica for database to new /tmp directory
    \t$ launcher restore -o /tmp/db /path/to/db

    \t# Restore database from latest generation on S3.
    \t$ launcher restore -replica s3 /path/to/db

    \t# Restore every database of a config that is not there yet.
    \t$ launcher restore -config /etc/litestream.yml -if-db-not-exists -if-replica-exists

    \t# Restore database to the state of 2024-01-02 03:04:05 UTC.
    \t$ launcher restore -o /tmp/db -timestamp 2024-01-02T03:04:05Z file:///backups/db
    """

    static func run(_ args: [String]) throws -> Int32 {
        var fs = GoFlagSet(name: "restore")
        ConfigFlags.add(to: &fs)
        fs.string("o", usage: "Output path of the restored database.\nDefaults to original DB path.")
        fs.string("replica", usage: "Restore from a specific replica.\nDefaults to replica with latest data.")
        fs.string("generation", usage: "Restore from a specific generation.\nDefaults to generation with latest data.")
        fs.hex32("index", usage: "Restore up to a specific hex-encoded WAL index (inclusive).\nDefaults to use the highest available index.")
        fs.string("timestamp", usage: "Restore to a specific point-in-time (RFC 3339, e.g. 2000-01-01T00:00:00Z).\nDefaults to the latest data.")
        fs.int("parallelism", default: 8, usage: "Determines the number of WAL files downloaded in parallel.")
        fs.bool("if-db-not-exists", usage: "Returns exit code of 0 if the database already exists.")
        fs.bool("if-replica-exists", usage: "Returns exit code of 0 if no backups found.")
        fs.bool("v", usage: "Verbose output (accepted for compatibility; progress is always logged).")
        let flags: ParsedFlags
        do {
            flags = try parseFlags(fs, args, usage: usage)
        } catch GoFlagError.helpRequested {
            say(examples)
            throw GoFlagError.helpRequested
        }

        let pos = flags.positionals
        if pos.isEmpty && !flags.string("config").isEmpty { return try RestoreAll.run(flags) }
        guard let arg = pos.first, !arg.isEmpty else {
            throw ReplicationError(.invalidInput, "database path or replica URL required (or -config PATH to restore every database in it)")
        }
        guard pos.count == 1 else { throw ReplicationError(.invalidInput, "too many arguments") }

        var options = try pointInTime(flags)
        options.outputPath = flags.string("o")
        let isURL = ReplicaURL.isURL(arg)
        if options.outputPath.isEmpty && !isURL { options.outputPath = arg }
        if !options.outputPath.isEmpty {
            options.outputPath = PathExpansion.expand(options.outputPath)
            if FileManager.default.fileExists(atPath: options.outputPath) {
                if flags.bool("if-db-not-exists") {
                    say("database already exists, skipping")
                    return 0
                }
                throw ReplicationError(.conflict, "output file already exists: \(options.outputPath)")
            }
        }

        let config = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"),
                                            required: false)
        ConfigLocator.printWarnings(config)
        let replicaName = flags.string("replica")
        var candidates: [(name: String, client: any ReplicaClient)] = []
        if isURL {
            if !replicaName.isEmpty {
                throw ReplicationError(.invalidInput, "cannot specify both the replica URL and the -replica flag")
            }
            if options.outputPath.isEmpty {
                throw ReplicationError(.invalidInput, "output path required when using a replica URL (add -o PATH)")
            }
            let rc = try config.replica(url: arg)
            candidates = [(rc.name, try ReplicaClientFactory.make(rc))]
        } else {
            let path = PathExpansion.expand(arg)
            guard let db = config.database(path: path) else {
                throw ReplicationError(.notFound, "database not found in config: \(path)")
            }
            guard !db.replicas.isEmpty else { throw ReplicationError(.notFound, "database has no replicas: \(path)") }
            for rc in db.replicas where replicaName.isEmpty || rc.name == replicaName {
                candidates.append((rc.name, try ReplicaClientFactory.make(rc)))
            }
            if candidates.isEmpty { throw ReplicationError(.notFound, "replica \"\(replicaName)\" not found") }
            if candidates.count > 1 && options.generation != nil {
                throw ReplicationError(.invalidInput, "must specify -replica flag when restoring from a specific generation")
            }
        }

        let logger = Logger(label: "launcher.restore")
        do {
            if candidates.count == 1 {
                _ = try Restorer.restore(client: candidates[0].client, options: options, logger: logger)
            } else {
                _ = try Restorer.restore(replicas: candidates, options: options, logger: logger)
            }
        } catch where RestorePlanner.isNoMatchingBackups(error) && flags.bool("if-replica-exists") {
            say("no matching backups found, skipping")
            return 0
        }
        return 0
    }

    /// The flags every restore shares: `-parallelism`, `-generation`, `-index` (needs `-generation`) and
    /// `-timestamp` (excludes `-index`), checked and folded into options without an output path.
    static func pointInTime(_ flags: ParsedFlags) throws -> RestoreOptions {
        var options = RestoreOptions(outputPath: "", parallelism: flags.int("parallelism"), progress: try progressMode())
        if let i = flags.hex32("index") {
            guard !flags.string("generation").isEmpty else {
                throw ReplicationError(.invalidInput, "must specify -generation flag when using -index flag")
            }
            options.index = UInt32(i)
        }
        let genName = flags.string("generation")
        if !genName.isEmpty {
            guard let g = Generation(name: genName) else {
                throw ReplicationError(.invalidInput, "invalid -generation \"\(genName)\": must be 16 lowercase hex characters")
            }
            options.generation = g
        }
        let ts = flags.string("timestamp")
        if !ts.isEmpty {
            guard let d = parseTimestamp(ts) else {
                throw ReplicationError(.invalidInput, "invalid -timestamp, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)")
            }
            if options.index != nil { throw ReplicationError(.invalidInput, "cannot specify index & timestamp to restore") }
            options.timestamp = d
        }

        return options
    }

    /// Progress of long restores: one updating line when standard error is a terminal, else a log line every
    /// 5 s (`LAUNCHER_RESTORE_PROGRESS_INTERVAL`, a Go duration, changes the interval; `0` turns the lines off).
    static func progressMode(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> RestoreProgressMode {
        guard let text = environment["LAUNCHER_RESTORE_PROGRESS_INTERVAL"], !text.isEmpty else { return .automatic }
        let interval: Duration
        do { interval = try GoDuration.parse(text) } catch {
            throw ReplicationError(.invalidInput, "invalid LAUNCHER_RESTORE_PROGRESS_INTERVAL \"\(text)\": \(error.oneLine) (e.g. 5s)")
        }
        if interval <= .zero { return .off }
        return RestoreProgressMode.automatic == .terminal ? .terminal : .log(interval: interval)
    }

    /// Parses RFC 3339 with or without fractional seconds.
    static func parseTimestamp(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }
}
