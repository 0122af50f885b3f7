#if canImport(Glibc)
import Glibc
#endif
import CLZ4
import Foundation

/// Decodes a stream of LZ4 frames into a file, decoding the blocks of block-independent frames (`FLG` bit 5,
/// as Litestream and we write them) on a few worker threads and writing them with positioned writes.
///
/// The calling thread reads and parses the stream and hands batches of blocks (jobs) to the workers; each worker
/// decodes a job into its own buffer, waits for its turn (jobs are numbered in stream order) only to learn its
/// output offset and to feed the frame's content checksum in order, then `pwrite`s outside the turn, so reading,
/// decoding and writing overlap. Memory is bounded by a constant: at most `workers` jobs queued plus one per
/// worker, each holding at most about `Tuning.jobInput` + one block of input and `Tuning.output` of output.
///
/// Block checksums, the content checksum, the content size and the header checksum are verified as liblz4 does.
/// Frames with dependent blocks or a dictionary ID are decoded sequentially by `LZ4FrameDecoder` (after the jobs
/// already handed out are written), with the same checks. Skippable frames and concatenated frames are accepted.
/// Errors are `LZ4Error`s (corrupt or truncated data) or the `ReplicationError` of a failed write.
public enum LZ4ParallelDecoder {
    /// Sizes of the pipeline (tests shrink them to exercise many jobs and the split of an oversized job).
    struct Tuning {
        /// A job is handed out once it holds this many compressed bytes...
        var jobInput = 1 << 20
        /// ...or this many blocks.
        var jobBlocks = 64
        /// Capacity of a worker's output buffer; a job decoding to more is written in pieces.
        var output = 8 << 20
        /// Size of the buffer the stream is read through.
        var readBuffer = 256 << 10
    }

    /// Worker threads used by default: one per core, at least 1, at most 4.
    public static var defaultWorkers: Int { min(max(ProcessInfo.processInfo.activeProcessorCount, 1), 4) }

    /// Decodes everything `source` yields (it fills the buffer and returns the count, 0 at the end) into `fd`
    /// from offset 0 (`path` names the file in errors); returns the number of bytes written.
    ///
    /// `progress(compressedBytesRead, bytesWritten)` is called on the calling thread as the stream is read.
    /// No worker thread outlives the call.
    public static func decode(source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int, to fd: Int32,
                              path: String, workers: Int = defaultWorkers,
                              progress: ((UInt64, UInt64) -> Void)? = nil) throws -> UInt64 {
        try decode(source: source, to: fd, path: path, workers: workers, tuning: Tuning(), progress: progress)
    }

    static func decode(source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int, to fd: Int32, path: String,
                       workers: Int, tuning: Tuning, progress: ((UInt64, UInt64) -> Void)?) throws -> UInt64 {
        let input = BufferedInput(source: source, capacity: tuning.readBuffer)
        let pipeline = Pipeline(fd: fd, path: path, workers: max(1, workers), tuning: tuning)
        defer { pipeline.shutdown() }
        do {
            try FrameReader(input: input, pipeline: pipeline, tuning: tuning, progress: progress).run()
        } catch {
            pipeline.fail(error)
            pipeline.shutdown()
            throw pipeline.firstFailure ?? error
        }
        try pipeline.finish()
        let written = pipeline.bytesWritten
        progress?(input.consumed, written)
        return written
    }
}

// MARK: frame format

/// The parts of a frame descriptor the decoder needs.
struct LZ4FrameInfo {
    var maxBlockSize: Int
    var independent: Bool
    var blockChecksum: Bool
    var contentChecksum: Bool
    var contentSize: UInt64?
    var hasDictionary: Bool
}

/// Parses frames on the calling thread and feeds the pipeline.
private struct FrameReader {
    static let frameMagic: UInt32 = 0x184D_2204
    static let skippableMask: UInt32 = 0xFFFF_FFF0
    static let skippableMagic: UInt32 = 0x184D_2A50

    let input: BufferedInput
    let pipeline: Pipeline
    let tuning: LZ4ParallelDecoder.Tuning
    let progress: ((UInt64, UInt64) -> Void)?

    func run() throws {
        var frames = 0
        while true {
            guard let magic = try input.readUInt32(orEOF: true) else {
                if frames == 0 { throw LZ4Error.truncated }
                return
            }
            if magic & Self.skippableMask == Self.skippableMagic {
                let size = try input.readUInt32(orEOF: false)!
                try input.skip(Int(size))
                frames += 1
                continue
            }
            guard magic == Self.frameMagic else {
                // An age-encrypted object read by a replica without an age block: say what it is.
                let leading = withUnsafeBytes(of: magic.littleEndian) { Array($0) }
                if frames == 0 && LZ4FrameDecoder.ageMagic.starts(with: leading) {
                    throw LZ4FrameDecoder.ageEncrypted
                }
                throw LZ4Error("corrupt lz4 frame: unknown frame magic \(Hex.format(UInt64(magic), width: 8))" +
                    " at offset \(input.consumed - 4)")
            }
            var header: [UInt8] = withUnsafeBytes(of: magic.littleEndian) { Array($0) }
            let info = try descriptor(&header)
            if !info.independent || info.hasDictionary {
                try pipeline.sequential(prefix: header, input: input)
                return
            }
            try blocks(info)
            frames += 1
        }
    }

    /// Reads and checks FLG, BD, the optional content size and dictionary ID, and the header checksum.
    private func descriptor(_ header: inout [UInt8]) throws -> LZ4FrameInfo {
        var fb = [UInt8](repeating: 0, count: 2)
        try input.readExact(&fb)
        let flg = fb[0], bd = fb[1]
        guard flg >> 6 == 1 else { throw LZ4Error("corrupt lz4 frame: unsupported frame version \(flg >> 6)") }
        guard flg & 0x02 == 0, bd & 0x8F == 0 else { throw LZ4Error("corrupt lz4 frame: reserved flag bits set") }
        let sizeID = Int(bd >> 4) & 7
        guard sizeID >= 4 else { throw LZ4Error("corrupt lz4 frame: invalid maximum block size") }
        var rest = [UInt8](repeating: 0, count: (flg & 0x08 != 0 ? 8 : 0) + (flg & 0x01 != 0 ? 4 : 0) + 1)
        try input.readExact(&rest)
        let described = fb + rest.dropLast()
        let hc = UInt8(truncatingIfNeeded: described.withUnsafeBytes { XXH32.digest($0) } >> 8)
        guard hc == rest.last! else { throw LZ4Error("corrupt lz4 frame: header checksum mismatch") }
        header += fb + rest
        var contentSize: UInt64?
        if flg & 0x08 != 0 {
            let size = rest.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            contentSize = size == 0 ? nil : size  // 0 means unknown, as liblz4 reads it
        }
        return LZ4FrameInfo(maxBlockSize: 1 << (8 + 2 * sizeID), independent: flg & 0x20 != 0,
                            blockChecksum: flg & 0x10 != 0, contentChecksum: flg & 0x04 != 0,
                            contentSize: contentSize, hasDictionary: flg & 0x01 != 0)
    }

    /// Reads the blocks of one frame up to its end mark (and content checksum) into jobs.
    private func blocks(_ info: LZ4FrameInfo) throws {
        var job = pipeline.newJob(info, capacity: tuning.jobInput + info.maxBlockSize + 4)
        var number = 0
        while true {
            let word = try input.readUInt32(orEOF: false)!
            if word == 0 { break }
            let length = Int(word & 0x7FFF_FFFF)
            guard length <= info.maxBlockSize, length > 0 || word & 0x8000_0000 != 0 else {
                throw LZ4Error("corrupt lz4 frame: block \(number) at offset \(input.consumed - 4) claims \(length) bytes" +
                    " (maximum \(info.maxBlockSize))")
            }
            if job.used + length > job.input.count { job.grow(to: job.used + length) }
            try input.readExact(into: job.input.baseAddress! + job.used, count: length)
            var checksum: UInt32?
            if info.blockChecksum { checksum = try input.readUInt32(orEOF: false)! }
            job.blocks.append(.init(offset: job.used, length: length, raw: word & 0x8000_0000 != 0,
                                    checksum: checksum, number: number))
            job.used += length
            number += 1
            if job.used >= tuning.jobInput || job.blocks.count >= tuning.jobBlocks {
                try pipeline.submit(job)
                progress?(input.consumed, pipeline.bytesWritten)
                job = pipeline.newJob(info, capacity: tuning.jobInput + info.maxBlockSize + 4)
            }
        }
        if info.contentChecksum { job.endChecksum = try input.readUInt32(orEOF: false)! }
        job.endOfFrame = true
        try pipeline.submit(job)
        progress?(input.consumed, pipeline.bytesWritten)
    }
}

/// The source read through a buffer, with exact reads that bypass the buffer for large requests.
final class BufferedInput {
    private let source: (UnsafeMutableRawBufferPointer) throws -> Int
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var atEOF = false
    /// Compressed bytes consumed so far.
    private(set) var consumed: UInt64 = 0

    init(source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int, capacity: Int) {
        self.source = source
        buffer = .allocate(byteCount: max(capacity, 64), alignment: 16)
    }

    deinit { buffer.deallocate() }

    private func fill() throws -> Bool {
        if start < end { return true }
        if atEOF { return false }
        let n = try source(buffer)
        precondition(n >= 0 && n <= buffer.count, "LZ4ParallelDecoder source returned \(n)")
        start = 0
        end = n
        if n == 0 { atEOF = true }
        return n > 0
    }

    /// Reads up to `count` bytes (fewer only at the end of the stream); returns how many.
    func read(into dst: UnsafeMutableRawPointer, count: Int) throws -> Int {
        var done = 0
        while done < count {
            if start == end && !atEOF && count - done >= buffer.count {
                // Large read: straight into the destination.
                let n = try source(UnsafeMutableRawBufferPointer(start: dst + done, count: count - done))
                precondition(n >= 0 && n <= count - done, "LZ4ParallelDecoder source returned \(n)")
                if n == 0 { atEOF = true; break }
                done += n
                consumed += UInt64(n)
                continue
            }
            guard try fill() else { break }
            let take = min(end - start, count - done)
            (dst + done).copyMemory(from: buffer.baseAddress! + start, byteCount: take)
            start += take
            done += take
            consumed += UInt64(take)
        }
        return done
    }

    /// Reads exactly `count` bytes; the stream ending first is a truncated frame.
    func readExact(into dst: UnsafeMutableRawPointer, count: Int) throws {
        if try read(into: dst, count: count) < count { throw LZ4Error.truncated }
    }

    func readExact(_ bytes: inout [UInt8]) throws {
        let n = bytes.count
        try bytes.withUnsafeMutableBytes { try readExact(into: $0.baseAddress!, count: n) }
    }

    /// A little-endian word; nil when the stream ends before its first byte and `orEOF` allows it.
    func readUInt32(orEOF: Bool) throws -> UInt32? {
        var w: UInt32 = 0
        let n = try withUnsafeMutableBytes(of: &w) { try read(into: $0.baseAddress!, count: 4) }
        if n == 0 && orEOF { return nil }
        if n < 4 { throw LZ4Error.truncated }
        return UInt32(littleEndian: w)
    }

    func skip(_ count: Int) throws {
        var left = count
        var scratch = [UInt8](repeating: 0, count: min(count, 64 << 10))
        while left > 0 {
            let n = try scratch.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: min(left, $0.count)) }
            if n == 0 { throw LZ4Error.truncated }
            left -= n
        }
    }

    /// What is left of the stream, buffered bytes first, as a source for another decoder.
    func remainder(after prefix: [UInt8]) -> (UnsafeMutableRawBufferPointer) throws -> Int {
        var pending = prefix
        return { [self] dst in
            if !pending.isEmpty {
                let n = min(pending.count, dst.count)
                pending.withUnsafeBytes { dst.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: n) }
                pending.removeFirst(n)
                return n
            }
            return try read(into: dst.baseAddress!, count: dst.count)
        }
    }
}

// MARK: pipeline

/// A batch of compressed blocks of one frame, decoded by one worker.
private final class Job {
    struct Block { var offset: Int; var length: Int; var raw: Bool; var checksum: UInt32?; var number: Int }

    let info: LZ4FrameInfo
    var input: UnsafeMutableRawBufferPointer
    var used = 0
    var blocks: [Block] = []
    var seq = 0
    /// The last job of its frame: the content checksum (when the frame has one) and size are checked after it.
    var endOfFrame = false
    var endChecksum: UInt32?

    /// Set once `input` went back to the pool (otherwise it is freed with the job).
    var recycled = false

    init(info: LZ4FrameInfo, input: UnsafeMutableRawBufferPointer) {
        self.info = info
        self.input = input
    }

    deinit { if !recycled { input.deallocate() } }

    func grow(to count: Int) {
        let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        bigger.baseAddress!.copyMemory(from: input.baseAddress!, byteCount: used)
        input.deallocate()
        input = bigger
    }
}

/// Workers, the bounded queue, the turn order and the state only the turn holder touches.
private final class Pipeline: @unchecked Sendable {
    let fd: Int32
    let path: String
    let workerCount: Int
    let tuning: LZ4ParallelDecoder.Tuning

    private let cond = NSCondition()
    private var queue: [Job] = []
    private var spareInputs: [UnsafeMutableRawBufferPointer] = []
    private var started = false
    private var closed = false
    private var running = 0
    private var submitted = 0
    private var completed = 0
    private var nextTurn = 0
    private var failure: (any Error)?
    private var written: UInt64 = 0

    // Owned by the holder of the turn.
    private var offset: UInt64 = 0
    private var hash = XXH32()
    private var frameBytes: UInt64 = 0

    init(fd: Int32, path: String, workers: Int, tuning: LZ4ParallelDecoder.Tuning) {
        self.fd = fd
        self.path = path
        self.workerCount = workers
        self.tuning = tuning
    }

    deinit { for b in spareInputs { b.deallocate() } }

    var bytesWritten: UInt64 { cond.lock(); defer { cond.unlock() }; return written }
    var firstFailure: (any Error)? { cond.lock(); defer { cond.unlock() }; return failure }

    func newJob(_ info: LZ4FrameInfo, capacity: Int) -> Job {
        cond.lock()
        let i = spareInputs.firstIndex { $0.count >= capacity }
        let buffer = i.map { spareInputs.remove(at: $0) }
        cond.unlock()
        return Job(info: info, input: buffer ?? .allocate(byteCount: capacity, alignment: 16))
    }

    /// Queues `job` (blocking while `workerCount` jobs wait); throws a worker's failure.
    func submit(_ job: Job) throws {
        cond.lock()
        defer { cond.unlock() }
        if !started {
            started = true
            running = workerCount
            for n in 0..<workerCount {
                let t = Thread { [self] in self.work() }
                t.name = "restore-lz4-\(n)"
                t.start()
            }
        }
        while queue.count >= workerCount && failure == nil { cond.wait() }
        if let failure { throw failure }
        job.seq = submitted
        submitted += 1
        queue.append(job)
        cond.broadcast()
    }

    /// Records the first failure and wakes everyone.
    func fail(_ error: any Error) {
        cond.lock()
        if failure == nil { failure = error }
        cond.broadcast()
        cond.unlock()
    }

    /// Lets the workers finish the queue and waits for them; throws the first failure.
    func finish() throws {
        cond.lock()
        closed = true
        cond.broadcast()
        while running > 0 { cond.wait() }
        let f = failure
        cond.unlock()
        if let f { throw f }
    }

    /// Stops the workers (after a failure) and waits until every one has exited.
    func shutdown() {
        cond.lock()
        closed = true
        if failure == nil && !queue.isEmpty { failure = LZ4Error("lz4 decoding stopped") }
        cond.broadcast()
        while running > 0 { cond.wait() }
        queue.removeAll()
        cond.unlock()
    }

    /// Decodes the rest of the stream (a frame starting with `prefix`, and any after it) on this thread, once
    /// every job handed out is written.
    func sequential(prefix: [UInt8], input: BufferedInput) throws {
        cond.lock()
        while completed < submitted && failure == nil { cond.wait() }
        let f = failure
        var at = offset
        cond.unlock()
        if let f { throw f }
        let decoder = try LZ4FrameDecoder(source: input.remainder(after: prefix))
        try decoder.forEachChunk(bufferSize: 1 << 20) { chunk in
            try pwriteAll(chunk, at: at)
            at += UInt64(chunk.count)
            cond.lock()
            written += UInt64(chunk.count)
            cond.unlock()
        }
    }

    private func work() {
        var output = UnsafeMutableRawBufferPointer.allocate(byteCount: tuning.output, alignment: 16)
        defer { output.deallocate() }
        cond.lock()
        while true {
            while queue.isEmpty && !closed && failure == nil { cond.wait() }
            if failure != nil || queue.isEmpty { break }
            let job = queue.removeFirst()
            cond.broadcast()
            cond.unlock()
            if output.count < job.info.maxBlockSize {
                // Room for at least one block (only a tuning smaller than the frame's block size needs this).
                output.deallocate()
                output = .allocate(byteCount: job.info.maxBlockSize, alignment: 16)
            }
            do { try process(job, output) } catch { fail(error) }
            cond.lock()
            spareInputs.append(job.input)
            job.recycled = true
            completed += 1
            cond.broadcast()
        }
        running -= 1
        cond.broadcast()
        cond.unlock()
    }

    private func acquireTurn(_ seq: Int) throws {
        cond.lock()
        defer { cond.unlock() }
        while nextTurn != seq && failure == nil { cond.wait() }
        if let failure { throw failure }
    }

    private func releaseTurn() {
        cond.lock()
        nextTurn += 1
        cond.broadcast()
        cond.unlock()
    }

    /// Takes `count` bytes of output at the next offset (turn held): feeds the content checksum, returns the offset.
    private func claim(_ bytes: UnsafeRawBufferPointer, _ info: LZ4FrameInfo) -> UInt64 {
        let at = offset
        offset += UInt64(bytes.count)
        frameBytes += UInt64(bytes.count)
        if info.contentChecksum { hash.update(bytes) }
        return at
    }

    private func process(_ job: Job, _ output: UnsafeMutableRawBufferPointer) throws {
        let out = output.baseAddress!
        var used = 0
        var holding = false
        // Writes what is decoded so far while keeping the turn (a job decoding to more than the buffer).
        func flushPiece() throws {
            if !holding { try acquireTurn(job.seq); holding = true }
            let piece = UnsafeRawBufferPointer(start: out, count: used)
            try write(piece, at: claim(piece, job.info))
            used = 0
        }
        do {
            for b in job.blocks {
                let src = job.input.baseAddress! + b.offset
                if let c = b.checksum, XXH32.digest(UnsafeRawBufferPointer(start: src, count: b.length)) != c {
                    throw LZ4Error("corrupt lz4 frame: block \(b.number) checksum mismatch")
                }
                if b.raw {
                    if output.count - used < b.length { try flushPiece() }
                    (out + used).copyMemory(from: src, byteCount: b.length)
                    used += b.length
                    continue
                }
                var n = LZ4_decompress_safe(src.assumingMemoryBound(to: CChar.self),
                                            (out + used).assumingMemoryBound(to: CChar.self),
                                            Int32(b.length), Int32(output.count - used))
                if n < 0 && used > 0 && output.count - used < job.info.maxBlockSize {
                    try flushPiece()
                    n = LZ4_decompress_safe(src.assumingMemoryBound(to: CChar.self), out.assumingMemoryBound(to: CChar.self),
                                            Int32(b.length), Int32(output.count))
                }
                guard n >= 0 else { throw LZ4Error("corrupt lz4 frame: block \(b.number) does not decode") }
                guard Int(n) <= job.info.maxBlockSize else {
                    throw LZ4Error("corrupt lz4 frame: block \(b.number) decodes to more than the maximum block size")
                }
                used += Int(n)
            }
            if !holding { try acquireTurn(job.seq); holding = true }
            let rest = UnsafeRawBufferPointer(start: out, count: used)
            let at = claim(rest, job.info)
            if job.endOfFrame { try endFrame(job) }
            holding = false
            releaseTurn()
            try write(rest, at: at)
        } catch {
            if holding { releaseTurn() }
            throw error
        }
    }

    /// Checks the content size and checksum of the frame that `job` ends (turn held) and resets them.
    private func endFrame(_ job: Job) throws {
        defer { hash = XXH32(); frameBytes = 0 }
        if let size = job.info.contentSize, size != frameBytes {
            throw LZ4Error("corrupt lz4 frame: content size \(frameBytes) does not match the header's \(size)")
        }
        if let expected = job.endChecksum, hash.finish() != expected {
            throw LZ4Error("corrupt lz4 frame: content checksum mismatch")
        }
    }

    private func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try pwriteAll(bytes, at: offset)
        cond.lock()
        written += UInt64(bytes.count)
        cond.unlock()
    }

    private func pwriteAll(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try FileDescriptor.pwriteAll(fd, path: path, bytes, at: offset)
    }
}
