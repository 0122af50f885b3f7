import Foundation
import Logging
import ReplicationKit

/// `launcher replicate [flags] [DB_PATH REPLICA_URL...]`: replicate until SIGINT/SIGTERM, then final sync.
enum ReplicateCommand {
    static let usage = """
    The replicate command starts a server to monitor & replicate databases.
    You can specify your database & replicas in a configuration file or you can
    replicate a single database file by specifying its path and its replicas in the
    command line arguments.

    Usage:

    \tlauncher replicate [arguments]

    \tlauncher replicate [arguments] DB_PATH REPLICA_URL [REPLICA_URL...]

    Arguments:
    """

    static func run(_ args: [String]) throws -> Int32 {
        var fs = GoFlagSet(name: "replicate")
        ConfigFlags.add(to: &fs)
        fs.string("exec", usage: "Executes a subcommand. Replication stops when the subcommand exits.")
        fs.string("addr", usage: "HTTP bind address (host:port) for metrics and live read replication.")
        let flags = try parseFlags(fs, args, usage: usage)
        let pos = flags.positionals

        var config: Configuration
        if pos.count == 1 {
            throw ReplicationError(.invalidInput, "must specify at least one replica URL for \(pos[0])")
        } else if pos.count >= 2 {
            if !flags.string("config").isEmpty {
                throw ReplicationError(.invalidInput, "cannot specify a replica URL and the -config flag")
            }
            config = Configuration()
            var db = DatabaseConfig(path: pos[0])
            for url in pos.dropFirst() {
                guard ReplicaURL.isURL(url) else {
                    throw ReplicationError(.config, "replica url scheme required: \(url) (use file:///path for a directory)")
                }
                db.replicas.append(try ReplicaConfig.fromURL(url))
            }
            config.dbs = [db]
        } else {
            config = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"),
                                            required: true)
        }
        if !flags.string("exec").isEmpty { config.exec = flags.string("exec") }
        if !flags.string("addr").isEmpty { config.addr = flags.string("addr") }
        if let e = config.exec, !e.isEmpty {
            throw ReplicationError(.invalidInput, "-exec is not supported by this build yet (cannot run \"\(e)\")")
        }
        if let a = config.addr, !a.isEmpty {
            throw ReplicationError(.invalidInput, "-addr is not supported by this build yet (cannot listen on \"\(a)\")")
        }

        // Block the shutdown signals before any thread exists, so every thread inherits the mask and the
        // main thread alone receives them through sigwait.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)

        let logger = Logger(label: "launcher")
        logger.info("litestream-compatible launcher \(launcherVersion)")
        let replicator = try Replicator(config: config, logger: logger)
        do {
            try replicator.start()
        } catch {
            _ = replicator.shutdown()
            throw error
        }
        logger.info("litestream initialization complete")

        var sig: Int32 = 0
        sigwait(&set, &sig)
        logger.info("signal received, litestream shutting down")
        let failures = replicator.shutdown()
        for f in failures { logger.error("\(f)") }
        logger.info("litestream shut down")
        return failures.isEmpty ? 0 : 1
    }
}
