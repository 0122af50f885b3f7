import Foundation
import ReplicationKit

/// Flag set and argument handling shared by `generations`, `snapshots` and `wal`.
private struct ListingArguments {
    let argument: String
    let flags: ParsedFlags
    let config: Configuration

    static func parse(_ name: String, _ args: [String], usage: String, extra: (inout GoFlagSet) -> Void = { _ in }) throws -> ListingArguments {
        var fs = GoFlagSet(name: name)
        ConfigFlags.add(to: &fs)
        fs.string("replica", usage: "Optional, filter by a specific replica.")
        extra(&fs)
        let flags = try parseFlags(fs, args, usage: usage)
        guard let arg = flags.positionals.first, !arg.isEmpty else {
            throw ReplicationError(.invalidInput, "database path or replica URL required")
        }
        guard flags.positionals.count == 1 else { throw ReplicationError(.invalidInput, "too many arguments") }
        let config = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"),
                                            required: false)
        ConfigLocator.printWarnings(config)
        return ListingArguments(argument: arg, flags: flags, config: config)
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
        var rows = [["name", "generation", "lag", "start", "end"]]
        var failed = false
        for r in replicas {
            do {
                for g in try r.client.generations() {
                    let listing = GenerationListing(generation: g, snapshots: try r.client.snapshots(generation: g),
                                                    segments: try r.client.walSegments(generation: g))
                    do {
                        let b = try RestorePlanner.bounds(of: listing)
                        let lag = updatedAt.map { GoDuration.formatLag(.milliseconds(Int64($0.timeIntervalSince(b.end) * 1000))) } ?? "-"
                        rows.append([r.name, g.name, lag, rfc3339(b.start), rfc3339(b.end)])
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
        StdoutWriter.write(TabWriter.render(rows))
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
                say("\(r.name): cannot determine snapshots: \(error.oneLine)")
                failed = true
            }
        }
        // Newest first; ties broken by replica, generation and index so the output is stable.
        items.sort { l, r in
            if l.1.createdAt != r.1.createdAt { return l.1.createdAt > r.1.createdAt }
            return (l.0, l.1.generation.value, l.1.index) < (r.0, r.1.generation.value, r.1.index)
        }
        var rows = [["replica", "generation", "index", "size", "created"]]
        for (name, s) in items {
            rows.append([name, s.generation.name, Hex.format(s.index, width: 16), String(s.size), rfc3339(s.createdAt)])
        }
        StdoutWriter.write(TabWriter.render(rows))
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
                say("\(r.name): cannot determine generations: \(error.oneLine)")
                failed = true
                continue
            }
            for g in generations {
                do {
                    items += try r.client.walSegments(generation: g).map { (r.name, $0) }
                } catch {
                    say("\(r.name): cannot fetch wal segments: \(error.oneLine)")
                    failed = true
                }
            }
        }
        items.sort { l, r in
            if l.1.createdAt != r.1.createdAt { return l.1.createdAt > r.1.createdAt }
            return (l.0, l.1.generation.value, l.1.index, l.1.offset) < (r.0, r.1.generation.value, r.1.index, r.1.offset)
        }
        var rows = [["replica", "generation", "index", "offset", "size", "created"]]
        for (name, s) in items {
            rows.append([name, s.generation.name, Hex.format(s.index, width: 16), Hex.format(s.offset, width: 16),
                         String(s.size), rfc3339(s.createdAt)])
        }
        StdoutWriter.write(TabWriter.render(rows))
        return failed ? 1 : 0
    }
}
