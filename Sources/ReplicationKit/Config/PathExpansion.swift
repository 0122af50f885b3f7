import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Database/replica path expansion as upstream's `expand`: `~` and `~/x` → home, relative → absolute, cleaned.
public enum PathExpansion {
    /// Expands `~`/`~/…` to the current user's home, makes relative paths absolute against the CWD and cleans the result.
    ///
    /// `~user` is not supported (it is treated as a relative path, as upstream does).
    public static func expand(_ path: String) -> String {
        if path == "~" || path.hasPrefix("~/") {
            let home = homeDirectory()
            return GoPath.clean(home + "/" + path.dropFirst(path == "~" ? 1 : 2))
        }
        if path.hasPrefix("/") { return GoPath.clean(path) }
        return GoPath.clean(FileManager.default.currentDirectoryPath + "/" + path)
    }

    /// The current user's home directory: the password database entry first (like Go's `user.Current`), then `$HOME`.
    static func homeDirectory() -> String {
        #if canImport(Glibc) || canImport(Musl) || canImport(Darwin)
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        if getpwuid_r(getuid(), &pwd, &buffer, buffer.count, &result) == 0, result != nil, let dir = pwd.pw_dir {
            let home = String(cString: dir)
            if !home.isEmpty { return home }
        }
        #endif
        if let home = ProcessInfo.processInfo.environment["HOME"], !home.isEmpty { return home }
        return NSHomeDirectory()
    }
}

/// Go `path.Clean` for slash-separated paths.
enum GoPath {
    /// Returns the shortest equivalent path: collapses `//`, removes `.`, resolves `..`; "" becomes ".".
    static func clean(_ path: String) -> String {
        if path.isEmpty { return "." }
        let rooted = path.hasPrefix("/")
        var parts: [Substring] = []
        for comp in path.split(separator: "/", omittingEmptySubsequences: true) {
            if comp == "." { continue }
            if comp == ".." {
                if let last = parts.last, last != ".." {
                    parts.removeLast()
                } else if !rooted {
                    parts.append(comp)
                }
                continue
            }
            parts.append(comp)
        }
        let joined = parts.joined(separator: "/")
        if rooted { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }
}
