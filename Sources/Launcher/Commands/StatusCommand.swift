import Foundation
import ReplicationKit

/// Where a running launcher listens, for `status` and `sync`: `-addr`, else the config's `addr:`.
enum LauncherAddress {
    /// Adds `-addr` to a flag set.
    static func addFlag(to fs: inout GoFlagSet) {
        fs.string("addr", usage: "Address of the running launcher's HTTP server (its -addr, e.g. 127.0.0.1:9090).\nDefaults to addr: of the config file.")
    }

    /// `-addr`, else the config's `addr:` (the config is only read when `-addr` is not given); nil when neither is set.
    static func resolve(_ flags: ParsedFlags, config: () throws -> Configuration) throws -> String? {
        if !flags.string("addr").isEmpty { return flags.string("addr") }
        let addr = try config().addr ?? ""
        return addr.isEmpty ? nil : addr
    }
}

/// `launcher status`: positions, lag, errors and lease holders, from a running launcher or from the stores.
enum StatusCommand {
    static let usage = """
    The status command shows, for every database, the local position, each replica's
    position, how far each replica is behind (lag), its last error, and the holder of
    the database's lease when one is configured.

    With -addr (or addr: in the config file) it asks the running launcher (GET /status);
    otherwise, or with -stores, it reads the local metadata directories and lists each
    replica. Lag: lag_bytes is the WAL bytes the replica is behind on the same WAL index
    (a lower bound across indexes); lag_seconds is, from a launcher, the time since the
    replica last held everything, and from the stores, the time between the database's
    last change and the replica's newest object (0 when it holds the local position).

    Exit status: 0 when every database, replica and lease is healthy; 2 when one has an
    error or could not be read; 1 when the status could not be obtained at all.

    Usage:

    \tlauncher status [arguments]

    Arguments:
    """

    static func run(_ args: [String]) throws -> Int32 {
        var fs = GoFlagSet(name: "status")
        ConfigFlags.add(to: &fs)
        LauncherAddress.addFlag(to: &fs)
        fs.bool("stores", usage: "Read the stores (metadata directories, replicas, lease objects) even when the\nconfig file has addr:.")
        fs.bool("json", usage: "Writes the status to stdout as one JSON object (fields in the README).")
        let flags = try parseFlags(fs, args, usage: usage)
        guard flags.positionals.isEmpty else { throw ReplicationError(.invalidInput, "too many arguments") }
        if flags.bool("stores") && !flags.string("addr").isEmpty {
            throw ReplicationError(.invalidInput, "-stores and -addr exclude each other: -addr reads the running launcher")
        }
        var loaded: Configuration?
        func config() throws -> Configuration {
            if let loaded { return loaded }
            let c = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"), required: true)
            ConfigLocator.printWarnings(c)
            loaded = c
            return c
        }
        let report: StatusReport
        if !flags.bool("stores"), let addr = try LauncherAddress.resolve(flags, config: config) {
            let client = try LauncherClient(address: addr)
            let r: (status: Int, body: [UInt8])
            do { r = try client.request("GET", "/status", timeout: .seconds(30)) } catch let e as ReplicationError {
                // Without a launcher the stores can still be read.
                throw ReplicationError(e.code, e.message + (flags.string("addr").isEmpty ? " (or -stores to read the stores)" : ""))
            }
            guard r.status == 200 else {
                throw ReplicationError(.io, "launcher at \(addr) answered HTTP \(r.status) to GET /status: "
                    + String(decoding: r.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            }
            do { report = try JSONDecoder().decode(StatusReport.self, from: Data(r.body)) } catch {
                throw ReplicationError(.corrupt, "launcher at \(addr): GET /status is not a status report: \(error)")
            }
        } else {
            report = StoreStatus.report(config: try config())
        }
        if flags.bool("json") {
            StdoutWriter.write(String(decoding: report.encoded(), as: UTF8.self))
        } else {
            StdoutWriter.write(table(report))
        }
        return report.healthy ? 0 : 2
    }

    /// The aligned table: a `(local)` row per database, a row per replica, then one line per lease.
    static func table(_ report: StatusReport) -> String {
        func pos(_ p: StatusReport.Position?) -> String { p.flatMap(\.walPosition).map { "\($0)" } ?? "-" }
        var rows = [["database", "replica", "type", "position", "lag_bytes", "lag", "error"]]
        var leases: [String] = []
        for d in report.databases {
            rows.append([d.path, "(local)", d.role, pos(d.position), "-", "-", d.error ?? "-"])
            for r in d.replicas {
                let lag = r.lagSeconds.map { GoDuration.formatLag(.milliseconds(Int64(($0 * 1000).rounded()))) } ?? "-"
                rows.append([d.path, r.name, r.type, pos(r.position), r.lagBytes.map { String($0) } ?? "-", lag, r.error ?? "-"])
            }
            if let l = d.lease {
                var line = "lease of \(d.path) (\(l.location)): \(l.state)"
                if let h = l.holder { line += ", holder \(h)" }
                if let e = l.expiresAt { line += ", expires \(e)" }
                if let e = l.error { line += ", error: \(e)" }
                leases.append(line)
            }
        }
        return TabWriter.render(rows) + leases.map { $0 + "\n" }.joined()
    }
}
