// Fuzzes `-exec` splitting: `ShellWords.split` and `ShellWords.command`.
//
// Input: the command line (invalid UTF-8 is repaired with U+FFFD).
import FuzzSupport
import LauncherSupport

/// Quotes `word` so that `ShellWords.split` gives it back as one word: single quotes, with each `'` written as
/// `'\''` (close, escaped quote, reopen). Scalar by scalar, as the splitter reads (a `'` followed by a combining
/// mark is one Character).
func quote(_ word: String) -> String {
    var out = String.UnicodeScalarView()
    out.append("'")
    for r in word.unicodeScalars {
        if r == "'" { out.append(contentsOf: "'\\''".unicodeScalars) } else { out.append(r) }
    }
    out.append("'")
    return String(out)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let line = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    let words: [String]
    do {
        words = try ShellWords.split(line)
    } catch {
        // Typed throws: only .invalid can come out of split; command agrees.
        fuzzCheck(error == .invalid, "split threw \(error)")
        do { _ = try ShellWords.command(line); fuzzCheck(false, "command accepted what split refuses") } catch {
            fuzzCheck(error == .invalid, "command threw \(error) where split threw .invalid")
        }
        return 0
    }
    // command() is split() plus "at least one word".
    do {
        let c = try ShellWords.command(line)
        fuzzCheck(c == words && !words.isEmpty, "command differs from split")
    } catch {
        fuzzCheck(error == .empty && words.isEmpty, "command threw \(error) for \(words)")
    }
    // No word is longer than the line, and a line without quotes or escapes has no empty word.
    for w in words {
        fuzzCheck(w.unicodeScalars.count <= line.unicodeScalars.count, "word longer than the line")
        if !line.unicodeScalars.contains(where: { $0 == "'" || $0 == "\"" || $0 == "\\" }) {
            fuzzCheck(!w.isEmpty, "empty word without quotes in \(line.debugDescription)")
        }
    }
    // Round trip: quoting every word and joining with spaces splits back to the same words.
    let joined = words.map(quote).joined(separator: " ")
    do {
        let again = try ShellWords.split(joined)
        fuzzCheck(again == words, "round trip \(words) -> \(joined.debugDescription) -> \(again)")
    } catch {
        fuzzCheck(false, "quoted words do not split: \(joined.debugDescription): \(error)")
    }
    return 0
}

runFuzzer("FuzzShellWords", fuzzOne)
