// Fuzzes the config loader: `Configuration.parse(yaml:sourceName:expandEnv:environment:)` with and without
// `$VAR` expansion, and `EnvironmentExpansion.expand` / `unsetReferences` on their own.
//
// Input: YAML text (invalid UTF-8 is repaired with U+FFFD; `Configuration.load` refuses it before parsing).
import FuzzSupport
import ReplicationKit

/// The environment the parser sees: a few set variables, one empty, one holding a `$`.
enum Fixture {
    static let environment: [String: String] = [
        "BUCKET": "bkt", "DB": "/data/db.sqlite", "EMPTY": "", "REGION": "us-east-1", "PASS": "pa$$word",
    ]
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    let lineCount = text.split(separator: "\n", omittingEmptySubsequences: false).count

    // Expansion: no `$`, no change; values without `$` and no `:-` defaults make it idempotent.
    let plainLookup: (String) -> String? = { name in name.hasPrefix("X") ? nil : "v" + name.filter { $0 != "$" } }
    let once = EnvironmentExpansion.expand(text, lookup: plainLookup)
    if !text.contains("$") { fuzzCheck(once == text, "expansion changed text without $") }
    if !text.contains(":-") {
        fuzzCheck(EnvironmentExpansion.expand(once, lookup: plainLookup) == once, "expansion is not idempotent")
    }
    fuzzCheck(EnvironmentExpansion.expand(text, lookup: { _ in nil }).utf8.count <= text.utf8.count,
              "expanding to nothing made the text longer")

    // Unset references: real lines, identifier names, really unset; none when everything is set.
    for ref in EnvironmentExpansion.unsetReferences(text, lookup: plainLookup) {
        fuzzCheck(ref.line >= 1 && ref.line <= lineCount, "line \(ref.line) of \(lineCount)")
        fuzzCheck(ref.name.hasPrefix("X") && ref.name.utf8.allSatisfy { $0 == 95 || (48...57).contains($0)
                  || (65...90).contains($0) || (97...122).contains($0) }, "bad unset name \(ref.name)")
    }
    fuzzCheck(EnvironmentExpansion.unsetReferences(text, lookup: { _ in "" }).isEmpty, "set variable reported unset")

    // The parser throws ReplicationError and nothing else, and is deterministic.
    for expand in [true, false] {
        var first: String
        do {
            let c = try Configuration.parse(yaml: text, sourceName: "fuzz.yml", expandEnv: expand,
                                            environment: Fixture.environment)
            first = "ok \(c.dbs.map { "\($0.path) \($0.replicas.map { "\($0.name) \($0.type)" })" }) \(c.warnings)"
            for db in c.dbs {
                fuzzCheck(db.minCheckpointPageCount > 0, "min-checkpoint-page-count \(db.minCheckpointPageCount)")
                fuzzCheck(Set(db.replicas.map(\.name)).count == db.replicas.count, "duplicate replica names")
            }
        } catch {
            fuzzCheck(error is ReplicationError, "parse threw \(type(of: error)): \(error)")
            first = "error \(error)"
        }
        let second: String
        do {
            let c = try Configuration.parse(yaml: text, sourceName: "fuzz.yml", expandEnv: expand,
                                            environment: Fixture.environment)
            second = "ok \(c.dbs.map { "\($0.path) \($0.replicas.map { "\($0.name) \($0.type)" })" }) \(c.warnings)"
        } catch {
            second = "error \(error)"
        }
        // Yams (6.x) reports duplicated complex (`? {…}`) keys in hash order, so that message's key order and line
        // vary between parses; the verdict must not.
        if first.contains("duplicate mapping key") {
            fuzzCheck(second.contains("duplicate mapping key"), "parse is not deterministic:\n\(first)\n\(second)")
        } else {
            fuzzCheck(first == second, "parse is not deterministic:\n\(first)\n\(second)")
        }
    }
    return 0
}

runFuzzer("FuzzConfig", fuzzOne)
