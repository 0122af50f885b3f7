/// A C library the launcher opens with `dlopen` the first time something needs it instead of linking it (libcurl,
/// libcrypto): what `CurlLibrary` and `CryptoLibrary` share. `open` is the C shim's loader (0 on success, else the
/// loader's reason through its argument; once per process, later calls return the first outcome).
struct LazyLibrary: Sendable {
    let fileName: String
    let isLoaded: @Sendable () -> Bool
    let open: @Sendable (UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32
    /// Who needs it and how to install it, for the message: `remote replicas … need libcurl: install it (…)`.
    let neededBy: String

    /// Loads the library once; throws `ReplicationError(.config)` naming `user`, the file, the loader's reason and
    /// `neededBy`, with cause `.library`.
    func load(for user: String?) throws(ReplicationError) {
        if isLoaded() { return }
        var reason: UnsafePointer<CChar>?
        guard open(&reason) != 0 else { return }
        let text = reason.map { String(cString: $0) } ?? "unknown error"
        throw ReplicationError(.config, (user.map { "\($0): " } ?? "") + "cannot load \(fileName) (\(text)); \(neededBy)",
                               cause: .library(name: fileName, reason: text))
    }
}
