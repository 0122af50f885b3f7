import Foundation

/// All path math of a database's local metadata directory (`<db>-litestream`, v0.4 layout).
public struct MetaDirectory: Sendable, Equatable {
    /// Absolute path of the database file.
    public let databasePath: String

    /// Creates the path set for `databasePath`.
    public init(databasePath: String) { self.databasePath = databasePath }

    /// `<db>-wal`
    public var walPath: String { databasePath + "-wal" }
    /// `<db>-litestream`
    public var root: String { databasePath + "-litestream" }
    /// `<db>-litestream/generation`
    public var generationFile: String { root + "/generation" }
    /// `<db>-litestream/position`
    public var positionFile: String { root + "/position" }
    /// `<db>-litestream/generations`
    public var generationsDir: String { root + "/generations" }

    /// `<db>-litestream/generations/<gen>`
    public func generationDir(_ g: Generation) -> String { generationsDir + "/" + g.name }
    /// `<db>-litestream/generations/<gen>/wal`
    public func walDir(_ g: Generation) -> String { generationDir(g) + "/wal" }
    /// `<db>-litestream/generations/<gen>/wal/<index %016x>`
    public func indexDir(_ g: Generation, _ index: UInt32) -> String { walDir(g) + "/" + Hex.format(index, width: 16) }
    /// `<…>/wal/<index %016x>/<offset %016x>.wal.lz4`
    public func segmentPath(_ g: Generation, _ index: UInt32, _ offset: UInt64) -> String {
        indexDir(g, index) + "/" + Hex.format(offset, width: 16) + ".wal.lz4"
    }
}
