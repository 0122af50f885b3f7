import Foundation

/// Downloads WAL indexes on worker threads and hands them out strictly in increasing index order.
///
/// Each index is assembled into `<prefix>-<index %016x>-wal` by concatenating its decompressed segments in offset
/// order; a segment whose offset is not the number of bytes written so far is a gap (`missing WAL offset`).
/// At most `parallelism` indexes are being downloaded or waiting to be consumed at any time. An error for index k
/// is delivered when k is next; no later index is started after a failure. `close()` stops and joins the workers
/// and removes every file not yet handed out. State is guarded by one condition variable.
final class WALDownloader: @unchecked Sendable {
    /// One index to download.
    struct Job: Sendable {
        var index: UInt32
        var segments: [WALSegmentInfo]
        var path: String
    }

    private let client: any ReplicaClient
    private let generation: Generation
    private let parallelism: Int
    /// The indexes, in the order they are handed out.
    let jobs: [Job]

    private let cond = NSCondition()
    private var nextJob = 0
    private var consumed = 0
    private var results: [Int: ReplicationError?] = [:]
    private var failed = false
    private var cancelled = false
    private var running = 0
    private var started = false
    /// Set by the first `close()`: later calls (the deinit, which may run late on an exiting worker thread) must
    /// not remove files again, because by then a new restore attempt may be writing under the same names.
    private var closed = false

    /// Prepares (but does not start) a download of `indexes` into files named after `prefix`.
    init(client: any ReplicaClient, generation: Generation, indexes: [PlannedWALIndex], prefix: String, parallelism: Int) {
        self.client = client
        self.generation = generation
        self.parallelism = max(1, parallelism)
        self.jobs = indexes.map {
            Job(index: $0.index, segments: $0.segments, path: RestoreFiles.walPath(prefix: prefix, index: $0.index))
        }
    }

    deinit { close() }

    /// Starts the worker threads (at most one per index).
    func start() {
        cond.lock()
        guard !started else { cond.unlock(); return }
        started = true
        let workers = min(parallelism, jobs.count)
        running = workers
        cond.unlock()
        for n in 0..<workers {
            let t = Thread { [self] in self.work() }
            t.name = "restore-wal-\(n)"
            t.start()
        }
    }

    /// Blocks until the next index (in order) is downloaded; returns its index and file, or nil after the last one.
    ///
    /// The returned file belongs to the caller. Throws the download error of that index, or a cancellation error.
    func next() throws -> (index: UInt32, path: String)? {
        cond.lock()
        defer { cond.unlock() }
        guard consumed < jobs.count else { return nil }
        while results[consumed] == nil && !cancelled { cond.wait() }
        if cancelled { throw RestoreFiles.cancelled }
        let k = consumed
        let error = results.removeValue(forKey: k)!
        consumed += 1
        cond.broadcast()
        if let error {
            cancelled = true  // sticky: nothing after a failed index is handed out
            cond.broadcast()
            throw error
        }
        return (jobs[k].index, jobs[k].path)
    }

    /// Stops the workers, waits until every one has exited, and removes downloaded files not handed out.
    ///
    /// Only the first call does anything: the last reference may be dropped (deinit) on a worker thread after the
    /// restore moved on to another candidate whose downloads use the same file names.
    func close() {
        cond.lock()
        if closed { cond.unlock(); return }
        closed = true
        cancelled = true
        cond.broadcast()
        while running > 0 { cond.wait() }
        let first = consumed
        cond.unlock()
        for job in jobs[first...] { try? FileSystem.remove(job.path) }
    }

    private var isCancelled: Bool {
        cond.lock()
        defer { cond.unlock() }
        return cancelled
    }

    private func work() {
        cond.lock()
        while !cancelled && !failed && nextJob < jobs.count {
            if nextJob >= consumed + parallelism {
                cond.wait()
                continue
            }
            let k = nextJob
            nextJob += 1
            cond.unlock()
            let error = download(jobs[k])
            cond.lock()
            if error != nil { failed = true }
            results[k] = .some(error)
            cond.broadcast()
        }
        running -= 1
        cond.broadcast()
        cond.unlock()
    }

    /// Assembles one index; on failure removes the partial file and returns the error.
    private func download(_ job: Job) -> ReplicationError? {
        do {
            let fd = try FileDescriptor.create(job.path, mode: 0o600)
            defer { try? fd.close() }
            var written: UInt64 = 0
            var previous: String?
            for segment in job.segments {
                guard segment.offset == written else {
                    // A gap, or the object before decoded to a length it should not have (objects of copied blocks
                    // have no content checksum): name it.
                    throw ReplicationError(.notFound, "missing WAL offset: generation=\(generation.name) " +
                        "index=\(Hex.format(job.index, width: 16)) offset=\(Hex.format(written, width: 16))" +
                        (previous.map { " (\($0) ends there; the next object starts at \(Hex.format(segment.offset, width: 16)))" } ?? ""))
                }
                let name = client.objectName(segment: segment)
                previous = name
                do {
                    let source = try client.openWALSegment(segment)
                    defer { source.close() }
                    written += try RestoreFiles.decompress(source, to: fd) { [self] in self.isCancelled }
                } catch let e as ReplicationError where e.code == .cancelled {
                    throw e
                } catch {
                    throw RestoreFiles.wrap(error, name)
                }
            }
            try fd.close()
            return nil
        } catch {
            try? FileSystem.remove(job.path)
            return (error as? ReplicationError) ?? RestoreFiles.wrap(error, "download wal")
        }
    }
}
