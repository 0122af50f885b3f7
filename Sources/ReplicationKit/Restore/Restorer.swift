import Foundation
import Logging

/// What to restore and where.
public struct RestoreOptions: Sendable {
    /// The database file to create; it must not exist.
    public var outputPath: String
    /// The generation to restore from; nil picks the latest one.
    public var generation: Generation?
    /// The last WAL index to apply (inclusive); nil means the generation's highest index.
    public var index: UInt32?
    /// Point in time (v0.3 `-timestamp`): restore what the replica held at this time; excludes `index`.
    public var timestamp: Date?
    /// Number of WAL indexes downloaded concurrently; values < 1 mean 8.
    public var parallelism: Int
    /// How progress is reported (bytes written, downloaded, rate); by default one log line every 5 seconds.
    public var progress: RestoreProgressMode

    /// Creates options.
    public init(outputPath: String, generation: Generation? = nil, index: UInt32? = nil, timestamp: Date? = nil,
                parallelism: Int = 8, progress: RestoreProgressMode = .log(interval: .seconds(5))) {
        self.outputPath = outputPath
        self.generation = generation
        self.index = index
        self.timestamp = timestamp
        self.parallelism = parallelism
        self.progress = progress
    }

    /// The parallelism actually used (values < 1 fall back to 8).
    public var effectiveParallelism: Int { parallelism < 1 ? 8 : parallelism }
}

/// A replica chosen among several, with the plan for restoring from it.
public struct ReplicaRestoreChoice: Sendable {
    /// The replica's name.
    public var name: String
    /// The replica's client.
    public var client: any ReplicaClient
    /// What will be restored from it.
    public var plan: RestorePlan
}

/// Rebuilds a database from a replica: chooses generation and snapshot, downloads WAL in parallel, applies it in order.
///
/// Every method blocks; call it from a thread that may block, not from the Swift cooperative pool.
public enum Restorer {
    /// Lists the generations of `client` (only `generation` when given) with their snapshots and segments.
    public static func listings(client: any ReplicaClient, generation: Generation? = nil) throws -> [GenerationListing] {
        let gens = try generation.map { [$0] } ?? client.generations()
        return try gens.map {
            GenerationListing(generation: $0, snapshots: try client.snapshots(generation: $0),
                              segments: try client.walSegments(generation: $0))
        }
    }

    /// Chooses the generation and plans the restore from one replica (no local side effects).
    ///
    /// Throws `no matching backups found` (see `RestorePlanner.isNoMatchingBackups`) when there is nothing to restore.
    public static func plan(client: any ReplicaClient, options: RestoreOptions) throws -> RestorePlan {
        try validate(options)
        let listing: GenerationListing
        if let g = options.generation {
            listing = try listings(client: client, generation: g).first
                ?? GenerationListing(generation: g, snapshots: [], segments: [])
        } else {
            let all: [GenerationListing]
            do { all = try listings(client: client) } catch {
                throw RestoreFiles.wrap(error, "cannot determine latest generation")
            }
            guard let latest = RestorePlanner.latestGeneration(all, containing: options.timestamp) else {
                throw ReplicationError(.notFound, RestorePlanner.noMatchingBackups)
            }
            listing = latest
        }
        return try RestorePlanner.plan(listing, index: options.index, timestamp: options.timestamp)
    }

    /// Chooses the replica holding the latest data (replicas without a usable generation are skipped) and plans the restore.
    public static func plan(replicas: [(name: String, client: any ReplicaClient)],
                            options: RestoreOptions) throws -> ReplicaRestoreChoice {
        try validate(options)
        var all: [[GenerationListing]] = []
        for r in replicas {
            do { all.append(try listings(client: r.client, generation: options.generation)) } catch {
                throw RestoreFiles.wrap(error, "cannot determine latest replica")
            }
        }
        guard let i = RestorePlanner.latestReplica(all, containing: options.timestamp) else {
            throw ReplicationError(.notFound, RestorePlanner.noMatchingBackups)
        }
        let listing = RestorePlanner.latestGeneration(all[i], containing: options.timestamp)!
        let plan = try RestorePlanner.plan(listing, index: options.index, timestamp: options.timestamp)
        return ReplicaRestoreChoice(name: replicas[i].name, client: replicas[i].client, plan: plan)
    }

    /// Restores from one replica into `options.outputPath`; returns what was restored. Without an explicit
    /// generation or index, a generation that cannot be restored (a damaged or missing object) is skipped, with a
    /// warning, for the next older one (see `restore(replicas:options:logger:)`).
    @discardableResult
    public static func restore(client: any ReplicaClient, options: RestoreOptions, logger: Logger) throws -> RestorePlan {
        try restore(replicas: [(client.type, client)], options: options, logger: logger).plan
    }

    /// Restores from whichever of several named replicas holds the latest data; returns the choice made.
    ///
    /// A replica that cannot be listed (store gone, credentials revoked) is skipped with a warning. When restoring
    /// from the best candidate fails for a reason of the replica's (a damaged object, a missing segment, a read
    /// error), the next candidate is tried: the same data on another replica, then older generations (only when
    /// no generation or index was asked for). Every skip is logged with the replica, the generation and the
    /// cause; when nothing can be restored the error lists them all.
    @discardableResult
    public static func restore(replicas: [(name: String, client: any ReplicaClient)], options: RestoreOptions,
                               logger: Logger) throws -> ReplicaRestoreChoice {
        try checkOutputAbsent(options.outputPath)
        try validate(options)
        var listed: [(name: String, client: any ReplicaClient, listings: [GenerationListing])] = []
        var skipped: [String] = []
        for r in replicas {
            do {
                listed.append((r.name, r.client, try listings(client: r.client, generation: options.generation)))
            } catch {
                let why = "replica \"\(r.name)\" (\(r.client.location)): cannot list: \(error.oneLine)"
                if replicas.count == 1 { throw RestoreFiles.wrap(error, "cannot determine latest generation") }
                logger.warning("restore: skipping \(why)")
                skipped.append(why)
            }
        }
        var candidates = RestorePlanner.candidates(listed.map(\.listings), containing: options.timestamp)
        let pinned = options.generation != nil || options.index != nil
        if !pinned, candidates.count > 1, candidates[0].listing.generation != candidates[1].listing.generation,
           let a = RestorePlanner.updatedAt(of: candidates[0].listing), a == RestorePlanner.updatedAt(of: candidates[1].listing) {
            // Stores date objects to the second (S3) or so: two generations written within the same second cannot be
            // ordered by their timestamps. Say which one is taken, so a wrong guess can be corrected.
            logger.warning("restore: generations \(candidates[0].listing.generation.name) and \(candidates[1].listing.generation.name) were both last updated at \(Syscall.utcTimestamp(a)), which the store's timestamps cannot order; restoring \(candidates[0].listing.generation.name) (use -generation to choose)")
        }
        if pinned, let first = candidates.first {
            // A pinned generation/index falls back only to the same generation on another replica.
            candidates = candidates.filter { $0.listing.generation == first.listing.generation }
        }
        guard !candidates.isEmpty else {
            if let g = options.generation, let first = listed.first {
                // The planner says why the asked-for generation cannot be restored ("no snapshots available").
                _ = try RestorePlanner.plan(first.listings.first ?? GenerationListing(generation: g, snapshots: [], segments: []),
                                            index: options.index, timestamp: options.timestamp)
            }
            if skipped.isEmpty { throw ReplicationError(.notFound, RestorePlanner.noMatchingBackups) }
            throw ReplicationError(.io, "cannot restore: no replica could be read: " + skipped.joined(separator: "; "))
        }
        var lastError: (any Error)?
        for (k, c) in candidates.enumerated() {
            let r = listed[c.replica]
            let what = "replica \"\(r.name)\" (\(r.client.location)) generation \(c.listing.generation.name)"
            do {
                let plan = try RestorePlanner.plan(c.listing, index: options.index, timestamp: options.timestamp)
                try execute(plan, client: r.client, outputPath: options.outputPath,
                            parallelism: options.effectiveParallelism, progress: options.progress, logger: logger)
                if k > 0 {
                    logger.warning("restore: restored from \(what) after skipping: \(skipped.joined(separator: "; "))")
                }
                return ReplicaRestoreChoice(name: r.name, client: r.client, plan: plan)
            } catch let e as ReplicationError where e.code == .conflict || e.code == .invalidInput {
                throw e  // the output exists or the request is malformed: no other candidate can help
            } catch {
                lastError = error
                let why = "\(what): \(error.oneLine)"
                skipped.append(why)
                if k + 1 < candidates.count { logger.warning("restore: cannot restore from \(why); trying the next candidate") }
            }
        }
        if candidates.count == 1, let lastError { throw lastError }
        throw ReplicationError(.io, "cannot restore: every candidate failed: " + skipped.joined(separator: "; "))
    }

    /// Carries out `plan`: snapshot into `<out>.tmp` (its LZ4 blocks decoded in parallel), WAL indexes applied
    /// in order, quick_check, rename into place.
    ///
    /// Never replaces an existing output. On error nothing is left at `outputPath` or `<out>.tmp*`, and no worker
    /// thread outlives the call.
    public static func execute(_ plan: RestorePlan, client: any ReplicaClient, outputPath: String, parallelism: Int,
                               progress mode: RestoreProgressMode = .log(interval: .seconds(5)), logger: Logger) throws {
        let out = outputPath
        try checkOutputAbsent(out)
        let dir = RestoreFiles.parentDirectory(of: out)
        do { try FileSystem.makeDirectories(dir, mode: 0o700) } catch {
            throw RestoreFiles.wrap(error, "cannot create parent directory")
        }
        try RestoreFiles.removeLeftovers(output: out)

        let tmp = out + ".tmp"
        let downloader = plan.isSnapshotOnly ? nil : WALDownloader(
            client: client, generation: plan.generation, indexes: plan.walIndexes, prefix: tmp,
            parallelism: parallelism < 1 ? 8 : parallelism)
        var renamed = false
        let total = plan.walIndexes.reduce(plan.snapshot.size) { sum, i in i.segments.reduce(sum) { $0 + $1.size } }
        let progress = RestoreProgress(mode: mode, logger: logger, name: (out as NSString).lastPathComponent,
                                       total: total)
        defer { progress.finish() }
        do {
            // WAL downloads run while the snapshot is decompressed.
            downloader?.start()
            let pageSize = try restoreSnapshot(plan, client: client, tmp: tmp, progress: progress, logger: logger)
            if let downloader {
                var planned = plan.walIndexes.makeIterator()
                while true {
                    let item: (index: UInt32, path: String)?
                    do { item = try downloader.next() } catch { throw RestoreFiles.wrap(error, "cannot download WAL") }
                    guard let item, let p = planned.next() else { break }
                    let started = ContinuousClock.now
                    let walBytes = (try? FileSystem.info(item.path)?.size) ?? 0
                    do {
                        try WALApplier.apply(walFile: item.path, to: tmp, pageSize: pageSize) { offset in
                            p.segments.last { $0.offset <= offset }.map { client.objectName(segment: $0) }
                        }
                    } catch {
                        throw RestoreFiles.wrap(error, "cannot apply wal: \(walIndexName(p, client: client))")
                    }
                    let elapsed = ContinuousClock.now - started
                    progress.completeStep(read: p.segments.reduce(0) { $0 + $1.size },
                                          written: walBytes)
                    logger.info("applied wal \(plan.generation.name)/\(Hex.format(item.index, width: 16)) elapsed=\(GoDuration.format(elapsed))")
                }
                downloader.close()
            } else {
                logger.info("no wal files found, snapshot only")
            }
            // Nothing writes the file any more: the disk writes it back while quick_check reads it. (Writeback
            // started while the decoder was still writing cost more than it saved: see `EarlyFlush`.)
            let flush = EarlyFlush(path: tmp)
            defer { flush.wait() }
            try WALApplier.verifyDatabase(tmp, output: out)
            flush.wait()
            try FileSystem.remove(tmp + "-wal")
            try FileSystem.remove(tmp + "-shm")
            // The fsync before the rename: the one that makes the file durable, and whose errors are reported.
            let finalFD = try FileDescriptor.openForReading(tmp)
            try finalFD.sync()
            try finalFD.close()
            logger.info("renaming database from temporary location")
            try RestoreFiles.renameNoReplace(tmp, to: out)
            renamed = true
            try FileSystem.syncDirectory(dir)
        } catch {
            downloader?.close()
            for p in [tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"] { try? FileSystem.remove(p) }
            for j in downloader?.jobs ?? [] { try? FileSystem.remove(j.path) }
            if renamed { try? FileSystem.remove(out) }
            throw error
        }
    }

    /// Rejects option combinations upstream rejects.
    private static func validate(_ options: RestoreOptions) throws {
        if options.index != nil && options.timestamp != nil {
            throw ReplicationError(.invalidInput, "cannot specify index & timestamp to restore")
        }
    }

    /// Fails with `output file already exists: PATH` when something is at `path` (and for an empty path).
    private static func checkOutputAbsent(_ path: String) throws {
        guard !path.isEmpty else { throw ReplicationError(.invalidInput, "restore path required") }
        if try FileSystem.info(path) != nil {
            throw ReplicationError(.conflict, "output file already exists: \(path)")
        }
    }

    /// Decompresses the snapshot into `tmp` and returns the database page size from its header.
    ///
    /// A plain S3 client downloads large snapshots as parallel ranged GETs; every other client (including a
    /// wrapped one) is read through its `ByteSource`.
    private static func restoreSnapshot(_ plan: RestorePlan, client: any ReplicaClient, tmp: String,
                                        progress: RestoreProgress, logger: Logger) throws -> Int {
        logger.info("restoring snapshot \(plan.generation.name)/\(Hex.format(plan.snapshot.index, width: 16)) to \(tmp)")
        let name = client.objectName(snapshot: plan.snapshot)
        do {
            let fd = try FileDescriptor.create(tmp, mode: 0o600)
            defer { try? fd.close() }
            let source = try (client as? S3ReplicaClient)?.openSnapshotRanged(plan.snapshot)
                ?? client.openSnapshot(plan.snapshot)
            defer { source.close() }
            let written = try LZ4ParallelDecoder.decode(source: { try source.read(into: $0) }, to: fd.raw, path: tmp) {
                progress.update(read: $0, written: $1)
            }
            progress.completeStep(read: plan.snapshot.size, written: written)
            progress.finish()
            try fd.close()  // written back during the verification and fsynced before the rename (`execute`)
            let reader = try FileDescriptor.openForReading(tmp)
            defer { try? reader.close() }
            return try WALFileVerifier.databasePageSize(header: try reader.pread(count: WALFileVerifier.databaseHeaderSize, at: 0))
        } catch {
            throw RestoreFiles.wrap(error, "cannot restore snapshot: \(name)")
        }
    }

    /// `generations/<g>/wal/<index>` naming one WAL index in errors (the v0.3 flat layout shows a wildcard).
    private static func walIndexName(_ p: PlannedWALIndex, client: any ReplicaClient) -> String {
        guard let first = p.segments.first else { return "wal index \(Hex.format(p.index, width: 16))" }
        let object = client.objectName(segment: first)
        let dir = (object as NSString).deletingLastPathComponent
        return first.layout == .v04 ? dir : "\(dir)/\(Hex.format(p.index, width: 8))_*.wal.lz4"
    }
}

/// `fdatasync` of the restored file on a thread of its own, started once nothing writes the file any more, so the
/// disk writes it back while the verification reads it. Its result is ignored: the restore's own fsync afterwards
/// makes the file durable and reports errors, and finds little left to write. `wait()` joins the thread (more than
/// once is fine), so no thread outlives the restore.
///
/// Writeback started while the decoder was still writing (`sync_file_range` after every write, until session 10)
/// made the writeback's block allocation and I/O submission contend with the decoder's writes for the file's
/// locks: right after replicating, with the replication's own dirty pages being written, a 300 MB file restore
/// took 0.9-1.4 s of CPU instead of about 0.45 (bench/RESULTS.md, "S3 restore floor, session 10").
private final class EarlyFlush: @unchecked Sendable {
    private let done = DispatchGroup()
    private var joined = false

    init(path: String) {
        done.enter()
        let t = Thread { [done] in
            if let fd = try? FileDescriptor.openForReading(path) {
                _ = fdatasync(fd.raw)
                try? fd.close()
            }
            done.leave()
        }
        t.name = "restore-flush"
        t.start()
    }

    func wait() {
        if joined { return }
        done.wait()
        joined = true
    }
}
