import Yams

extension AgeConfig {
    /// Reads a replica's `age: {recipients: [...], identities: [...]}` block. Each string may hold several keys, one
    /// a line (`#` comments allowed), as Litestream 0.3.13 reads them; an error names the list entry, never the key.
    static func parse(_ node: Node, key: String, walker w: YAMLWalker) throws -> AgeConfig? {
        guard let m = try w.mapping(node, key: key) else { return nil }
        do { try CryptoLibrary.load() } catch {
            throw ReplicationError(.config, w.fail(key, error.message).message, cause: error.cause)
        }
        // A misspelt key here would silently drop keys from an encryption setting: an error, not a warning.
        let known: Set<String> = ["recipients", "identities"]
        for k in m.keys.sorted() where !known.contains(k) {
            let near = KeyChecker.closest(k, in: known).map { " (did you mean \(goQuote($0))?)" } ?? ""
            throw w.fail("\(key).\(k)", "unknown age setting\(near); age settings are recipients and identities")
        }
        func strings(_ name: String) throws -> [(key: String, text: String)] {
            guard let n = m[name], let items = try w.sequence(n, key: "\(key).\(name)") else { return [] }
            return try items.enumerated().compactMap { i, item in
                let at = "\(key).\(name)[\(i)]"
                guard case .scalar = item else { throw w.fail(at, "expected a string, got \(w.kind(item))") }
                return try w.string(item, key: at).map { (at, $0) }
            }
        }
        var config = AgeConfig(recipients: [], identities: [])
        for (at, text) in try strings("recipients") {
            do { config.recipients += try AgeKeyList.recipients(text) } catch { throw w.fail(at, error.message) }
        }
        for (at, text) in try strings("identities") {
            do { config.identities += try AgeKeyList.identities(text) } catch { throw w.fail(at, error.message) }
        }
        guard !config.recipients.isEmpty || !config.identities.isEmpty else {
            throw w.fail(key, "no recipients or identities: objects would be stored unencrypted; list the age1… "
                + "recipients to write with and the AGE-SECRET-KEY-1… identities to restore with, or remove the age block")
        }
        return config
    }
}
