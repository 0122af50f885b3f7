// Fuzzes the `/stream` record decoding a follower does: `StreamRecordHeader.decode` and `StreamRecordReader`
// (the state machine `StreamFollower` feeds network reads to), plus the LZ4 decoding of WAL segment payloads.
//
// Input: byte 0 seeds how the body is cut into network reads; the rest is a `/stream` response body.
import FuzzSupport
import ReplicationKit

/// What the reader reported, with payloads copied (their pointers are valid only during the callback).
enum Event: Equatable {
    case begin(StreamRecordHeader)
    case payload([UInt8])
    case end(StreamRecordHeader)
}

/// Feeds `body` to a fresh reader in pieces of the sizes `cut` gives; returns the events (adjacent payload pieces
/// merged) and the error, if any. Checks that every payload lies inside the piece being consumed.
func read(_ body: [UInt8], cut: (Int) -> Int) -> (events: [Event], error: (any Error)?, atBoundary: Bool) {
    var reader = StreamRecordReader()
    var events: [Event] = []
    var offset = 0
    do {
        while offset < body.count {
            let n = min(cut(body.count - offset), body.count - offset)
            try body.withUnsafeBytes { all in
                let piece = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + n)])
                try reader.consume(piece) { event in
                    switch event {
                    case .begin(let h): events.append(.begin(h))
                    case .end(let h): events.append(.end(h))
                    case .payload(let p):
                        // Never outside the bytes handed in (ASan would also catch a read past them).
                        fuzzCheck(p.count > 0, "empty payload event")
                        fuzzCheck(p.baseAddress! >= piece.baseAddress! && p.baseAddress! + p.count <= piece.baseAddress! + piece.count,
                                  "payload points outside the consumed piece")
                        if case .payload(let prev) = events.last {
                            events[events.count - 1] = .payload(prev + Array(p))
                        } else {
                            events.append(.payload(Array(p)))
                        }
                    }
                }
            }
            offset += n
        }
    } catch {
        return (events, error, false)
    }
    return (events, nil, reader.isAtRecordBoundary)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzBytes(data, size)
    guard let seed = input.first else { return 0 }
    let body = Array(input.dropFirst())

    // Header decoding alone: decode ∘ encode is the identity on what decodes.
    if body.count >= StreamRecordHeader.encodedSize {
        let raw = Array(body[0..<StreamRecordHeader.encodedSize])
        do {
            let h = try StreamRecordHeader.decode(raw)
            fuzzCheck(h.encoded() == raw, "header re-encodes differently: \(h)")
            fuzzCheck(try StreamRecordHeader.decode(h.encoded()) == h, "re-decoded header differs")
        } catch {
            fuzzCheck(error is ReplicationError, "decode threw \(type(of: error))")
        }
    }
    do {
        _ = try StreamRecordHeader.decode(body.prefix(StreamRecordHeader.encodedSize - 1 - Int(seed % 8)))
        fuzzCheck(false, "a short header decoded")
    } catch {}

    // The same body in one read and in many small ones gives the same records and the same verdict.
    let whole = read(body) { $0 }
    var chunker = FuzzChunker(seed: UInt64(seed))
    let pieces = read(body) { _ in chunker.next(max: 53) }
    fuzzCheck(whole.events == pieces.events, "chunking changed the records")
    fuzzCheck((whole.error == nil) == (pieces.error == nil), "chunking changed the verdict")
    if let e = whole.error { fuzzCheck(e is ReplicationError, "reader threw \(type(of: e))") }

    // Framing: begin, payload of exactly `size` bytes, end; the payloads partition the body after the headers.
    var current: StreamRecordHeader?
    var got: UInt64 = 0
    var consumed = 0
    for event in whole.events {
        switch event {
        case .begin(let h):
            fuzzCheck(current == nil, "begin inside a record")
            fuzzCheck(h.kind != .heartbeat || h.size == 0, "heartbeat with a payload accepted")
            fuzzCheck(h.kind != .walSegment || (h.size > 0 && h.size <= StreamRecordReader.maxSegmentSize),
                      "wal segment size \(h.size) accepted")
            fuzzCheck(Array(body[consumed..<(consumed + StreamRecordHeader.encodedSize)]) == h.encoded(),
                      "header does not match the body bytes")
            consumed += StreamRecordHeader.encodedSize
            current = h
            got = 0
        case .payload(let p):
            fuzzCheck(current != nil, "payload outside a record")
            fuzzCheck(Array(body[consumed..<(consumed + p.count)]) == p, "payload bytes differ from the body")
            consumed += p.count
            got += UInt64(p.count)
            fuzzCheck(got <= current!.size, "payload longer than the record")
            // A WAL segment payload is an LZ4 frame; decoding it must fail cleanly or succeed.
            if current!.kind == .walSegment && got == current!.size {
                do { _ = try LZ4.decompress(p) } catch { fuzzCheck(error is LZ4Error, "segment decode threw \(error)") }
            }
        case .end(let h):
            fuzzCheck(current == h, "end of another record")
            fuzzCheck(got == h.size, "record ended after \(got) of \(h.size) bytes")
            current = nil
        }
    }
    if whole.error == nil {
        fuzzCheck(whole.atBoundary == (current == nil && consumed == body.count), "boundary flag")
    }
    return 0
}

runFuzzer("FuzzStreamRecord", fuzzOne)
