// Fuzzes the S3 XML reader used for listings, errors and multipart replies: `S3XML.parse` (and its entity decoding).
//
// Input: an XML document as bytes.
import FuzzSupport
import ReplicationKit

/// Writes `element` back as XML: text first, then the children (the reader keeps no interleaving).
func serialize(_ element: S3XMLElement) -> String {
    "<\(element.name)>" + S3XML.escape(element.text) + element.children.map(serialize).joined() + "</\(element.name)>"
}

/// Whether every name in the tree is a plain XML name, so that serialising it gives a well-formed document.
func plainNames(_ element: S3XMLElement) -> Bool {
    !element.name.isEmpty && element.name.utf8.allSatisfy { c in
        (65...90).contains(c) || (97...122).contains(c) || (48...57).contains(c) || c == 95 || c == 45 || c == 46
    } && element.children.allSatisfy(plainNames)
}

/// Whether every text in the tree is XML character data: XML 1.0 forbids NUL and the C0 controls other than tab,
/// newline and carriage return, so a tree holding them (which the lenient reader accepts from malformed input) has
/// no well-formed serialisation to compare against.
func xmlText(_ element: S3XMLElement) -> Bool {
    element.text.unicodeScalars.allSatisfy { $0.value >= 0x20 || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        && element.children.allSatisfy(xmlText)
}

/// Structural equality (S3XMLElement is not Equatable).
func same(_ a: S3XMLElement, _ b: S3XMLElement) -> Bool {
    a.name == b.name && a.text == b.text && a.children.count == b.children.count
        && zip(a.children, b.children).allSatisfy { same($0, $1) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = fuzzBytes(data, size)
    guard let root = S3XML.parse(bytes) else { return 0 }
    // A parsed tree, written back, parses to the same tree.
    guard plainNames(root), xmlText(root) else { return 0 }
    let text = serialize(root)
    guard let again = S3XML.parse(Array(text.utf8)) else {
        fuzzCheck(false, "serialised tree does not parse: \(text.debugDescription)")
        return 0
    }
    fuzzCheck(same(root, again), "round trip changed the tree: \(text.debugDescription)")
    return 0
}

runFuzzer("FuzzS3XML", fuzzOne)
