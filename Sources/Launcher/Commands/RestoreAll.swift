import Foundation
import Logging
import ReplicationKit

/// `launcher restore -config PATH` without a database argument: restores every database of the config to its own
/// path (the init-container use), one after the other, and ends with one summary line per database.
enum RestoreAll {
    /// What happened to one database.
    enum Outcome {
        case restored(replica: String, generation: Generation, index: UInt32)
        case skipped(String)
        case failed(String)

        /// The summary line for `path`.
        func line(_ path: String) -> String {
            switch self {
            case .restored(let replica, let generation, let index):
                return "restored \(path) from replica \"\(replica)\" generation \(generation.name) index \(Hex.format(index, width: 8))"
            case .skipped(let why): return "skipped \(path): \(why)"
            case .failed(let why): return "failed \(path): \(why)"
            }
        }

        var isFailure: Bool { if case .failed = self { true } else { false } }
    }

    /// Restores every database of `-config`; 1 when any database failed, else 0.
    static func run(_ flags: ParsedFlags) throws -> Int32 {
        if !flags.string("o").isEmpty {
            throw ReplicationError(.invalidInput, "-o cannot be used without a database argument: each database of "
                + "the config is restored to its own path (give DB_PATH to restore one database elsewhere)")
        }
        if !flags.string("generation").isEmpty || flags.hex32("index") != nil {
            throw ReplicationError(.invalidInput, "-generation and -index name one database's backup: give DB_PATH "
                + "to use them (every database of the config is restored otherwise)")
        }
        let template = try RestoreCommand.pointInTime(flags)
        let config = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"),
                                            required: true)
        ConfigLocator.printWarnings(config)
        guard !config.dbs.isEmpty else {
            throw ReplicationError(.config, "\(flags.string("config")): no databases in the config (dbs: is empty)")
        }
        let logger = Logger(label: "launcher.restore")
        var outcomes: [(String, Outcome)] = []
        for db in config.dbs {
            var options = template
            options.outputPath = db.path
            let outcome = restore(db, options: options, replicaName: flags.string("replica"),
                                  ifDBNotExists: flags.bool("if-db-not-exists"),
                                  ifReplicaExists: flags.bool("if-replica-exists"), logger: logger)
            outcomes.append((db.path, outcome))
        }
        for (path, outcome) in outcomes { say(outcome.line(path)) }
        let failed = outcomes.filter { $0.1.isFailure }.count
        if failed > 0 { say("restore: \(failed) of \(outcomes.count) databases failed") }
        return failed > 0 ? 1 : 0
    }

    /// Restores one database, turning every error into an outcome so the next database is still attempted.
    static func restore(_ db: DatabaseConfig, options: RestoreOptions, replicaName: String, ifDBNotExists: Bool,
                        ifReplicaExists: Bool, logger: Logger) -> Outcome {
        if FileManager.default.fileExists(atPath: db.path) {
            return ifDBNotExists ? .skipped("database already exists")
                : .failed("output file already exists (add -if-db-not-exists to skip existing databases)")
        }
        let noBackup = ifReplicaExists ? Outcome.skipped("no matching backups found")
            : .failed("no matching backups found (add -if-replica-exists to skip databases without a backup)")
        let selected = db.replicas.filter { replicaName.isEmpty || $0.name == replicaName }
        if db.replicas.isEmpty, let upstream = db.upstreamURL {
            return .skipped("live read replica of \(upstream): it fetches its copy from there")
        }
        if db.replicas.isEmpty { return ifReplicaExists ? .skipped("database has no replicas") : .failed("database has no replicas") }
        if selected.isEmpty { return .failed("replica \"\(replicaName)\" not found") }
        do {
            let clients = try selected.map { (name: $0.name, client: try ReplicaClientFactory.make($0)) }
            let choice = try Restorer.restore(replicas: clients, options: options, logger: logger)
            return .restored(replica: choice.name, generation: choice.plan.generation, index: choice.plan.targetIndex)
        } catch where RestorePlanner.isNoMatchingBackups(error) {
            return noBackup
        } catch {
            return .failed(error.oneLine)
        }
    }
}
