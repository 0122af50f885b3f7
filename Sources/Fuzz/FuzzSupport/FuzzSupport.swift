import CFuzzDriver
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `LLVMFuzzerTestOneInput` signature libFuzzer calls.
public typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer on `callback`, or exits 2 with the rebuild command when the binary was built without it.
public func runFuzzer(_ name: String, _ callback: FuzzCallback) -> Never {
    guard cfuzz_driver_available() != 0 else {
        let hint = "\(name): not built with -sanitize=fuzzer; rebuild with\n"
            + "  swift build -c debug --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address --product \(name)\n"
            + "or run: bash scripts/fuzz.sh [SECONDS] \(name)\n"
        _ = hint.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        exit(2)
    }
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(cfuzz_run(&argc, &argv, callback))
}

/// Stops the run with a message when an invariant does not hold (libFuzzer then saves the input as a crash).
public func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition { fatalError("fuzz invariant violated: \(message())", file: file, line: line) }
}

/// The input as bytes (empty when libFuzzer passes no buffer).
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// A deterministic sequence of sizes derived from a seed, used to cut an input into pieces in varied ways.
public struct FuzzChunker {
    private var state: UInt64

    /// Starts the sequence from `seed`.
    public init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    /// The next size in 1...max.
    public mutating func next(max: Int) -> Int {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Int(state % UInt64(Swift.max(1, max))) + 1
    }
}
