import Foundation
import ReplicationKit

/// Flag set and argument handling shared by `generations`, `snapshots` and `wal`.
private struct ListingArguments {
    let argument: String
    let flags: ParsedFlags
    let config: Configuration
    let output: ListingOutput

    static func parse(_ name: String, _ args: [String], usage: String, extra: (inout GoFlagSet) -> Void = { _ in }) throws -> ListingArguments {
        var fs = GoFlagSet(name: name)
        ConfigFlags.add(to: &fs)
        fs.string("replica", usage: "Optional, filter by a specific replica.")
        ListingOutput.addFlag(to: &fs)
        extra(&fs)
        let flags = try parseFlags(fs, args, usage: usage)
        guard let arg = flags.positionals.first, !arg.isEmpty else {
            throw ReplicationError(.invalidInput, "database path or replica URL required")
        }
        guard flags.positionals.count == 1 else { throw ReplicationError(.invalidInput, "too many arguments") }
        let config = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"),
                                            required: false)
        ConfigLocator.printWarnings(config)
        return ListingArguments(argument: arg, flags: flags, config: config, output: ListingOutput(json: flags.bool("json")))
    }
}

/// `launcher generations DB_PATH|REPLICA_URL`
enum GenerationsCommand {
    static let usage = """
    The generations command lists all generations for a database or replica. It also
    lists stats about their lag behind the primary database and the time range they cover.

    Usage:

    \tlauncher generations [arguments] DB_PATH

    \tlauncher generations [arguments] REPLICA_URL

    Arguments:
    """

    static func run(_ args: [String]) throws -> Int32 {
        let a = try ListingArguments.parse("generations", args, usage: usage)
        let (db, replicas) = try ReplicaResolver.resolve(argument: a.argument, config: a.config,
                                                         replicaName: a.flags.string("replica"))
        // Last change of the primary: the later mtime of the database and its WAL.
        var updatedAt: Date?
        if let db {
            let dates = [db.path, db.path + "-wal"].compactMap { try? FileSystem.info($0)?.modified }
            updatedAt = dates.max()
        }
        var rows: [ListingRow] = []
        var failed = false
        for r in replicas {
            do {
                for g in try r.client.generations() {
                    let listing = GenerationListing(generation: g, snapshots: try r.client.snapshots(generation: g),
                                                    segments: try r.client.walSegments(generation: g))
                    do {
                        let b = try RestorePlanner.bounds(of: listing)
                        let lagMS = updatedAt.map { Int64($0.timeIntervalSince(b.end) * 1000) }
                        let lag = lagMS.map { GoDuration.formatLag(.milliseconds($0)) } ?? "-"
                        rows.append(ListingRow(
                            cells: [r.name, g.name, lag, rfc3339(b.start), rfc3339(b.end)],
                            json: ["replica": r.name, "generation": g.name, "lag_ms": lagMS.map { $0 as Any } ?? NSNull(),
                                   "start": ListingOutput.time(b.start), "end": ListingOutput.time(b.end)]))
                    } catch {
                        FileHandle.standardError.write(Data("\(r.name): cannot determine generation time bounds: \(error.oneLine)\n".utf8))
                        failed = true
                    }
                }
            } catch {
                FileHandle.standardError.write(Data("\(r.name): cannot list generations: \(error.oneLine)\n".utf8))
                failed = true
            }
        }
        a.output.write(header: ["name", "generation", "lag", "start", "end"], rows: rows)
        return failed ? 1 : 0
    }
}

/// `launcher snapshots DB_PATH|REPLICA_URL`
enum SnapshotsCommand {
    static let usage = """
    The snapshots command lists all snapshots available for a database or replica.

    Usage:

    \tlauncher snapshots [arguments] DB_PATH

    \tlauncher snapshots [arguments] REPLICA_URL

    Arguments:
    """

    static func run(_ args: [String]) throws -> Int32 {
        let a = try ListingArguments.parse("snapshots", args, usage: usage)
        let (_, replicas) = try ReplicaResolver.resolve(argument: a.argument, config: a.config,
                                                        replicaName: a.flags.string("replica"))
        var items: [(String, SnapshotInfo)] = []
        var failed = false
        for r in replicas {
            do {
                for g in try r.client.generations() {
                    items += try r.client.snapshots(generation: g).map { (r.name, $0) }
                }
            } catch {
                a.output.failure("\(r.name): cannot determine snapshots: \(error.oneLine)")
                failed = true
            }
        }
        // Newest first; ties broken by replica, generation and index so the output is stable.
        items.sort { l, r in
            if l.1.createdAt != r.1.createdAt { return l.1.createdAt > r.1.createdAt }
            return (l.0, l.1.generation.value, l.1.index) < (r.0, r.1.generation.value, r.1.index)
        }
        let rows = items.map { name, s in
            ListingRow(cells: [name, s.generation.name, Hex.format(s.index, width: 16), String(s.size), rfc3339(s.createdAt)],
                       json: ["replica": name, "generation": s.generation.name, "index": Int(s.index), "size": Int(s.size),
                              "created": ListingOutput.time(s.createdAt)])
        }
        a.output.write(header: ["replica", "generation", "index", "size", "created"], rows: rows)
        return failed ? 1 : 0
    }
}

/// `launcher wal DB_PATH|REPLICA_URL`
enum WALCommand {
    static let usage = """
    The wal command lists all wal segments available for a database.

    Usage:

    \tlauncher wal [arguments] DB_PATH

    \tlauncher wal [arguments] REPLICA_URL

    Arguments:
    """

    static func run(_ args: [String]) throws -> Int32 {
        let a = try ListingArguments.parse("wal", args, usage: usage) { fs in
            fs.string("generation", usage: "Optional, filter by a specific generation.")
        }
        let (_, replicas) = try ReplicaResolver.resolve(argument: a.argument, config: a.config,
                                                        replicaName: a.flags.string("replica"))
        let only = a.flags.string("generation")
        var items: [(String, WALSegmentInfo)] = []
        var failed = false
        for r in replicas {
            let generations: [Generation]
            do {
                generations = try r.client.generations().filter { only.isEmpty || $0.name == only }
            } catch {
                a.output.failure("\(r.name): cannot determine generations: \(error.oneLine)")
                failed = true
                continue
            }
            for g in generations {
                do {
                    items += try r.client.walSegments(generation: g).map { (r.name, $0) }
                } catch {
                    a.output.failure("\(r.name): cannot fetch wal segments: \(error.oneLine)")
                    failed = true
                }
            }
        }
        items.sort { l, r in
            if l.1.createdAt != r.1.createdAt { return l.1.createdAt > r.1.createdAt }
            return (l.0, l.1.generation.value, l.1.index, l.1.offset) < (r.0, r.1.generation.value, r.1.index, r.1.offset)
        }
        let rows = items.map { name, s in
            ListingRow(cells: [name, s.generation.name, Hex.format(s.index, width: 16), Hex.format(s.offset, width: 16),
                               String(s.size), rfc3339(s.createdAt)],
                       json: ["replica": name, "generation": s.generation.name, "index": Int(s.index), "offset": Int(s.offset),
                              "size": Int(s.size), "created": ListingOutput.time(s.createdAt)])
        }
        a.output.write(header: ["replica", "generation", "index", "offset", "size", "created"], rows: rows)
        return failed ? 1 : 0
    }
}
