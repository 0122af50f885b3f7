import Foundation
import Testing
@testable import ReplicationKit

/// Retries of the curl client against a scripted local HTTP server (python3's http.server): 5xx, 429, dropped
/// connections and stalls are retried with backoff; the final error carries the status and S3 code.
@Suite("S3 retries against a faulty server", .serialized)
struct S3RetryTests {
    static let serverScript = #"""
import http.server, socket, sys, threading, time
actions = [a for a in sys.argv[1].split(",") if a]
lock = threading.Lock()
state = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/__count":
            return self.reply(200, str(state["n"]).encode())
        with lock:
            n = state["n"]; state["n"] += 1
        act = actions[n] if n < len(actions) else "ok"
        if act == "drop":
            self.connection.shutdown(socket.SHUT_RDWR); self.close_connection = True; return
        if act == "stall":
            time.sleep(3)
        if act.isdigit():
            return self.reply(int(act), b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
        self.reply(200, b'<?xml version="1.0"?><ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>')
    def reply(self, code, body):
        try:
            self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        except OSError:
            pass
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""#

    final class FaultServer {
        let process = Process()
        let port: Int

        init(_ actions: [String]) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", S3RetryTests.serverScript, actions.joined(separator: ",")]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            var line = Data()
            while true {
                let b = out.fileHandleForReading.readData(ofLength: 1)
                if b.isEmpty || b == Data("\n".utf8) { break }
                line.append(b)
            }
            guard let p = Int(String(decoding: line, as: UTF8.self)) else {
                kill(process.processIdentifier, SIGKILL)
                throw ReplicationError(.other, "fault server did not start")
            }
            port = p
        }

        var endpoint: String { "http://127.0.0.1:\(port)" }

        func requestCount() throws -> Int {
            let r = try CurlHTTPClient().performOnce(HTTPRequest(method: "GET", url: endpoint + "/__count", headers: []),
                                                     sink: .memory(limit: 100))
            return Int(String(decoding: r.body, as: UTF8.self)) ?? -1
        }

        deinit {
            // SIGKILL: the test process may block SIGTERM, and a spawned child inherits that mask.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    static func client(_ server: FaultServer, attempts: Int) -> S3ReplicaClient {
        var o = CurlHTTPOptions()
        o.maxAttempts = attempts
        o.baseDelay = .milliseconds(20)
        o.maxDelay = .milliseconds(100)
        o.requestTimeout = .milliseconds(1000)
        return S3ReplicaClient(location: S3Location(bucket: "bkt", prefix: "db", endpoint: server.endpoint),
                               credentials: AWSCredentials(accessKeyID: "AKID", secretAccessKey: "retrySecret/+="),
                               httpOptions: o)
    }

    static var available: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") }

    @Test func retriesServerErrorsThrottlingDropsAndStalls() throws {
        guard Self.available else { print("SKIP S3 retry tests: python3 not found"); return }
        let server = try FaultServer(["503", "429", "drop", "stall", "500"])
        let c = Self.client(server, attempts: 6)
        #expect(try c.generations().isEmpty)
        #expect(try server.requestCount() == 6)
    }

    @Test func givesUpAfterTheLastAttemptWithStatusAndCode() throws {
        guard Self.available else { print("SKIP S3 retry tests: python3 not found"); return }
        let server = try FaultServer(["503", "503", "503", "503"])
        let c = Self.client(server, attempts: 3)
        do {
            _ = try c.generations()
            Issue.record("expected an error")
        } catch {
            #expect(error.oneLine.contains("HTTP 503 SlowDown"), "\(error.oneLine)")
            #expect(!error.oneLine.contains("retrySecret"))
        }
        #expect(try server.requestCount() == 3)
    }

    @Test func clientErrorsAreNotRetried() throws {
        guard Self.available else { print("SKIP S3 retry tests: python3 not found"); return }
        let server = try FaultServer(["403"])
        let c = Self.client(server, attempts: 4)
        #expect(throws: ReplicationError.self) { try c.generations() }
        #expect(try server.requestCount() == 1)
    }
}
