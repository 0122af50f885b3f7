import CLauncherShims
import Foundation
import Logging
import ReplicationKit
import LauncherSupport

/// `launcher replicate [flags] [DB_PATH REPLICA_URL...] [-- PROGRAM ARGS...]`: replicate, optionally as the
/// supervisor of an app (`-exec`, `exec:` or the argv after `--`), and end with a final sync.
enum ReplicateCommand {
    /// More databases than this in one process cap glibc's malloc arenas at two (`launcher_cap_malloc_arenas`).
    static let manyDatabases = 8

    static let usage = """
    The replicate command starts a server to monitor & replicate databases.
    You can specify your database & replicas in a configuration file or you can
    replicate a single database file by specifying its path and its replicas in the
    command line arguments.

    With -exec (or exec: in the config, or a command after --) the launcher restores
    missing databases, opens them, then runs the command as its child: signals are
    relayed to it, orphans are reaped, and when it exits a final sync runs and the
    launcher exits with the child's status (128+N if signal N killed it, 127 if the
    program was not found, 126 if it could not be executed; non-zero if the final
    sync failed).

    Settings from the environment: LAUNCHER_IO_THREADS (threads per I/O pool:
    one pool for the databases, one per replica type and one for /stream
    sessions; default 16),
    LAUNCHER_SYNC_CONCURRENCY (databases in the final sync at once; default 16),
    LAUNCHER_LOG_LEVEL (debug for more).

    Usage:

    \tlauncher replicate [arguments]

    \tlauncher replicate [arguments] DB_PATH REPLICA_URL [REPLICA_URL...]

    \tlauncher [arguments] -- PROGRAM [ARGS...]

    Arguments:
    """

    /// Whether `Launcher.run` sends `args` here; `main` then sets up the supervision signal mask first.
    static func handles(_ args: [String]) -> Bool {
        guard let first = args.first else { return false }
        if first == "replicate" { return true }
        switch first {
        case "-h", "-help", "--help", "-version", "--version": return false
        default: return first.hasPrefix("-")
        }
    }

    /// The HTTP server's bounds: the descriptor budget left after replication's reserve, and the timeouts;
    /// `LAUNCHER_HTTP_MAX_CONNECTIONS`, `LAUNCHER_HTTP_HEADER_TIMEOUT` and `LAUNCHER_HTTP_IDLE_TIMEOUT` override them.
    static func httpLimits(databases: Int) throws -> HTTPServerLimits {
        var l = HTTPServerLimits()
        l.maxConnections = OpenFileLimit.httpConnectionBudget(databases: databases)
        let env = ProcessInfo.processInfo.environment
        if let v = env["LAUNCHER_HTTP_MAX_CONNECTIONS"], !v.isEmpty {
            guard let n = Int(v), n > 0 else {
                throw ReplicationError(.invalidInput, "LAUNCHER_HTTP_MAX_CONNECTIONS: expected a positive integer, got \(goQuote(v))")
            }
            l.maxConnections = min(n, l.maxConnections)
        }
        for (name, set) in [("LAUNCHER_HTTP_HEADER_TIMEOUT", { (d: Duration) in l.headerTimeout = d }),
                            ("LAUNCHER_HTTP_IDLE_TIMEOUT", { (d: Duration) in l.idleTimeout = d })] {
            guard let v = env[name], !v.isEmpty else { continue }
            guard let d = try? GoDuration.parse(v), d > .zero else {
                throw ReplicationError(.invalidInput, "\(name): expected a positive duration (e.g. 10s), got \(goQuote(v))")
            }
            set(d)
        }
        return l
    }

    static func run(_ args: [String]) throws -> Int32 {
        var fs = GoFlagSet(name: "replicate")
        ConfigFlags.add(to: &fs)
        fs.string("exec", usage: "Executes a subcommand. Replication stops when the subcommand exits.")
        fs.string("addr", usage: "HTTP bind address (host:port, port 0 = any): /stream for live read replicas,\n/metrics, /healthz, /readyz, /status, POST /sync.")
        fs.custom("shutdown-timeout", default: "10s",
                  usage: "Deadline for the final sync once the subcommand has exited, a Go `duration`\n(without -exec: no deadline unless given).") {
            guard let d = try? GoDuration.parse($0) else { return "parse error" }
            return d > .zero ? nil : "must be positive"
        }
        fs.bool("no-restore", usage: "Do not restore missing databases from their replicas before -exec.")
        fs.bool("lease", usage: "Hold a single-writer lease on each database's first replica (as lease: in the config).")
        fs.custom("lease-ttl", default: "", usage: "Lease time-to-live, a Go `duration` (default 30s, at least 3s); implies -lease.") {
            guard let d = try? GoDuration.parse($0) else { return "parse error" }
            return d >= LeaseConfig.minimumTTL ? nil : "must be at least \(GoDuration.format(LeaseConfig.minimumTTL))"
        }
        fs.custom("lease-wait", default: "", usage: "How long to wait for another launcher's lease, a Go `duration`\n(default: forever); implies -lease.") {
            guard let d = try? GoDuration.parse($0) else { return "parse error" }
            return d >= .zero ? nil : "must not be negative"
        }

        // `--` ends the flags; what follows is the child's argv, taken verbatim (no shell-word parsing).
        let (flagArgs, argvCommand) = splitAtDoubleDash(args)
        let flags = try parseFlags(fs, flagArgs, usage: usage)
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
        if !flags.string("addr").isEmpty { config.addr = flags.string("addr") }
        try applyLeaseFlags(flags, to: &config)
        let command = try childCommand(flags: flags, argv: argvCommand, config: config)
        // With a child the final sync must fit in the orchestrator's stop grace period (Docker: 10 s); a plain
        // `replicate` keeps upstream's unbounded final sync unless a deadline is asked for.
        let shutdownTimeout: Duration? = command != nil || flags.isSet("shutdown-timeout")
            ? (try? GoDuration.parse(flags.string("shutdown-timeout"))) ?? .seconds(10) : nil
        if command != nil { try StartupPreparation.checkDirectories(config) }

        // Normally done by `main` before anything else; repeated here (idempotent) for direct callers. No thread
        // exists yet: the restore workers, dispatch queues and the inotify thread all start below.
        SupervisorSignals.blockForSupervision()

        let logger = Logger(label: "launcher")
        logger.info("litestream-compatible launcher \(launcherVersionDescription)")
        for w in config.warnings { logger.warning("config: \(w)") }
        // Built first: it validates the databases and replicas (opening nothing), so a bad config fails before
        // any restore.
        let replicator = try Replicator(config: config, logger: logger)
        OpenFileLimit.ensure(databases: config.dbs.count, logger: logger)
        // Many databases start in a burst, and every thread of it that took a malloc arena of its own (glibc: eight
        // per core) left megabytes resident there; a few databases are better off with the default, where each
        // thread reuses its own large buffers (README "Heap after the start-up burst"). No thread exists yet.
        if config.dbs.count > manyDatabases { launcher_cap_malloc_arenas(2) }
        let health = LauncherHealth(replicator: replicator, supervisesChild: command != nil)
        // Listening before any restore, so health checks get a 503 (not a refused connection) while it runs.
        var server: HTTPServer?
        var routes: ReplicationRoutes?
        if let addr = config.addr, !addr.isEmpty {
            ReplicationMetrics.bootstrap()
            let r = ReplicationRoutes(logger: logger)
            for e in replicator.entries { r.serve(e.database) }
            for f in replicator.followers { r.refuseFollower(f.path) }
            r.setHealthSource(health)
            r.setReplicator(replicator)
            routes = r
            let s = try HTTPServer(address: addr, routes: r,
                                   limits: try Self.httpLimits(databases: config.dbs.count), logger: logger)
            logger.info("serving metrics, health and live replication on \(s.url) (/metrics /healthz /readyz /status /sync /stream)")
            server = s
        }
        defer { server?.close() }
        // Before any restore: a second launcher on the same database stops here instead of wedging the first.
        try replicator.lockDatabases()
        // The lease comes before the restore: the previous holder's final sync wrote the data restored next.
        if !replicator.leases.isEmpty {
            health.phase.withLock { $0 = .leasing }
            do {
                if let code = try StartupPreparation.acquireLeasesInterruptibly(replicator, logger: logger) {
                    server?.close()
                    _exit(code)
                }
            } catch let e as ReplicationError where e.code == .conflict {
                logger.error("\(e.message)")
                return SupervisorStateMachine.leaseLostExitCode
            }
            health.phase.withLock { $0 = .restoring }
        }
        if command != nil, let code = try StartupPreparation.prepareDatabasesInterruptibly(
            config, restore: !flags.bool("no-restore"), logger: logger) {
            // Restoring writes no replica, so the leases can go; the restore thread may still be inside a
            // download: leave without running exit handlers under it.
            replicator.releaseLeases()
            server?.close()
            _exit(code)
        }
        health.phase.withLock { $0 = .tracking }
        // With an app to start, only what protects replication from the app's first writes comes before the spawn:
        // the locks, our tables and the read guards (`Replicator.hold`, no fsync). The shadow generation with its
        // fsyncs, the first sync and the replicas follow while the app starts (`afterSpawn` below): a crash in
        // between leaves what any interrupted sync leaves, and the next start continues from it. Followers keep the
        // full start first: the app waits for their first snapshot anyway.
        let startAfterSpawn = command != nil && replicator.followers.isEmpty
        do {
            if startAfterSpawn { try replicator.hold() } else { try replicator.start() }
        } catch {
            _ = replicator.shutdown()
            throw error
        }
        if !startAfterSpawn { routes?.enableSync() }
        // The app never starts on an empty database: a follower waits for its first snapshot.
        if command != nil, !replicator.followers.isEmpty, let code = StartupPreparation.waitForFollowers(replicator, logger: logger) {
            _ = replicator.shutdown()
            return code
        }
        logger.info("litestream initialization complete")

        var environment: [(name: String, value: String)] = []
        if let first = config.dbs.first { environment.append(("LITESTREAM_DB_PATH", first.path)) }
        let supervisor = Supervisor(replicator: replicator, logger: logger, shutdownTimeout: shutdownTimeout,
                                    supervisesChild: command != nil, health: health)
        return supervisor.run(command: command, environment: environment) {
            guard startAfterSpawn else { return }
            // Returns at once: each database's open and first sync run on its own queue, before anything the final
            // sync queues there. Only the watcher or a lock could fail here, and `hold()` has set up both.
            do { try replicator.start(firstSyncsInBackground: true) } catch {
                logger.error("starting replication: \(error.oneLine)")
            }
            routes?.enableSync()
        }
    }

    /// `-lease`, `-lease-ttl` and `-lease-wait` give every database a lease (on its first replica unless the config
    /// names another), overriding the config's ttl and wait.
    static func applyLeaseFlags(_ flags: ParsedFlags, to config: inout Configuration) throws {
        guard flags.bool("lease") || flags.isSet("lease-ttl") || flags.isSet("lease-wait") else { return }
        for i in config.dbs.indices where config.dbs[i].upstreamURL == nil {
            var lease = config.dbs[i].lease ?? config.lease ?? LeaseConfig()
            if flags.isSet("lease-ttl"), let d = try? GoDuration.parse(flags.string("lease-ttl")) { lease.ttl = d }
            if flags.isSet("lease-wait"), let d = try? GoDuration.parse(flags.string("lease-wait")) { lease.wait = d }
            config.dbs[i].lease = lease
            do { try config.dbs[i].checkLease() } catch let e as ReplicationError {
                throw ReplicationError(.config, "-lease: database \(config.dbs[i].path): \(e.message)")
            }
        }
    }

    /// Splits `args` at the first `--`: the flags and positionals before it, and the argv after it (nil without `--`).
    static func splitAtDoubleDash(_ args: [String]) -> (flags: [String], argv: [String]?) {
        guard let i = args.firstIndex(of: "--") else { return (args, nil) }
        return (Array(args[..<i]), Array(args[(i + 1)...]))
    }

    /// The child's argv from `-- argv`, `-exec` or the config's `exec:` (in that precedence); nil without one.
    static func childCommand(flags: ParsedFlags, argv: [String]?, config: Configuration) throws -> [String]? {
        if let argv {
            if flags.isSet("exec") {
                throw ReplicationError(.invalidInput, "cannot use -exec together with a command after --")
            }
            guard let program = argv.first, !program.isEmpty else {
                throw ReplicationError(.invalidInput, "cannot parse exec command: empty command after --")
            }
            return argv
        }
        let line: String
        if flags.isSet("exec") {
            line = flags.string("exec")
        } else if let e = config.exec, !e.isEmpty {
            line = e
        } else {
            return nil
        }
        do {
            let words = try ShellWords.command(line)
            if words[0].isEmpty { throw ShellWords.ParseError.empty }
            return words
        } catch {
            throw ReplicationError(.invalidInput, "cannot parse exec command: \(error)")
        }
    }
}
