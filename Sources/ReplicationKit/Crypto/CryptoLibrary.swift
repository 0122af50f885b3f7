import CCrypto

/// OpenSSL 3's libcrypto, opened with `dlopen` the first time something needs it (the launcher does not link it;
/// see `Sources/CCrypto`). A launcher with only file replicas never maps it.
///
/// The components that sign or encrypt (the S3, GCS, Azure and SFTP clients, an `age` block) call `load` when they
/// are created or parsed, so a missing libcrypto is one clear error at start-up, before any application is spawned,
/// instead of the forwarding stub's abort at the first call.
public enum CryptoLibrary {
    /// The file name opened (`libcrypto.so.3` on Linux).
    public static var fileName: String { String(cString: rk_crypto_library_name) }

    /// Whether libcrypto has been loaded in this process (does not load it).
    public static var isLoaded: Bool { rk_crypto_is_loaded() != 0 }

    /// Opens libcrypto and resolves every function the launcher calls, once per process; later calls return the
    /// first outcome at once. The first call blocks for a few milliseconds (dynamic loading).
    /// - Parameter user: what needs libcrypto, for the message (e.g. `s3 replica s3://bucket`).
    /// - Throws: `ReplicationError(.config)` naming the library, the loader's reason and the package to install,
    ///   with cause `.library`.
    public static func load(for user: String? = nil) throws(ReplicationError) {
        try library.load(for: user)
    }

    private static let library = LazyLibrary(
        fileName: String(cString: rk_crypto_library_name), isLoaded: { rk_crypto_is_loaded() != 0 },
        open: { rk_crypto_load($0) },
        neededBy: "remote replicas (s3, gcs, abs, sftp) and age encryption need OpenSSL 3's libcrypto: install it "
            + "(Debian/Ubuntu: apt-get install libssl3)")
}
