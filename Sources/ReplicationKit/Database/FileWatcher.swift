#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Watches database directories with inotify and reports changes to a database file or its `-wal`.
///
/// One thread blocks in `poll` on the inotify descriptor and a wake-up pipe; there is no periodic timer, so an
/// idle database costs nothing. Watching the directory (not the files) also reports a database that is created,
/// or a `-wal` that is deleted and recreated.
///
/// A handler returns when the sync it asked for is due. While every watched database has a sync pending, new
/// events could only ask for those same syncs again, so the thread stops reading them until the earliest is
/// due (the kernel queues and merges them meanwhile): a busy database costs a few wake-ups per sync instead of
/// one per write of the application.
// @unchecked: `watches` is guarded by `lock`; the descriptors are immutable after init.
public final class FileWatcher: @unchecked Sendable {
    private let inotifyFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let lock = NSLock()
    private var watches: [Int32: [Watch]] = [:]
    /// Registered handlers; `due` is when the sync each last asked for is due.
    private final class Watch {
        let names: Set<String>
        let handler: @Sendable () -> ContinuousClock.Instant
        var due: ContinuousClock.Instant?
        init(names: Set<String>, handler: @escaping @Sendable () -> ContinuousClock.Instant) {
            self.names = names
            self.handler = handler
        }
    }
    private var directories: [String: Int32] = [:]
    private var stopped = false
    /// Whether the watcher thread closed `inotifyFD` on its way out (after `stop`).
    private var inotifyClosed = false
    private var thread: Thread?
    private let logger: Logger
    /// Pause after handling a batch of events, in microseconds.
    static let coalescePause: UInt32 = 5_000
    /// How long after `stop` the thread closes the inotify descriptor (see `closeInotifyIfStopped`).
    private let closeDelay: Duration

    /// Creates the watcher and starts its thread; `closeDelay`: see `closeInotifyIfStopped` (tests lengthen it).
    public init(logger: Logger, closeDelay: Duration = .milliseconds(20)) throws {
        self.logger = logger
        self.closeDelay = closeDelay
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw Syscall.error("inotify_init1", path: "(watcher)", errno: errno) }
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else {
            let e = errno
            close(fd)
            throw Syscall.error("pipe", path: "(watcher)", errno: e)
        }
        for p in pipeFDs {
            _ = fcntl(p, F_SETFD, FD_CLOEXEC)
            _ = fcntl(p, F_SETFL, O_NONBLOCK)
        }
        inotifyFD = fd
        wakeRead = pipeFDs[0]
        wakeWrite = pipeFDs[1]
        let t = Thread { [self] in run() }
        t.name = "launcher.inotify"
        thread = t
        t.start()
    }

    deinit {
        if !inotifyClosed { close(inotifyFD) }
        close(wakeRead)
        close(wakeWrite)
    }

    /// Calls `handler` whenever the file `path` or `path-wal` is created, modified, moved in or deleted; it
    /// returns when the sync it scheduled is due.
    public func watch(databasePath path: String, handler: @escaping @Sendable () -> ContinuousClock.Instant) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        // Every SQLite write is a write(2) (IN_MODIFY). No IN_CLOSE_WRITE: closing a connection is no change, and
        // an idle database closes its writer and spare connections, which would otherwise wake itself up forever.
        let mask = UInt32(IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM)
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { throw ReplicationError(.invalidInput, "cannot watch \(path): the file watcher is stopped") }
        let wd: Int32
        if let existing = directories[dir] {
            wd = existing
        } else {
            wd = inotify_add_watch(inotifyFD, dir, mask)
            guard wd >= 0 else { throw Syscall.error("watch", path: dir, errno: errno) }
            directories[dir] = wd
        }
        watches[wd, default: []].append(Watch(names: [base, base + "-wal"], handler: handler))
    }

    /// Stops watching: removes every watch from the kernel now and stops the thread, which closes the inotify
    /// descriptor `closeDelay` later (see `closeInotifyIfStopped`).
    public func stop() {
        lock.lock()
        stopped = true
        // Removing a watch is cheap and starts the kernel's freeing of it (an RCU grace period, done by a kernel
        // worker a few milliseconds later); closing the descriptor while that is pending waits for all of it.
        for wd in directories.values { _ = inotify_rm_watch(inotifyFD, wd) }
        directories.removeAll()
        watches.removeAll()
        lock.unlock()
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
        thread = nil
    }

    private func run() {
        defer { closeInotifyIfStopped() }
        var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            lock.lock()
            let done = stopped
            lock.unlock()
            if done { return }
            // Stop reading events while every database already has a sync pending (see the type's comment).
            let parkUntil = allDue()
            var timeout: Int32 = -1
            if let until = parkUntil {
                let left = until - ContinuousClock.now
                timeout = left > .zero ? Int32(clamping: left.components.seconds * 1000
                                                + left.components.attoseconds / 1_000_000_000_000_000 + 1) : 0
            }
            fds[0].events = timeout > 0 ? 0 : Int16(POLLIN)
            fds[0].revents = 0
            let r = poll(&fds, 2, timeout)
            if r < 0 {
                if errno == EINTR { continue }
                logger.error("file watcher: poll failed: \(String(cString: strerror(errno)))")
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents != 0 else { continue }
            let n = buf.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
            if n <= 0 { continue }
            dispatch(events: buf, count: n)
            // Let a burst of events queue up in the kernel (which merges repeats) instead of waking for each write
            // of a busy database. Syncs are batched for at least `monitor-delay-interval` anyway, so a pause shorter
            // than that delays nothing.
            usleep(Self.coalescePause)
        }
    }

    /// Closes the inotify descriptor once stopped, on the watcher's own thread and `closeDelay` after `stop`.
    ///
    /// Closing a descriptor whose watches are not freed yet makes the kernel free them at once and wait for an RCU
    /// grace period (measured on Linux 6.18: 14 ms median, whether the watches were removed just before or not),
    /// and the process's exit closes it the same way: the final sync's exit waited 10–13 ms for it even when this
    /// thread closed it during the sync. Left to the kernel's worker after `stop` removed the watches, the freeing
    /// is over a few milliseconds later (closing 3 ms after the removal: 0.07 ms median). When the process exits
    /// first, its exit closes the descriptor just as cheaply once those few milliseconds have passed.
    private func closeInotifyIfStopped() {
        lock.lock()
        let stopped = self.stopped
        lock.unlock()
        guard stopped else { return }
        let c = closeDelay.components
        usleep(UInt32(clamping: c.seconds * 1_000_000 + c.attoseconds / 1_000_000_000_000))
        lock.lock()
        defer { lock.unlock() }
        guard !inotifyClosed else { return }
        close(inotifyFD)
        inotifyClosed = true
    }

    /// Whether the inotify descriptor is closed (it is soon after `stop`, without waiting for `deinit`).
    var inotifyIsClosed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return inotifyClosed
    }

    /// The watches the kernel holds for the inotify descriptor (its `wd:` lines in `/proc/self/fdinfo`), or nil
    /// once the descriptor is closed.
    var kernelWatchCount: Int? {
        lock.lock()
        defer { lock.unlock() }
        guard !inotifyClosed, let info = try? String(contentsOfFile: "/proc/self/fdinfo/\(inotifyFD)", encoding: .utf8) else {
            return nil
        }
        return info.split(separator: "\n").filter { $0.hasPrefix("inotify wd:") }.count
    }

    /// The earliest due time of the pending syncs when every watched database has one pending, else nil.
    private func allDue() -> ContinuousClock.Instant? {
        lock.lock()
        defer { lock.unlock() }
        let now = ContinuousClock.now
        var earliest: ContinuousClock.Instant?
        for entries in watches.values {
            for w in entries {
                guard let due = w.due, due > now else { return nil }
                earliest = min(earliest ?? due, due)
            }
        }
        return earliest
    }

    private func dispatch(events buf: [UInt8], count n: Int) {
        var toCall: [Watch] = []
        var seen = Set<ObjectIdentifier>()
        func add(_ w: Watch) { if seen.insert(ObjectIdentifier(w)).inserted { toCall.append(w) } }
        buf.withUnsafeBytes { raw in
            var off = 0
            let headerSize = MemoryLayout<inotify_event>.size
            lock.lock()
            defer { lock.unlock() }
            while off + headerSize <= n {
                let wd = raw.loadUnaligned(fromByteOffset: off, as: Int32.self)
                let mask = raw.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self)
                let len = Int(raw.loadUnaligned(fromByteOffset: off + 12, as: UInt32.self))
                if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    // The kernel dropped events: any database may have changed, so every one syncs.
                    for entries in watches.values {
                        entries.forEach(add)
                    }
                }
                let nameStart = off + headerSize
                if len > 0, nameStart + len <= n, let entries = watches[wd] {
                    let bytes = UnsafeRawBufferPointer(rebasing: raw[nameStart..<(nameStart + len)])
                    let name = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
                    for w in entries where w.names.contains(name) { add(w) }
                }
                off = nameStart + len
            }
        }
        for w in toCall {
            let due = w.handler()
            lock.lock()
            w.due = due
            lock.unlock()
        }
    }
}
