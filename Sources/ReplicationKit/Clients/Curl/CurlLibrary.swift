import CCurl

/// libcurl, opened with `dlopen` the first time something needs it (the launcher does not link it).
///
/// A launcher with only file replicas never maps libcurl and the ~30 libraries it pulls in (TLS, Kerberos, LDAP,
/// HTTP/2 …), which made up most of its start-up time. The components that talk HTTP or SFTP (the S3, GCS, Azure
/// and SFTP clients, the stream follower, `status`/`sync`) call `load` when they are created, so a missing libcurl
/// is one clear error at start-up; `CurlHTTPClient` and the SFTP session check again before every transfer.
public enum CurlLibrary {
    /// The file name opened (`libcurl.so.4` on Linux).
    public static var fileName: String { String(cString: rk_curl_library_name) }

    /// Whether libcurl has been loaded in this process (does not load it).
    public static var isLoaded: Bool { rk_curl_is_loaded() != 0 }

    /// Opens libcurl and runs `curl_global_init`, once per process; later calls return the first outcome at once.
    /// The first call blocks for a few milliseconds (dynamic loading): make it where blocking is allowed.
    /// - Parameter user: what needs libcurl, for the message (e.g. `s3 replica s3://bucket/db`).
    /// - Throws: `ReplicationError(.config)` naming the library, the loader's reason and the package to install,
    ///   with cause `.library`.
    public static func load(for user: String? = nil) throws(ReplicationError) {
        try library.load(for: user)
    }

    private static let library = LazyLibrary(
        fileName: String(cString: rk_curl_library_name), isLoaded: { rk_curl_is_loaded() != 0 },
        open: { rk_curl_load($0) },
        neededBy: "remote replicas (s3, gcs, abs, sftp), upstream followers and the status/sync commands need libcurl: "
            + "install it (Debian/Ubuntu: apt-get install libcurl4)")
}
