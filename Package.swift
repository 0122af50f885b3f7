// swift-tools-version:6.0
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

// libFuzzer targets (fuzz/README.md). A plain `swift build` links them too (the driver is a weak symbol) and they
// exit 2 with a hint; `scripts/fuzz.sh` builds them with `-sanitize=fuzzer,address` into `.build-fuzz`.
let fuzzers: [(name: String, dependencies: [Target.Dependency])] = [
    ("FuzzWAL", ["ReplicationKit"]),
    ("FuzzLZ4", ["ReplicationKit"]),
    ("FuzzStreamRecord", ["ReplicationKit"]),
    ("FuzzReplicaURL", ["ReplicationKit"]),
    ("FuzzConfig", ["ReplicationKit"]),
    ("FuzzShellWords", ["LauncherSupport"]),
    ("FuzzS3XML", ["ReplicationKit"]),
]

let fuzzTargets: [Target] =
    [
        .target(name: "CFuzzDriver", path: "Sources/Fuzz/CFuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver"], path: "Sources/Fuzz/FuzzSupport",
                swiftSettings: strictSettings),
    ] + fuzzers.map { fuzzer in
        .executableTarget(name: fuzzer.name, dependencies: fuzzer.dependencies + ["FuzzSupport"],
                          path: "Sources/Fuzz/\(fuzzer.name)", swiftSettings: strictSettings)
    }

// Release builds of the launcher on Linux (README "Memory of the binary", issue 15): the toolchain's lld instead of
// gold, to pack the ~90,000 relative relocations of the PIE into a few kilobytes (DT_RELR, glibc >= 2.36: Debian 12)
// instead of a 2 MB table the loader reads at every start, and no dynamic export of the binary's own ~14,000
// symbols (nothing loads against them; their tables were another megabyte read at start).
let releaseLinkerSettings: [LinkerSetting] = [
    .unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic"],
                 .when(platforms: [.linux], configuration: .release)),
]

let package = Package(
    name: "launcher",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "launcher", targets: ["Launcher"]),
        .executable(name: "example-writer", targets: ["ExampleWriter"]),
        .library(name: "ReplicationKit", targets: ["ReplicationKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CLZ4", path: "Sources/CLZ4", pkgConfig: "liblz4",
                       providers: [.apt(["liblz4-dev"])]),
        // libcurl is not linked: CCurl opens libcurl.so.4 with dlopen when a remote replica, a follower or a
        // `status`/`sync` client is first created, so the file-replica path never maps it (issue 15). Its headers
        // are still needed to build (libcurl4-openssl-dev; CCurl.h stops with that hint when they are missing).
        .target(name: "CCurl", path: "Sources/CCurl"),
        // libcrypto is not linked either: CCrypto defines the functions ReplicationKit calls and forwards them to
        // libcrypto.so.3, opened with dlopen at the first call (S3/GCS/Azure/SFTP replicas, age), so the
        // file-replica path never maps it (issue 15). Its headers are still needed to build (libssl-dev).
        .target(name: "CCrypto", path: "Sources/CCrypto"),
        .systemLibrary(name: "CLauncherShims", path: "Sources/CLauncherShims"),
        .target(
            name: "ReplicationKit",
            dependencies: [
                "CSQLite", "CLZ4", "CCurl", "CCrypto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        // Pure helpers of the launcher executable, in a library so the fuzzers can link them.
        .target(
            name: "LauncherSupport",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "Launcher",
            dependencies: [
                "ReplicationKit", "LauncherSupport", "CLauncherShims",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings,
            linkerSettings: releaseLinkerSettings
        ),
        .executableTarget(
            name: "ExampleWriter",
            dependencies: ["CSQLite"],
            swiftSettings: strictSettings
        ),
        // Fixtures both test targets need (the replica-client contract, log capture, the metrics parser).
        .target(
            name: "TestFixtures",
            dependencies: ["ReplicationKit", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestFixtures",
            swiftSettings: strictSettings
        ),
        // No server, no spawned launcher: the engine in-process on real SQLite files and temp directories, the
        // launcher's pure helpers, CLI oracles (age, lz4, botocore).
        .testTarget(
            name: "UnitTests",
            dependencies: ["ReplicationKit", "Launcher", "LauncherSupport", "TestFixtures", "CSQLite", "CLZ4",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        // Real servers (scripts/start-*.sh), the built launcher and example-writer as processes, signals.
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Launcher", "LauncherSupport", "ExampleWriter", "ReplicationKit", "TestFixtures", "CSQLite",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
    ] + fuzzTargets,
    swiftLanguageModes: [.v6]
)

