/// Where a replica's objects live: one typed value per backend (INTERFACES §2.6), built once from either the
/// YAML keys or a replica URL by `RawReplica.resolve()`, the single place of defaults and validation.
public enum ReplicaDestination: Sendable, Equatable {
    case file(FileDestination)
    case s3(S3Destination)
    case gcs(GCSDestination)
    case azure(AzureDestination)
    case sftp(SFTPDestination)

    /// The backend's type name as upstream spells it: `file`, `s3`, `gs`, `abs`, `sftp`.
    public var type: String {
        switch self {
        case .file: return "file"
        case .s3: return "s3"
        case .gcs: return "gs"
        case .azure: return "abs"
        case .sftp: return "sftp"
        }
    }
}

/// A local directory.
public struct FileDestination: Sendable, Equatable {
    /// Absolute, `~`-expanded, cleaned directory.
    public var path: String

    /// Creates a destination.
    public init(path: String) { self.path = path }
}

/// An S3 bucket (AWS or S3-compatible).
public struct S3Destination: Sendable, Equatable {
    /// Bucket name.
    public var bucket: String
    /// Key prefix (cleaned, no leading `/`); nil = bucket root.
    public var path: String?
    /// Region (explicit or derived from the URL host); nil = discovered (AWS) or `us-east-1` (custom endpoint).
    public var region: String?
    /// Base URL of an S3-compatible endpoint; nil = AWS.
    public var endpoint: String?
    /// Path-style addressing: explicit, else "an endpoint is set", OR-ed with the URL host's (upstream quirk).
    public var forcePathStyle: Bool
    /// Disables TLS certificate verification.
    public var skipVerify: Bool
    /// Static access key id (the replica's own, else the config's global one); nil = the credential chain.
    public var accessKeyID: String?
    /// Static secret access key; never printed.
    public var secretAccessKey: String?
    /// `x-amz-storage-class` of snapshot and WAL objects (one of `storageClasses`); nil = the bucket's default.
    public var storageClass: String?

    /// The values S3 accepts for `x-amz-storage-class`.
    public static let storageClasses = ["STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA",
                                        "INTELLIGENT_TIERING", "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE", "OUTPOSTS",
                                        "EXPRESS_ONEZONE"]

    /// Creates a destination.
    public init(bucket: String, path: String? = nil, region: String? = nil, endpoint: String? = nil,
                forcePathStyle: Bool = false, skipVerify: Bool = false, accessKeyID: String? = nil,
                secretAccessKey: String? = nil, storageClass: String? = nil) {
        self.storageClass = storageClass
        self.bucket = bucket
        self.path = path
        self.region = region
        self.endpoint = endpoint
        self.forcePathStyle = forcePathStyle
        self.skipVerify = skipVerify
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
    }
}

/// A Google Cloud Storage bucket (`gs://`, also spelled `gcs://`).
public struct GCSDestination: Sendable, Equatable {
    /// Bucket name.
    public var bucket: String
    /// Object name prefix (cleaned, no leading `/`); nil = bucket root.
    public var path: String?
    /// Base URL of another server (`endpoint` key); nil = `STORAGE_EMULATOR_HOST`, else Google.
    public var endpoint: String?
    /// Disables TLS certificate verification.
    public var skipVerify: Bool

    /// Creates a destination.
    public init(bucket: String, path: String? = nil, endpoint: String? = nil, skipVerify: Bool = false) {
        self.bucket = bucket
        self.path = path
        self.endpoint = endpoint
        self.skipVerify = skipVerify
    }
}

/// An Azure Blob Storage container (`abs://[ACCOUNT@]CONTAINER/PATH`).
public struct AzureDestination: Sendable, Equatable {
    /// Storage account name (`account-name`, or the URL's user part); nil only when `endpoint` names the account.
    public var accountName: String?
    /// Container name (`bucket`, or the URL's host).
    public var container: String
    /// Blob name prefix (cleaned, no leading `/`); nil = container root.
    public var path: String?
    /// Base URL of the account's blob service (`endpoint`); nil = `https://ACCOUNT.blob.core.windows.net`.
    public var endpoint: String?
    /// SharedKey account key (`account-key`; `LITESTREAM_AZURE_ACCOUNT_KEY` is read when the client is built).
    public var accountKey: String?
    /// A SAS token (`sas-token`; `LITESTREAM_AZURE_SAS_TOKEN` is read when the client is built); never printed.
    public var sasToken: String?
    /// Disables TLS certificate verification.
    public var skipVerify: Bool

    /// Creates a destination.
    public init(accountName: String?, container: String, path: String? = nil, endpoint: String? = nil,
                accountKey: String? = nil, sasToken: String? = nil, skipVerify: Bool = false) {
        self.accountName = accountName
        self.container = container
        self.path = path
        self.endpoint = endpoint
        self.accountKey = accountKey
        self.sasToken = sasToken
        self.skipVerify = skipVerify
    }
}

/// A directory on an SSH server reached over SFTP.
public struct SFTPDestination: Sendable, Equatable {
    /// `host` or `host:port` (port 22 when absent).
    public var host: String
    /// Login name.
    public var user: String
    /// Password (`password`, or the URL's password); never printed.
    public var password: String?
    /// Private key file (`key-path`).
    public var keyPath: String?
    /// Passphrase of the private key (`key-passphrase`); never printed.
    public var keyPassphrase: String?
    /// Remote directory; absolute when it starts with `/`, else relative to the login directory. nil = login directory.
    public var path: String?
    /// The expected host key (`host-key`): an OpenSSH public-key line or a `SHA256:` fingerprint.
    public var hostKey: String?
    /// A known_hosts file (`known-hosts-path`); nil = `~/.ssh/known_hosts` when no `host-key` is given.
    public var knownHostsPath: String?
    /// Turns host-key verification off (`insecure-skip-host-key-check: true`); warned about at every start.
    public var insecureSkipHostKeyCheck: Bool

    /// Creates a destination.
    public init(host: String, user: String, password: String? = nil, keyPath: String? = nil,
                keyPassphrase: String? = nil, path: String? = nil, hostKey: String? = nil,
                knownHostsPath: String? = nil, insecureSkipHostKeyCheck: Bool = false) {
        self.host = host
        self.user = user
        self.password = password
        self.keyPath = keyPath
        self.keyPassphrase = keyPassphrase
        self.path = path
        self.hostKey = hostKey
        self.knownHostsPath = knownHostsPath
        self.insecureSkipHostKeyCheck = insecureSkipHostKeyCheck
    }
}

extension ReplicaConfig {
    /// The S3 destination, when this is an S3 replica.
    public var s3: S3Destination? { if case .s3(let d) = destination { return d } else { return nil } }
    /// The GCS destination, when this is a GCS replica.
    public var gcs: GCSDestination? { if case .gcs(let d) = destination { return d } else { return nil } }
    /// The Azure destination, when this is an Azure Blob replica.
    public var azure: AzureDestination? { if case .azure(let d) = destination { return d } else { return nil } }
    /// The SFTP destination, when this is an SFTP replica.
    public var sftp: SFTPDestination? { if case .sftp(let d) = destination { return d } else { return nil } }
    /// The file destination, when this is a file replica.
    public var file: FileDestination? { if case .file(let d) = destination { return d } else { return nil } }
}
