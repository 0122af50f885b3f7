import Foundation
import ReplicationKit

/// `launcher sync`: asks a running launcher to sync now (`POST /sync`) and, with `-wait`, to answer once every
/// replica holds the position current at the request.
enum SyncCommand {
    static let usage = """
    The sync command asks the running launcher (over its -addr, POST /sync) to sync
    every database now, or only DB_PATH: the database's WAL is copied to the shadow
    WAL and every replica uploads at once. With -wait it returns only when every
    replica holds the position each database had at the request, so what was
    committed before the call is restorable (a Kubernetes preStop hook, a deploy
    cut-over); it fails at -timeout naming the replicas that have not reached it.

    Exit status: 0 when synced (with -wait: every replica reached its position);
    1 otherwise (no launcher at the address, a replica still behind at the timeout).

    Usage:

    \tlauncher sync [arguments] [DB_PATH]

    Arguments:
    """

    static func run(_ args: [String]) throws -> Int32 {
        var fs = GoFlagSet(name: "sync")
        ConfigFlags.add(to: &fs)
        LauncherAddress.addFlag(to: &fs)
        fs.bool("wait", usage: "Return only once every replica holds the position current at the call.")
        fs.custom("timeout", default: "30s", usage: "How long to wait, a Go `duration` (with -wait: for the replicas).") {
            guard let d = try? GoDuration.parse($0) else { return "parse error" }
            return d > .zero ? nil : "must be positive"
        }
        let flags = try parseFlags(fs, args, usage: usage)
        guard flags.positionals.count <= 1 else { throw ReplicationError(.invalidInput, "too many arguments") }
        let timeout = (try? GoDuration.parse(flags.string("timeout"))) ?? .seconds(30)
        let addr = try LauncherAddress.resolve(flags) {
            let c = try ConfigLocator.load(explicit: flags.string("config"), expandEnv: !flags.bool("no-expand-env"), required: true)
            ConfigLocator.printWarnings(c)
            return c
        }
        guard let addr else {
            throw ReplicationError(.invalidInput, "no launcher address: give -addr HOST:PORT (the running launcher's -addr) "
                + "or a config file with addr:")
        }
        let wait = flags.bool("wait")
        var query = "timeout=" + GoDuration.format(timeout)
        if wait { query += "&wait=1" }
        if let db = flags.positionals.first {
            let path = PathExpansion.expand(db)
            query += "&db=" + (path.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? path)
        }
        let client = try LauncherClient(address: addr)
        // The launcher answers at its own deadline; ours only covers a launcher that stopped answering.
        let r = try client.request("POST", "/sync?" + query, timeout: timeout + .seconds(10))
        guard r.status == 200 || r.status == 504, let report = try? JSONDecoder().decode(SyncReport.self, from: Data(r.body)) else {
            say("sync: launcher at \(addr) answered HTTP \(r.status): "
                + String(decoding: r.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            return 1
        }
        if r.status == 504 || (wait && !report.complete) {
            say("sync: timed out after \(GoDuration.format(timeout)); not yet at the position of the request: "
                + report.lagging.joined(separator: "; "))
            return 1
        }
        for d in report.databases {
            let target = d.target.flatMap(\.walPosition).map { "\($0)" } ?? "no position"
            if let e = d.error { say("\(d.path): sync failed at \(target): \(e)") }
            if wait {
                say("synced \(d.path) at \(target): " + d.replicas.map { goQuote($0.name) }.joined(separator: ", ")
                    + (d.replicas.isEmpty ? "no replicas" : " hold it"))
            } else {
                say("sync requested for \(d.path) at \(target)")
            }
        }
        return report.databases.contains { $0.error != nil } ? 1 : 0
    }
}

extension CharacterSet {
    /// Characters left as they are in a query value (`&`, `=`, `+` and `#` are escaped).
    static let urlQueryValueAllowed = CharacterSet.urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+#"))
}
