#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The process's limit on open file descriptors (`RLIMIT_NOFILE`).
///
/// Each tracked database keeps about ten descriptors open (three SQLite connections with their database and
/// `-wal` files, the shared `-shm`, our own handles on the database and the WAL), so the common soft limit of
/// 1,024 stops at about a hundred databases. Go raises its soft limit to the hard limit at startup, which is how
/// upstream Litestream copes; we raise it only as far as the configuration needs, and say so.
public enum OpenFileLimit {
    /// Descriptors to budget per tracked database, and for everything else (HTTP clients, replicas, stdio).
    static let perDatabase = 16, base = 256

    /// Raises the soft limit so `databases` databases fit; logs what it did, or a warning naming `ulimit -n`
    /// when the hard limit is too low.
    public static func ensure(databases: Int, logger: Logger) {
        let want = rlim_t(base + perDatabase * databases)
        var lim = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0, lim.rlim_cur < want else { return }
        let old = lim.rlim_cur
        lim.rlim_cur = min(want, lim.rlim_max)
        if lim.rlim_cur > old, setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 {
            logger.info("raised the open-file limit from \(old) to \(lim.rlim_cur) for \(databases) databases")
        }
        if lim.rlim_cur < want {
            logger.warning("the open-file limit (\(lim.rlim_cur), hard limit \(lim.rlim_max)) is low for \(databases) databases (about \(want) descriptors): databases may fail to open with \"unable to open database file\"; raise it with `ulimit -n \(want)` or the container's nofile ulimit")
        }
    }

    /// How many HTTP connections the server may hold: what the soft limit leaves after replication's own budget
    /// (`base` + `perDatabase` per database), at most 256 and at least 8. Replication keeps its reserve whatever
    /// the clients of `-addr` do.
    public static func httpConnectionBudget(databases: Int) -> Int {
        var lim = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else { return 64 }
        let reserve = base + perDatabase * databases
        let soft = lim.rlim_cur > rlim_t(Int.max) ? Int.max : Int(lim.rlim_cur)
        return max(8, min(256, soft - reserve))
    }
}
