#if canImport(Glibc)
import Glibc
#endif
import Foundation

extension GCSReplicaClient {
    public func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
        let started = Date()
        let size = try upload(name: name(ReplicaPaths.snapshot(generation, index: index)), body: body)
        return SnapshotInfo(generation: generation, index: index, size: size, createdAt: started)
    }

    public func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
        let started = Date()
        let rel = ReplicaPaths.walSegment(position.generation, index: position.index, offset: position.offset)
        let size = try upload(name: name(rel), body: body)
        return WALSegmentInfo(generation: position.generation, index: position.index, offset: position.offset,
                              size: size, createdAt: started)
    }

    /// Stages `body` in an unlinked temporary file and uploads it; returns its size.
    func upload(name n: String, body: ObjectBody) throws -> UInt64 {
        let fd = try TempFile.make()
        defer { try? fd.close() }
        var size: UInt64 = 0
        try body { bytes in
            try fd.writeAll(bytes)
            size += UInt64(bytes.count)
        }
        if size <= uploadThreshold {
            try multipartUpload(name: n, fd: fd, size: size)
        } else {
            try resumableUpload(name: n, fd: fd, size: size)
        }
        operations.record(.put, bytes: size)  // one PUT per object, whichever upload it took
        return size
    }

    /// The JSON metadata of a new object: `{"name": …}`.
    private static func metadata(_ n: String) throws -> [UInt8] {
        [UInt8](try JSONSerialization.data(withJSONObject: ["name": n], options: [.withoutEscapingSlashes]))
    }

    /// One `uploadType=multipart` request: a `multipart/related` body of the JSON metadata and the object bytes.
    private func multipartUpload(name n: String, fd: FileDescriptor, size: UInt64) throws {
        let boundary = "rk-" + (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16) }.joined()
        var body = Array("--\(boundary)\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".utf8)
        body += try Self.metadata(n)
        body += Array("\r\n--\(boundary)\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        if size > 0 { body += try fd.pread(count: Int(size), at: 0) }
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        _ = try send("POST", url: uploadURL(query: [("uploadType", "multipart")]),
                     headers: [("Content-Type", "multipart/related; boundary=\(boundary)")], body: .bytes(body),
                     what: "upload gs://\(gcs.bucket)/\(n)")
    }

    /// A resumable upload: a session, then `chunkSize` pieces with `Content-Range`, each 308 answer's `Range` saying
    /// where the next piece starts. A failed piece (connection error, 5xx, 429, 401) is sent again from the last
    /// confirmed offset after a backoff, as Google's Go library does (the server ignores bytes it already holds).
    private func resumableUpload(name n: String, fd: FileDescriptor, size: UInt64) throws {
        let what = "upload gs://\(gcs.bucket)/\(n)"
        let start = try send("POST", url: uploadURL(query: [("uploadType", "resumable")]),
                             headers: [("Content-Type", "application/json; charset=UTF-8"),
                                       ("X-Upload-Content-Type", "application/octet-stream"),
                                       ("X-Upload-Content-Length", String(size))],
                             body: .bytes(try Self.metadata(n)), what: what + " (start session)")
        guard let session = start.header("Location"), !session.isEmpty else {
            throw ReplicationError(.io, "gs: \(what): no resumable session URI in the response")
        }
        var offset: UInt64 = 0
        var failures = 0
        let maxFailures = max(3, http.options.maxAttempts + 1)
        while true {
            let length = min(chunkSize, size - offset)
            let outcome = chunk(session, headers: [("Content-Range", "bytes \(offset)-\(offset + length - 1)/\(size)")],
                                body: .file(fd: fd.raw, offset: offset, length: length))
            switch outcome {
            case .success(let r) where r.status == 200 || r.status == 201:
                return
            case .success(let r) where r.status == 308 && Self.persisted(r) >= size:
                throw ReplicationError(.io, "gs: \(what): the server holds all \(size) bytes but did not finish the upload")
            case .success(let r) where r.status == 308 && Self.persisted(r) > offset:
                offset = Self.persisted(r)
                failures = 0
                continue
            case .success(let r) where r.status == 404 || r.status == 410:
                throw failure(what + " (session expired)", r)
            case .success(let r) where r.status < 500 && r.status != 429 && r.status != 401:
                throw failure(what, r)
            default:
                break
            }
            failures += 1
            if case .success(let r) = outcome, r.status == 401 { credentials.invalidate() }
            if failures >= maxFailures {
                switch outcome {
                case .success(let r): throw failure(what + " (chunk at \(offset), \(failures) attempts)", r)
                case .failure(let e): throw ReplicationError(.io, "gs: \(what) (chunk at \(offset), \(failures) attempts): \(e.oneLine)")
                }
            }
            logger.debug("gs: chunk failed, sending it again", metadata: ["gs.object": "\(n)", "gs.offset": "\(offset)"])
            pause(failures)
        }
    }

    /// One request of a resumable session, authorised, without the HTTP client's own retries.
    private func chunk(_ url: String, headers: [(String, String)], body: HTTPBody) -> Result<HTTPResponse, any Error> {
        do {
            let token = try credentials.token()
            let req = HTTPRequest(method: "PUT", url: url,
                                  headers: (token.map { [("Authorization", "Bearer " + $0)] } ?? []) + headers, body: body)
            return .success(try http.performOnce(req, sink: .memory(limit: 1 << 20)))
        } catch {
            return .failure(error)
        }
    }

    /// The next byte the server wants after a 308: `Range: bytes=0-N` ⇒ N+1; no `Range` ⇒ 0.
    static func persisted(_ r: HTTPResponse) -> UInt64 {
        guard let range = r.header("Range"), let dash = range.lastIndex(of: "-"),
              let last = UInt64(range[range.index(after: dash)...].trimmingCharacters(in: .whitespaces)) else { return 0 }
        return last + 1
    }

    private func pause(_ attempt: Int) {
        let capMillis = min(5000, 200 << min(attempt - 1, 10))
        var ts = timespec(tv_sec: 0, tv_nsec: 0)
        let ms = Int.random(in: capMillis / 2...capMillis)
        ts.tv_sec = ms / 1000
        ts.tv_nsec = (ms % 1000) * 1_000_000
        var rest = timespec()
        while nanosleep(&ts, &rest) == -1 && errno == EINTR { ts = rest }
    }
}
