/// A parsed XML element of an S3 response (attributes and namespaces dropped; text concatenated).
package struct S3XMLElement: Sendable {
    /// Local name (namespace prefix removed).
    package var name: String
    /// Child elements in document order.
    package var children: [S3XMLElement] = []
    /// Decoded character data directly inside the element.
    package var text: String = ""

    /// The first child named `name`.
    func child(_ name: String) -> S3XMLElement? { children.first { $0.name == name } }
    /// All children named `name`.
    func all(_ name: String) -> [S3XMLElement] { children.filter { $0.name == name } }
    /// The text of the first child named `name`.
    func value(_ name: String) -> String? { child(name)?.text }
}

/// A minimal XML reader for the small, well-formed documents S3 returns (ListBucketResult, Error, DeleteResult,
/// InitiateMultipartUploadResult, CompleteMultipartUploadResult, LocationConstraint).
package enum S3XML {
    /// Parses `bytes`; nil when no root element is found or tags do not nest.
    package static func parse(_ bytes: [UInt8]) -> S3XMLElement? {
        var stack: [S3XMLElement] = []
        var root: S3XMLElement?
        var i = 0
        let n = bytes.count
        var textStart = 0
        func flushText(_ end: Int) {
            guard !stack.isEmpty, end > textStart else { return }
            stack[stack.count - 1].text += decode(bytes[textStart..<end])
        }
        while i < n {
            guard bytes[i] == UInt8(ascii: "<") else { i += 1; continue }
            flushText(i)
            if i + 3 < n, bytes[i + 1] == UInt8(ascii: "!"), bytes[i + 2] == UInt8(ascii: "[") {
                // <![CDATA[ ... ]]> (a body cut inside the `<![CDATA[` opener has no text to take)
                let start = min(i + 9, n)
                var j = start
                while j + 2 < n, !(bytes[j] == UInt8(ascii: "]") && bytes[j + 1] == UInt8(ascii: "]") && bytes[j + 2] == UInt8(ascii: ">")) { j += 1 }
                if !stack.isEmpty, start <= j { stack[stack.count - 1].text += String(decoding: bytes[start..<j], as: UTF8.self) }
                i = j + 3
                textStart = i
                continue
            }
            if i + 3 < n, bytes[i + 1] == UInt8(ascii: "!"), bytes[i + 2] == UInt8(ascii: "-") {
                var j = i + 4
                while j + 2 < n, !(bytes[j] == UInt8(ascii: "-") && bytes[j + 1] == UInt8(ascii: "-") && bytes[j + 2] == UInt8(ascii: ">")) { j += 1 }
                i = j + 3
                textStart = i
                continue
            }
            // Find the end of the tag, skipping quoted attribute values.
            var j = i + 1
            var quote: UInt8 = 0
            while j < n {
                let c = bytes[j]
                if quote != 0 { if c == quote { quote = 0 } } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") { quote = c } else if c == UInt8(ascii: ">") { break }
                j += 1
            }
            guard j < n else { return nil }
            let inner = bytes[(i + 1)..<j]
            i = j + 1
            textStart = i
            guard let first = inner.first else { return nil }
            if first == UInt8(ascii: "?") || first == UInt8(ascii: "!") { continue }
            if first == UInt8(ascii: "/") {
                guard let done = stack.popLast() else { return nil }
                if stack.isEmpty { root = done } else { stack[stack.count - 1].children.append(done) }
                continue
            }
            let selfClosing = inner.last == UInt8(ascii: "/")
            var nameEnd = inner.startIndex
            while nameEnd < inner.endIndex, ![UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "/")].contains(inner[nameEnd]) { nameEnd += 1 }
            var name = String(decoding: inner[inner.startIndex..<nameEnd], as: UTF8.self)
            if let colon = name.lastIndex(of: ":") { name = String(name[name.index(after: colon)...]) }
            let element = S3XMLElement(name: name)
            if selfClosing {
                if stack.isEmpty { root = element } else { stack[stack.count - 1].children.append(element) }
            } else {
                stack.append(element)
            }
        }
        return stack.isEmpty ? root : nil
    }

    /// Decodes the five predefined entities and numeric character references. Works on Unicode scalars: `;` or
    /// `&` followed by a combining mark is one Character, and must still end or start an entity.
    static func decode(_ raw: ArraySlice<UInt8>) -> String {
        let s = String(decoding: raw, as: UTF8.self)
        guard s.contains("&") else { return s }
        let scalars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < scalars.count {
            guard scalars[i] == "&", let semi = scalars[(i + 1)...].firstIndex(of: ";") else {
                out.append(scalars[i])
                i += 1
                continue
            }
            let entity = String(String.UnicodeScalarView(scalars[(i + 1)..<semi]))
            switch entity {
            case "amp": out.append("&")
            case "lt": out.append("<")
            case "gt": out.append(">")
            case "quot": out.append("\"")
            case "apos": out.append("'")
            default:
                var scalar: Unicode.Scalar?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    scalar = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
                } else if entity.hasPrefix("#") {
                    scalar = UInt32(entity.dropFirst(), radix: 10).flatMap(Unicode.Scalar.init)
                }
                if let scalar { out.append(scalar) } else { out.append(contentsOf: scalars[i...semi]) }
            }
            i = semi + 1
        }
        return String(out)
    }

    /// Escapes text for an element body.
    package static func escape(_ s: String) -> String {
        var out = ""
        // By Unicode scalar, not Character: `<` followed by a combining mark is one Character that is not "<".
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
