import Foundation

/// Listing, upload, download and deletion of replica objects in the container.
extension AzureBlobReplicaClient {
    /// A listed blob.
    struct BlobEntry: Equatable {
        var name: String
        var size: UInt64
        /// `Creation-Time`, else `Last-Modified`.
        var created: Date
    }

    /// One parsed List Blobs page.
    struct ListPage: Equatable {
        var blobs: [BlobEntry] = []
        var prefixes: [String] = []
        /// `NextMarker`; nil or empty = last page.
        var nextMarker: String?
    }

    /// Parses an `EnumerationResults` document.
    /// - Returns: nil when the body is not one.
    static func parseListPage(_ body: [UInt8]) -> ListPage? {
        guard let doc = S3XML.parse(body), doc.name == "EnumerationResults" else { return nil }
        var page = ListPage()
        let container = doc.child("Blobs")
        for b in container?.all("Blob") ?? [] {
            guard let name = b.value("Name") else { continue }
            let props = b.child("Properties")
            let created = (props?.value("Creation-Time")).flatMap(AzureDate.parse)
                ?? (props?.value("Last-Modified")).flatMap(AzureDate.parse) ?? Date(timeIntervalSince1970: 0)
            page.blobs.append(BlobEntry(name: name, size: UInt64(props?.value("Content-Length") ?? "") ?? 0, created: created))
        }
        for p in container?.all("BlobPrefix") ?? [] { if let n = p.value("Name") { page.prefixes.append(n) } }
        page.nextMarker = doc.value("NextMarker").flatMap { $0.isEmpty ? nil : $0 }
        return page
    }

    /// List Blobs over every page (`marker`/`NextMarker`); `maxResults` sets the page size (server default 5000).
    func list(prefix: String, delimiter: String?, maxResults: Int? = nil) throws -> (blobs: [BlobEntry], prefixes: [String]) {
        var blobs: [BlobEntry] = [], prefixes: [String] = []
        var marker: String?
        repeat {
            var q: [(String, String)] = [("restype", "container"), ("comp", "list"), ("prefix", prefix)]
            if let d = delimiter { q.append(("delimiter", d)) }
            if let m = maxResults ?? listPageSize { q.append(("maxresults", String(m))) }
            if let m = marker { q.append(("marker", m)) }
            let resp = try send("GET", blob: nil, query: q, what: "list \(abs.account)/\(abs.container)/\(prefix)")
            guard let page = Self.parseListPage(resp.body) else {
                throw ReplicationError(.io, "abs: list \(abs.account)/\(abs.container)/\(prefix): malformed EnumerationResults")
            }
            operations.record(.list)  // one LIST per page, as upstream
            blobs += page.blobs
            prefixes += page.prefixes
            marker = page.nextMarker
        } while marker != nil
        return (blobs, prefixes)
    }

    public func generations() throws -> [Generation] {
        let base = blobName(ReplicaPaths.generationsDir + "/")
        return try list(prefix: base, delimiter: "/").prefixes.compactMap { p in
            guard p.hasPrefix(base), p.hasSuffix("/") else { return nil }
            return Generation(name: String(p.dropFirst(base.count).dropLast()))
        }.sorted()
    }

    public func snapshots(generation: Generation) throws -> [SnapshotInfo] {
        let base = blobName(ReplicaPaths.generation(generation) + "/snapshots/")
        return ObjectStoreListing.snapshots(generation: generation, base: base,
                                            objects: try list(prefix: base, delimiter: nil).blobs.map { ($0.name, $0.size, $0.created) })
    }

    public func walSegments(generation: Generation) throws -> [WALSegmentInfo] {
        let base = blobName(ReplicaPaths.generation(generation) + "/wal/")
        return ObjectStoreListing.segments(generation: generation, base: base,
                                           objects: try list(prefix: base, delimiter: nil).blobs.map { ($0.name, $0.size, $0.created) })
    }

    // MARK: writing

    /// A body staged in an unlinked temporary file with the MD5 of each `blockSize` range and of the whole.
    final class StagedBody {
        let fd: FileDescriptor
        var size: UInt64 = 0
        var md5 = [UInt8]()
        var blockMD5s: [[UInt8]] = []
        init(fd: FileDescriptor) { self.fd = fd }
    }

    private func stage(_ body: ObjectBody) throws -> StagedBody {
        let staged = StagedBody(fd: try TempFile.make())
        let whole = Digest(.md5)
        var block = Digest(.md5)
        var inBlock: UInt64 = 0
        let blockSize = self.blockSize
        try body { bytes in
            try staged.fd.writeAll(bytes)
            whole.update(bytes)
            var rest = bytes
            while rest.count > 0 {
                let take = Int(min(UInt64(rest.count), blockSize - inBlock))
                block.update(UnsafeRawBufferPointer(rebasing: rest[0..<take]))
                inBlock += UInt64(take)
                if inBlock == blockSize { staged.blockMD5s.append(block.finish()); block = Digest(.md5); inBlock = 0 }
                rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            }
            staged.size += UInt64(bytes.count)
        }
        if inBlock > 0 { staged.blockMD5s.append(block.finish()) }
        staged.md5 = whole.finish()
        return staged
    }

    /// Block IDs: base64 of a fixed-width decimal, so every ID of a blob has the same length (a service rule).
    static func blockID(_ n: Int) -> String {
        let digits = String(n)
        return Digest.base64(Array(("block-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits).utf8))
    }

    /// Stores `relative` from `body`: one Put Blob below `blockThreshold`, else Put Block per block + Put Block List.
    func put(_ relative: String, body: ObjectBody) throws -> UInt64 {
        let name = blobName(relative)
        let staged = try stage(body)
        defer { try? staged.fd.close() }
        let what = "PUT \(abs.account)/\(abs.container)/\(name)"
        if staged.size < blockThreshold {
            _ = try send("PUT", blob: name, headers: [("x-ms-blob-type", "BlockBlob"), ("Content-MD5", Digest.base64(staged.md5))],
                         body: .file(fd: staged.fd.raw, offset: 0, length: staged.size), what: what)
        } else {
            var ids: [String] = []
            for (i, md5) in staged.blockMD5s.enumerated() {
                let id = Self.blockID(i)
                let offset = UInt64(i) * blockSize
                _ = try send("PUT", blob: name, query: [("comp", "block"), ("blockid", id)],
                             headers: [("Content-MD5", Digest.base64(md5))],
                             body: .file(fd: staged.fd.raw, offset: offset, length: min(blockSize, staged.size - offset)),
                             what: what + " block \(i + 1)/\(staged.blockMD5s.count)")
                ids.append(id)
            }
            let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>" +
                ids.map { "<Latest>\($0)</Latest>" }.joined() + "</BlockList>"
            let bytes = Array(xml.utf8)
            _ = try send("PUT", blob: name, query: [("comp", "blocklist")],
                         headers: [("x-ms-blob-content-md5", Digest.base64(staged.md5)), ("Content-Type", "application/xml"),
                                   ("Content-MD5", Digest.base64(Digest.md5(bytes)))],
                         body: .bytes(bytes), what: what + " block list")
        }
        operations.record(.put, bytes: staged.size)  // one PUT per object, as upstream
        return staged.size
    }

    public func writeSnapshot(generation: Generation, index: UInt32, body: ObjectBody) throws -> SnapshotInfo {
        let started = Date()
        let size = try put(ReplicaPaths.snapshot(generation, index: index), body: body)
        return SnapshotInfo(generation: generation, index: index, size: size, createdAt: started)
    }

    public func writeWALSegment(position: WALPosition, body: ObjectBody) throws -> WALSegmentInfo {
        let started = Date()
        let size = try put(ReplicaPaths.walSegment(position.generation, index: position.index, offset: position.offset), body: body)
        return WALSegmentInfo(generation: position.generation, index: position.index, offset: position.offset,
                              size: size, createdAt: started)
    }

    // MARK: reading

    /// Downloads a blob into an unlinked temporary file and returns a source over it.
    private func get(_ relative: String) throws -> any ByteSource {
        let name = blobName(relative)
        let fd = try TempFile.make()
        do {
            _ = try send("GET", blob: name, sink: .file(fd: fd.raw), what: "GET \(abs.account)/\(abs.container)/\(name)")
            operations.record(.get, bytes: (try? fd.size()) ?? 0)
            try fd.seek(to: 0)
        } catch {
            try? fd.close()
            throw error
        }
        return FileByteSource(fd)
    }

    public func openSnapshot(_ snapshot: SnapshotInfo) throws -> any ByteSource {
        try get(objectName(snapshot: snapshot))
    }

    public func openWALSegment(_ segment: WALSegmentInfo) throws -> any ByteSource {
        try get(objectName(segment: segment))
    }

    // MARK: deleting

    /// Delete Blob per blob (as upstream); a missing blob is not an error.
    func deleteBlobs(_ names: [String]) throws {
        for name in names {
            do {
                _ = try send("DELETE", blob: name, what: "DELETE \(abs.account)/\(abs.container)/\(name)")
            } catch let e as ReplicationError where e.code == .notFound {
                // BlobNotFound: already gone.
            }
            operations.record(.delete)
        }
    }

    public func deleteGeneration(_ generation: Generation) throws {
        try deleteBlobs(try list(prefix: blobName(ReplicaPaths.generation(generation) + "/"), delimiter: nil).blobs.map(\.name))
    }

    public func deleteSnapshot(_ snapshot: SnapshotInfo) throws {
        try deleteBlobs([blobName(objectName(snapshot: snapshot))])
    }

    public func deleteWALSegments(_ segments: [WALSegmentInfo]) throws {
        try deleteBlobs(segments.map { blobName(objectName(segment: $0)) })
    }
}
