import Foundation
import Testing
@testable import ReplicationKit

@Suite("Core types: Generation, WALPosition, Hex")
struct CoreTypesTests {
    private let gen = Generation(name: "29cf4bced74e92ab")!

    // MARK: Generation

    @Test(arguments: ["29cf4bced74e92ab", "0000000000000000", "ffffffffffffffff", "0123456789abcdef"])
    func generationAcceptsSixteenLowercaseHex(name: String) throws {
        let g = try #require(Generation(name: name))
        #expect(g.name == name)
        #expect(g.description == name)
        #expect(Generation(value: g.value) == g)
    }

    @Test(arguments: [
        "",
        "29cf4bced74e92a",          // 15
        "29cf4bced74e92ab0",        // 17
        "29CF4BCED74E92AB",         // uppercase
        "29cf4bced74e92aB",         // one uppercase digit
        "29cf4bced74e92ag",         // non-hex
        " 29cf4bced74e92a",         // leading space
        "29cf4bced74e92a_",         // punctuation
        "+29cf4bced74e92a",         // sign accepted by UInt64(radix:)
        "-29cf4bced74e92a",
        "0x29cf4bced74e92",
        "２９cf4bced74e92ab",        // full-width digits
        "29cf4bced74e92ab ",
    ])
    func generationRejectsOthers(name: String) {
        #expect(Generation(name: name) == nil)
    }

    @Test func generationValueAndOrdering() {
        #expect(gen.value == 0x29cf_4bce_d74e_92ab)
        #expect(Generation(value: 1).name == "0000000000000001")
        #expect(Generation(value: .max).name == "ffffffffffffffff")
        #expect(Generation(value: 1) < Generation(value: 2))
        // Ordering by value equals ordering by name (fixed width).
        let names = [Generation(value: 0xa), Generation(value: 0x1_0000), Generation(value: 0x9)].sorted().map(\.name)
        #expect(names == names.sorted())
    }

    @Test func randomGenerationsAreSixteenHexAndDistinct() {
        var seen = Set<Generation>()
        for _ in 0..<200 {
            let g = Generation.random()
            #expect(g.name.count == 16)
            #expect(g.name.allSatisfy { "0123456789abcdef".contains($0) })
            #expect(Generation(name: g.name) == g)
            seen.insert(g)
        }
        #expect(seen.count == 200)
    }

    // MARK: WALPosition

    @Test func positionDescription() {
        let p = WALPosition(generation: gen, index: 1000, offset: 2000)
        #expect(p.description == "29cf4bced74e92ab/00000000000003e8:00000000000007d0")
        #expect("\(WALPosition(generation: Generation(value: 0), index: 0, offset: 0))"
                == "0000000000000000/0000000000000000:0000000000000000")
        #expect(WALPosition(generation: gen, index: maxWALIndex, offset: UInt64(Int64.max)).description
                == "29cf4bced74e92ab/000000007fffffff:7fffffffffffffff")
        #expect(p.truncated == WALPosition(generation: gen, index: 1000, offset: 0))
    }

    @Test func positionParsing() throws {
        let p = try #require(WALPosition(parsing: "29cf4bced74e92ab/00000000000003e8:00000000000007d0"))
        #expect(p.generation == gen && p.index == 1000 && p.offset == 2000)
        // Round trip over a few values.
        for (i, o) in [(UInt32(0), UInt64(0)), (1, 32), (maxWALIndex, UInt64(Int64.max)), (0x1234, 0x1038)] {
            let q = WALPosition(generation: Generation.random(), index: i, offset: o)
            #expect(WALPosition(parsing: q.description) == q)
        }
        // The position file is written with a trailing newline.
        #expect(WALPosition(parsing: p.description + "\n") == p)
        // Index and offset are plain base-16 numbers (upstream's ParseUint): any width.
        #expect(WALPosition(parsing: "29cf4bced74e92ab/3e8:7d0") == p)
    }

    @Test(arguments: [
        "",
        "29cf4bced74e92ab-00000000000003e8-00000000000007d0",   // dashes instead of / and :
        "29cf4bced74e92ab/xxx:00000000000007d0",                 // index not hex
        "29cf4bced74e92ab/00000000000003e8:xxx",                 // offset not hex
        "29cf4bced74e92ab/:00000000000007d0",                    // empty index
        "29cf4bced74e92ab/00000000000003e8:",                    // empty offset
        "/00000000000003e8:00000000000007d0",                    // empty generation
        "29cf4bced74e92a/00000000000003e8:00000000000007d0",     // short generation
        "29CF4BCED74E92AB/00000000000003e8:00000000000007d0",    // uppercase generation
        "29cf4bced74e92ab:00000000000003e8/00000000000007d0",    // separators swapped
        "29cf4bced74e92ab/0000000080000000:0000000000000000",    // index > MaxIndex
        "29cf4bced74e92ab/0000000000000000:8000000000000000",    // offset > Int64.max
        "29cf4bced74e92ab/0000000000000000:10000000000000000",   // offset > UInt64.max
        "29cf4bced74e92ab/-1:0",
        "29cf4bced74e92ab/+1:0",
        "29cf4bced74e92ab/1:2:3",
        "29cf4bced74e92ab/1/2:3",
    ])
    func positionRejectsMalformed(text: String) {
        #expect(WALPosition(parsing: text) == nil)
    }

    @Test func positionComparison() {
        let a = WALPosition(generation: gen, index: 1, offset: 100)
        #expect(a.compare(a) == .orderedSame)
        #expect(a.compare(WALPosition(generation: gen, index: 1, offset: 101)) == .orderedAscending)
        #expect(a.compare(WALPosition(generation: gen, index: 1, offset: 99)) == .orderedDescending)
        #expect(a.compare(WALPosition(generation: gen, index: 2, offset: 0)) == .orderedAscending)
        #expect(a.compare(WALPosition(generation: gen, index: 0, offset: 9999)) == .orderedDescending)
        let other = WALPosition(generation: Generation(value: gen.value + 1), index: 1, offset: 100)
        #expect(a.compare(other) == nil)
        #expect(other.compare(a) == nil)
        #expect(a.compare(WALPosition(generation: Generation(value: 0), index: 0, offset: 0)) == nil)
    }

    // MARK: Hex

    @Test func hexHelpers() {
        #expect(Hex.format(0, width: 16) == "0000000000000000")
        #expect(Hex.format(UInt32(0x3e8), width: 8) == "000003e8")
        #expect(Hex.format(UInt64(0x1_0000_0000), width: 8) == "100000000")  // width is a minimum
        #expect(Hex.parse("3e8") == 0x3e8)
        #expect(Hex.parse("3E8") == 0x3e8)
        #expect(Hex.parse("") == nil)
        #expect(Hex.parse("+1") == nil)
        #expect(Hex.parse("0x1") == nil)
        #expect(Hex.parse("ffffffffffffffff") == .max)
        #expect(Hex.parse("10000000000000000") == nil)
        #expect(Hex.parseStrict("000003e8", width: 8) == 0x3e8)
        #expect(Hex.parseStrict("000003E8", width: 8) == nil)
        #expect(Hex.parseStrict("3e8", width: 8) == nil)
        #expect(Hex.parseStrict("0000000003e8", width: 8) == nil)
    }
}

@Suite struct SystemHelperTests {
    @Test func utcTimestampMatchesFoundationsRFC3339() {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        for t in [0.0, 1.5, 951_782_400, 1_800_000_000.999, 4_102_444_799] {
            let d = Date(timeIntervalSince1970: t)
            #expect(Syscall.utcTimestamp(d) == f.string(from: d), "t=\(t)")
        }
    }

    @Test func hostNameIsTheKernelsNodeName() throws {
        var u = utsname()
        uname(&u)
        let node = withUnsafeBytes(of: &u.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        #expect(Syscall.hostName() == node)
        #expect(!Syscall.hostName().isEmpty)
    }
}
