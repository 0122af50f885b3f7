import Foundation
import Testing

/// Parent of the black-box replication suites (`ReplicateRoundTripTests`, `FormatAndListingTests`).
/// `.serialized` is inherited by the nested suites, so these heavy, timing-sensitive tests never run
/// concurrently with each other (the machine has 2 cores).
@Suite(.serialized) enum ReplicationIntegrationTests {}

/// Helpers shared by the replication integration tests. Everything is namespaced to avoid clashing with
/// helpers in other test files.
enum ReplicationHarness {
    // MARK: - Scratch directory and process bookkeeping

    /// The sandbox of every black-box suite (TestSandbox.swift). A typealias rather than a rename: these suites
    /// spell it `H.Sandbox` in a few hundred places.
    typealias Sandbox = TestSandbox

    // MARK: - launcher / example-writer

    /// Starts `launcher replicate ARGS` and waits (bounded) for `litestream initialization complete`.
    static func startReplicate(_ sb: Sandbox, _ args: [String], log: String,
                               sourceLocation: SourceLocation = #_sourceLocation) throws -> RunningProcess {
        let p = try sb.start(TestSupport.launcher, ["replicate"] + args, log: log)
        guard p.waitForOutput("initialization complete", timeout: 60) else {
            throw TestFailure("launcher replicate \(args) did not initialise within 60 s:\n\(tail(p.output))")
        }
        return p
    }

    /// Sends SIGTERM and waits (bounded) for the exit status; nil when the process did not exit in time
    /// (it is then killed).
    static func stop(_ p: RunningProcess, timeout: TimeInterval = 60) -> Int32? {
        p.signal(SIGTERM)
        if let status = p.wait(timeout: timeout) { return status }
        p.signal(SIGKILL)
        _ = p.wait(timeout: 10)
        return nil
    }

    /// Arguments of `example-writer`.
    static func writerArgs(_ db: String, rate: Int? = nil, count: Int, checkpointEvery: Int? = nil) -> [String] {
        var a = [db]
        if let rate { a += ["-rate", String(rate)] }
        a += ["-count", String(count)]
        if let checkpointEvery { a += ["-checkpoint-every", String(checkpointEvery)] }
        return a
    }

    /// Runs `example-writer` to completion (bounded) and requires exit 0.
    static func runWriter(_ db: String, rate: Int? = nil, count: Int, checkpointEvery: Int? = nil,
                          timeout: TimeInterval = 180) throws {
        let r = try runCommand(TestSupport.exampleWriter,
                               writerArgs(db, rate: rate, count: count, checkpointEvery: checkpointEvery),
                               timeout: timeout)
        guard r.status == 0 else { throw TestFailure("example-writer exited \(r.status):\n\(tail(r.output))") }
    }

    /// Waits for a background writer to finish (bounded) and requires exit 0.
    static func finishWriter(_ p: RunningProcess, timeout: TimeInterval = 180) throws {
        guard let status = p.wait(timeout: timeout) else {
            throw TestFailure("example-writer did not finish within \(timeout) s:\n\(tail(p.output))")
        }
        guard status == 0 else { throw TestFailure("example-writer exited \(status):\n\(tail(p.output))") }
    }

    /// `launcher ARGS` to completion (bounded).
    static func launcher(_ args: [String], timeout: TimeInterval = 120) throws -> (status: Int32, output: String) {
        try runCommand(TestSupport.launcher, args, timeout: timeout)
    }

    /// `launcher restore ARGS`; throws with the output unless it exits 0.
    @discardableResult
    static func restore(_ args: [String], timeout: TimeInterval = 180) throws -> String {
        let r = try launcher(["restore"] + args, timeout: timeout)
        guard r.status == 0 else {
            throw TestFailure("launcher restore \(args.joined(separator: " ")) exited \(r.status):\n\(tail(r.output))")
        }
        return r.output
    }

    /// Last `n` lines of a log, for failure messages.
    static func tail(_ text: String, _ n: Int = 40) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(n).joined(separator: "\n")
    }

    // MARK: - Database content

    /// All rows of `events` in id order, one line per row (sqlite3 list mode).
    static func eventRows(_ db: String) throws -> [String] {
        let out = try sqlite(db, "SELECT * FROM events ORDER BY id;")
        return out.isEmpty ? [] : out.components(separatedBy: "\n")
    }

    static func eventCount(_ db: String) throws -> Int {
        Int(try sqlite(db, "SELECT count(*) FROM events;")) ?? -1
    }

    /// nil when equal, else a short description of the first difference (never the whole table).
    static func difference(expected: [String], actual: [String]) -> String? {
        if expected == actual { return nil }
        let n = min(expected.count, actual.count)
        for i in 0..<n where expected[i] != actual[i] {
            return "row #\(i + 1) differs: expected \(expected[i].prefix(120)) got \(actual[i].prefix(120)) "
                + "(expected \(expected.count) rows, got \(actual.count))"
        }
        let missing = expected.count > actual.count ? "first missing: \(expected[n].prefix(120))"
                                                    : "first extra: \(actual[n].prefix(120))"
        return "expected \(expected.count) rows, got \(actual.count); \(missing)"
    }

    /// Copies a live database consistently with the SQLite online backup API of the sqlite3 CLI.
    static func backup(_ db: String, to copy: String) throws {
        _ = try sqlite(db, ".backup '\(copy)'")
    }

    // MARK: - Replica objects on disk

    struct ReplicaObject: CustomStringConvertible {
        enum Kind { case snapshot, wal }
        let kind: Kind
        let generation: String
        let index: String        // 16 hex digits (file or directory name)
        let offset: String?      // 16 hex digits, WAL segments only
        let path: String
        let size: Int
        let modified: Date

        var indexValue: UInt64 { UInt64(index, radix: 16) ?? .max }
        var offsetValue: UInt64 { offset.flatMap { UInt64($0, radix: 16) } ?? 0 }
        var description: String { path }
    }

    static func isHex16(_ s: some StringProtocol) -> Bool {
        s.utf8.count == 16 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    private static func listDir(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// Every object under `<root>/generations` (v0.4 layout), plus the relative paths of anything else found
    /// there (leftover `.tmp` files, badly named entries).
    static func replicaObjects(_ root: String) throws -> (objects: [ReplicaObject], unexpected: [String]) {
        var objects: [ReplicaObject] = []
        var unexpected: [String] = []
        let gensDir = root + "/generations"
        for gen in listDir(gensDir) {
            guard isHex16(gen) else { unexpected.append("generations/\(gen)"); continue }
            let genDir = gensDir + "/" + gen
            for entry in listDir(genDir) where entry != "snapshots" && entry != "wal" {
                unexpected.append("generations/\(gen)/\(entry)")
            }
            for name in listDir(genDir + "/snapshots") {
                let p = genDir + "/snapshots/" + name
                let stem = name.hasSuffix(".snapshot.lz4") ? String(name.dropLast(".snapshot.lz4".count)) : ""
                guard isHex16(stem) else { unexpected.append("generations/\(gen)/snapshots/\(name)"); continue }
                objects.append(try object(.snapshot, gen, stem, nil, p))
            }
            for idx in listDir(genDir + "/wal") {
                guard isHex16(idx) else { unexpected.append("generations/\(gen)/wal/\(idx)"); continue }
                for name in listDir(genDir + "/wal/" + idx) {
                    let p = genDir + "/wal/" + idx + "/" + name
                    let stem = name.hasSuffix(".wal.lz4") ? String(name.dropLast(".wal.lz4".count)) : ""
                    guard isHex16(stem) else { unexpected.append("generations/\(gen)/wal/\(idx)/\(name)"); continue }
                    objects.append(try object(.wal, gen, idx, stem, p))
                }
            }
        }
        return (objects, unexpected)
    }

    private static func object(_ kind: ReplicaObject.Kind, _ gen: String, _ index: String, _ offset: String?,
                               _ path: String) throws -> ReplicaObject {
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        let size = (attrs[.size] as? NSNumber)?.intValue ?? -1
        let mtime = attrs[.modificationDate] as? Date ?? .distantPast
        return ReplicaObject(kind: kind, generation: gen, index: index, offset: offset, path: path, size: size,
                             modified: mtime)
    }

    // MARK: - Listings

    /// A table printed by `generations`/`snapshots`/`wal`/`databases`, split into cells on runs of spaces.
    struct Table {
        let header: [String]
        let rows: [[String]]
    }

    static func parseTable(_ output: String) -> Table {
        var lines = output.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        let cells = lines.map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        return Table(header: cells.first ?? [], rows: Array(cells.dropFirst()))
    }

    /// What Go's text/tabwriter (minwidth 0, tabwidth 8, padding 2, padchar ' ', no flags) prints for `cells`
    /// when every cell but the last of each line is tab-terminated.
    static func tabwriterRender(_ cells: [[String]]) -> String {
        let columns = cells.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in cells {
            for (i, c) in row.enumerated() where i < row.count - 1 {
                widths[i] = max(widths[i], c.unicodeScalars.count + 2)
            }
        }
        var out = ""
        for row in cells {
            for (i, c) in row.enumerated() {
                if i < row.count - 1 {
                    out += c + String(repeating: " ", count: widths[i] - c.unicodeScalars.count)
                } else {
                    out += c
                }
            }
            out += "\n"
        }
        return out
    }

    /// UTC RFC 3339 with whole seconds (fraction truncated), e.g. `2000-01-02T15:04:05Z`.
    static func rfc3339Seconds(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: Date(timeIntervalSince1970: floor(d.timeIntervalSince1970)))
    }

    /// UTC RFC 3339 with milliseconds, e.g. `2026-11-26T20:01:02.123Z` (for `restore -timestamp`).
    static func rfc3339Millis(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    static func isRFC3339UTCSeconds(_ s: String) -> Bool {
        s.range(of: #"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"#, options: .regularExpression) != nil
    }

    /// A Go `time.Duration` string such as `0s`, `1.5s`, `2m3s`, `48h0m0s`, `12µs`, `-1m2s`.
    static func isGoDuration(_ s: String) -> Bool {
        s == "0s" || s.range(of: #"^-?([0-9]+h)?([0-9]+m)?([0-9]+(\.[0-9]+)?(s|ms|µs|ns))?$"#,
                             options: .regularExpression) != nil && s != "" && s != "-"
    }

    /// The distinct WAL indexes of `generation` on the replica at `url`, read through `launcher wal`.
    static func listedWALIndexes(_ url: String, generation: String) throws -> [UInt64] {
        let r = try launcher(["wal", "-generation", generation, url])
        guard r.status == 0 else { throw TestFailure("launcher wal exited \(r.status):\n\(tail(r.output))") }
        let t = parseTable(r.output)
        return Set(t.rows.compactMap { $0.count == 6 ? UInt64($0[2], radix: 16) : nil }).sorted()
    }

    /// The generations of the replica at `url`, through `launcher generations`.
    static func listedGenerations(_ url: String) throws -> [String] {
        let r = try launcher(["generations", url])
        guard r.status == 0 else { throw TestFailure("launcher generations exited \(r.status):\n\(tail(r.output))") }
        return parseTable(r.output).rows.compactMap { $0.count == 5 ? $0[1] : nil }
    }

    /// Polls (bounded) until a restore of the latest state of `url` holds exactly `count` events rows.
    static func waitForReplicaEvents(_ sb: Sandbox, _ url: String, count: Int, timeout: TimeInterval = 45) throws {
        var last = "no restore attempted"
        let ok = poll(timeout: timeout) {
            let out = sb.path("probe-\(UUID().uuidString.prefix(8)).db")
            defer { removeDatabaseFiles(out) }
            do {
                try restore(["-o", out, url])
                let n = try eventCount(out)
                last = "restored \(n) rows"
                if n == count { return true }
            } catch {
                last = "\(error)"
            }
            usleep(300_000)
            return false
        }
        guard ok else { throw TestFailure("replica \(url) did not reach \(count) events rows in \(timeout) s: \(last)") }
    }

    static func removeDatabaseFiles(_ db: String) {
        for suffix in ["", "-wal", "-shm", "-journal", ".tmp", ".tmp-wal", ".tmp-shm"] {
            try? FileManager.default.removeItem(atPath: db + suffix)
        }
    }

    // MARK: - Log lines

    /// Reasons a new generation may legitimately be started (REPLICATION.md §5.6, v0.4).
    static let newGenerationReasons = [
        "no generation exists", "max index exceeded", "wal truncated by another process",
        "wal overwritten by another process", "possible WAL overrun occurred",
    ]

    /// Lines of `log` containing `new generation`, each paired with whether it has the documented form
    /// `sync: new generation "<16hex>", <reason>` with a known reason.
    static func newGenerationLines(_ log: String) -> [(line: String, wellFormed: Bool)] {
        log.split(separator: "\n").map(String.init).filter { $0.contains("new generation") }.map { line in
            guard let r = line.range(of: #"sync: new generation "[0-9a-f]{16}", "#, options: .regularExpression) else {
                return (line, false)
            }
            let reason = line[r.upperBound...]
            return (line, newGenerationReasons.contains { reason.hasPrefix($0) })
        }
    }

    // MARK: - LZ4

    /// Snapshots: independent 4 MiB blocks with content checksum.
    static let lz4FrameHeader: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x64, 0x70, 0xB9]
    /// WAL objects: the same without content checksum (their blocks are copied from the shadow segments).
    static let lz4FrameHeaderWithoutChecksum: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73]

    /// Decompresses `path` with the stock `lz4` CLI into `output`; returns the CLI's output on failure.
    static func lz4CLIDecompress(_ path: String, to output: String) throws -> String? {
        let r = try runCommand("/usr/bin/lz4", ["-d", "-f", "-q", path, output])
        return r.status == 0 ? nil : "lz4 -d exited \(r.status): \(r.output)"
    }

    static func readBytes(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Whether `python3` with the `lz4.frame` module is available.
    static func pythonLZ4Available() -> (ok: Bool, detail: String) {
        do {
            let r = try runCommand("/usr/bin/env", ["python3", "-c", "import lz4.frame"], timeout: 60)
            let lastLine = r.output.split(separator: "\n").last.map(String.init) ?? ""
            return (r.status == 0, lastLine)
        } catch {
            return (false, "\(error)")
        }
    }

    /// Decompresses every `(lz4 file, reference file)` pair with Python's `lz4.frame` and compares with the
    /// reference bytes; returns the script's report lines (`OK path` / `MISMATCH path ...` / `ERROR path ...`).
    static func pythonLZ4Check(_ sb: Sandbox, pairs: [(lz4: String, reference: String)]) throws -> (status: Int32, output: String) {
        let script = sb.path("lz4check.py")
        try """
        import sys, lz4.frame
        args = sys.argv[1:]
        bad = 0
        for i in range(0, len(args), 2):
            src, ref = args[i], args[i + 1]
            try:
                data = lz4.frame.decompress(open(src, 'rb').read())
            except Exception as e:
                print('ERROR', src, e); bad += 1; continue
            want = open(ref, 'rb').read()
            if data == want:
                print('OK', src)
            else:
                print('MISMATCH', src, len(data), len(want)); bad += 1
        sys.exit(1 if bad else 0)
        """.write(toFile: script, atomically: true, encoding: .utf8)
        return try runCommand("/usr/bin/env", ["python3", script] + pairs.flatMap { [$0.lz4, $0.reference] },
                              timeout: 120)
    }

    static func u32be(_ b: [UInt8], _ at: Int) -> UInt32 {
        b[at..<at + 4].reduce(0) { ($0 << 8) | UInt32($1) }
    }

    static func u32le(_ b: [UInt8], _ at: Int) -> UInt32 {
        b[at..<at + 4].reversed().reduce(0) { ($0 << 8) | UInt32($1) }
    }

    /// SQLite WAL checksum (REPLICATION.md §5.3) of `bytes` (length a multiple of 8), starting from `seed`.
    static func walChecksum(_ bytes: ArraySlice<UInt8>, bigEndian: Bool, seed: (UInt32, UInt32) = (0, 0)) -> (UInt32, UInt32) {
        var (s0, s1) = seed
        let b = Array(bytes)
        var i = 0
        while i + 8 <= b.count {
            let x0 = bigEndian ? u32be(b, i) : u32le(b, i)
            let x1 = bigEndian ? u32be(b, i + 4) : u32le(b, i + 4)
            s0 = s0 &+ x0 &+ s1
            s1 = s1 &+ x1 &+ s0
            i += 8
        }
        return (s0, s1)
    }

    /// Checks that `wal` is a valid SQLite WAL image: header magic/version/checksum, then whole frames whose
    /// salts match the header and whose checksums chain; the last frame must be a commit frame.
    /// Returns nil when valid, else a description of the first problem.
    static func walProblem(_ wal: [UInt8], expectedPageSize: Int? = nil) -> String? {
        guard wal.count >= 32 else { return "shorter than a WAL header (\(wal.count) bytes)" }
        let magic = u32be(wal, 0)
        guard magic == 0x377F_0682 || magic == 0x377F_0683 else { return "bad magic \(String(magic, radix: 16))" }
        let bigEndian = magic == 0x377F_0683
        guard u32be(wal, 4) == 3_007_000 else { return "bad format version \(u32be(wal, 4))" }
        let pageSize = Int(u32be(wal, 8))
        if let expectedPageSize, pageSize != expectedPageSize { return "page size \(pageSize) != \(expectedPageSize)" }
        var sum = walChecksum(wal[0..<24], bigEndian: bigEndian)
        guard sum == (u32be(wal, 24), u32be(wal, 28)) else { return "bad header checksum" }
        let frameSize = 24 + pageSize
        guard (wal.count - 32) % frameSize == 0 else {
            return "\(wal.count - 32) bytes after the header is not a whole number of \(frameSize)-byte frames"
        }
        let salts = (u32be(wal, 16), u32be(wal, 20))
        var offset = 32
        var lastCommit = true
        while offset < wal.count {
            guard (u32be(wal, offset + 8), u32be(wal, offset + 12)) == salts else { return "salt mismatch at offset \(offset)" }
            sum = walChecksum(wal[offset..<offset + 8], bigEndian: bigEndian, seed: sum)
            sum = walChecksum(wal[offset + 24..<offset + frameSize], bigEndian: bigEndian, seed: sum)
            guard sum == (u32be(wal, offset + 16), u32be(wal, offset + 20)) else { return "checksum mismatch at offset \(offset)" }
            lastCommit = u32be(wal, offset + 4) != 0
            offset += frameSize
        }
        return lastCommit ? nil : "last frame is not a commit frame"
    }
}
