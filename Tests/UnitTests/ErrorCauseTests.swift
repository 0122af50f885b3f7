import Foundation
import Testing
@testable import ReplicationKit

/// Errors keep their cause as data (errno, SQLite result code, HTTP status with the provider's code, CURLcode)
/// through every layer that adds context, so nothing has to match message text. The HTTP and curl causes are
/// checked against real servers in S3ReplicaClientTests and AzureBlobClientTests.
@Suite struct ErrorCauseTests {
    @Test func systemCallsKeepTheirErrno() throws {
        do {
            _ = try FileDescriptor.openForReading("/nonexistent-\(UUID().uuidString)/file")
            Issue.record("expected ENOENT")
        } catch let e as ReplicationError {
            #expect(e.cause == .errno(ENOENT))
            #expect(e.code == .notFound)
            let wrapped = e.wrapped("restore").wrapped("launcher")
            #expect(wrapped.cause == .errno(ENOENT), "context does not lose the cause")
            #expect(wrapped.message.hasPrefix("launcher: restore: "))
        }
        let dir = try WALFixture.tempDir("cause")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try FileDescriptor.create(dir, mode: 0o600)
            Issue.record("expected EEXIST or EISDIR")
        } catch {
            #expect(ReplicationError.cause(of: error) == .errno(EEXIST) || ReplicationError.cause(of: error) == .errno(EISDIR),
                    "\(error.oneLine)")
        }
    }

    @Test func sqliteKeepsItsResultCode() throws {
        let dir = try WALFixture.tempDir("cause-sql")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try SQLiteConnection(path: dir + "/db", create: true)
        defer { c.close() }
        do {
            try c.exec("SELEKT 1")
            Issue.record("expected a syntax error")
        } catch {
            #expect(ReplicationError.cause(of: error) == .sqlite(1), "\(error.oneLine)")  // SQLITE_ERROR
        }
        do {
            _ = try SQLiteConnection(path: dir + "/missing/db")
            Issue.record("expected SQLITE_CANTOPEN")
        } catch {
            #expect(ReplicationError.cause(of: error) == .sqlite(14), "\(error.oneLine)")  // SQLITE_CANTOPEN
        }
    }

    @Test func restoreContextKeepsTheCause() {
        let inner = ReplicationError(.io, "read x: input/output error", cause: .errno(EIO))
        let outer = RestoreFiles.wrap(inner, "cannot restore snapshot: generations/…")
        #expect(ReplicationError.cause(of: outer) == .errno(EIO))
        #expect(ReplicationError.cause(of: CurlError(.http, "HTTP 503", httpStatus: 503)) == .http(status: 503, providerCode: nil))
    }
}
