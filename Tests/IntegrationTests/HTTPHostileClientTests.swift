import Foundation
import Testing

/// Raw TCP clients of the `-addr` server, for the hostile-client tests (idle sockets, slow headers, pipelining).
enum RawTCP {
    /// Connects to 127.0.0.1:`port`; -1 when the connection fails.
    static func connect(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { close(fd); return -1 }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Whether the peer closed the connection (EOF or reset), waiting at most `timeout` seconds.
    static func closedByPeer(_ fd: Int32, timeout: TimeInterval) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&p, 1, Int32(timeout * 1000)) > 0 else { return false }
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    /// Everything received until the peer closes or `timeout` passes.
    static func readAll(_ fd: Int32, timeout: TimeInterval) -> String {
        var out: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var buf = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard Glibc.poll(&p, 1, 100) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Descriptors a process has open.
    static func openDescriptors(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }
}

extension ReplicationIntegrationTests {
    /// The `-addr` port must never stop replication (issue 11 item 6): idle and unfinished connections time out,
    /// connections are bounded below the descriptor budget, and health checks get through a flood.
    @Suite(.serialized) struct HTTPHostileClientTests {
        typealias H = ReplicationHarness
        typealias L = LiveHarness

        @Test func idleFloodSlowHeadersAndOddRequestsDoNotStopReplication() throws {
            let sb = try H.Sandbox()
            defer { sb.cleanup() }
            var lim = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
            lim.rlim_cur = lim.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)

            let db = sb.path("app.db"), replica = sb.path("r")
            try H.runWriter(db, count: 1)
            let config = sb.path("hostile.yml")
            try "addr: \"127.0.0.1:0\"\ndbs:\n  - path: \(db)\n    replicas:\n      - url: file://\(replica)\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            // A small descriptor limit (which the launcher cannot raise): the server gets what replication leaves.
            var env = ProcessInfo.processInfo.environment
            env["LAUNCHER_HTTP_HEADER_TIMEOUT"] = "1s"
            env["LAUNCHER_HTTP_IDLE_TIMEOUT"] = "1s"
            let p = try sb.start("/bin/sh", ["-c", "ulimit -n 320 && exec \"$0\" replicate -config \"$1\"",
                                             TestSupport.launcher, config],
                                 log: "launcher.log", environment: env)
            guard let url = L.serverURL(p), let port = Int(url.split(separator: ":").last ?? "") else {
                Issue.record("no serving line:\n\(H.tail(p.output))")
                return
            }
            #expect(p.waitForOutput("initialization complete", timeout: 60), "\(H.tail(p.output))")
            let baseline = RawTCP.openDescriptors(p.pid)

            // 1,000 idle connections: far more than the budget (320 minus replication's reserve).
            var idle: [Int32] = []
            for _ in 0..<1000 {
                let fd = RawTCP.connect(port: port)
                if fd >= 0 { idle.append(fd) }
            }
            defer { for fd in idle { close(fd) } }
            #expect(RawTCP.openDescriptors(p.pid) < baseline + 100, "the server holds too many connections")
            // Health checks get through the flood (they evict the longest-idle connection).
            for _ in 0..<5 {
                let h = try L.http(url + "/healthz")
                #expect(h.status == 200, "\(h)")
            }
            // Replication goes on while the flood is held.
            try H.runWriter(db, rate: 1000, count: 300)
            #expect(p.waitForOutput("wal segment written", timeout: 30), "\(H.tail(p.output))")

            // Idle connections are closed by the server after the timeout; descriptors return to the baseline.
            #expect(idle.allSatisfy { RawTCP.closedByPeer($0, timeout: 20) }, "idle connections were not closed")
            #expect(poll(timeout: 20) { RawTCP.openDescriptors(p.pid) <= baseline + 2 },
                    "descriptors: \(RawTCP.openDescriptors(p.pid)) against a baseline of \(baseline)")

            // A request whose headers never finish is closed after the header timeout, although bytes keep coming.
            let slow = RawTCP.connect(port: port)
            defer { close(slow) }
            #expect(RawTCP.send(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n"))
            var closed = false
            for k in 0..<30 where !closed {
                _ = RawTCP.send(slow, "X-Slow-\(k): 1\r\n")
                closed = RawTCP.closedByPeer(slow, timeout: 0.2)
            }
            #expect(closed, "a never-finished request head kept its connection")

            // Pipelined requests are answered in order; HTTP/1.0 is answered and closed.
            let pipe = RawTCP.connect(port: port)
            defer { close(pipe) }
            #expect(RawTCP.send(pipe, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
            let answers = RawTCP.readAll(pipe, timeout: 10)
            #expect(answers.components(separatedBy: "HTTP/1.1 200").count == 2 && answers.contains("HTTP/1.1 404"), "\(answers)")
            let old = RawTCP.connect(port: port)
            defer { close(old) }
            #expect(RawTCP.send(old, "GET /healthz HTTP/1.0\r\n\r\n"))
            #expect(RawTCP.readAll(old, timeout: 10).hasPrefix("HTTP/1.0 200"))

            // A 100 KB URL is refused without harm; /stream for a database not replicated here is a 404.
            let long = RawTCP.connect(port: port)
            defer { close(long) }
            _ = RawTCP.send(long, "GET /metrics?" + String(repeating: "a", count: 100_000) + " HTTP/1.1\r\nHost: a\r\n\r\n")
            let longAnswer = RawTCP.readAll(long, timeout: 10)
            #expect(longAnswer.isEmpty || longAnswer.hasPrefix("HTTP/1.1 4"), "\(longAnswer.prefix(200))")
            #expect(try L.http(url + "/stream?path=/etc/passwd").status == 404)
            #expect(try L.http(url + "/healthz").status == 200)

            #expect(H.stop(p) == 0, "\(H.tail(p.output))")
            #expect(!p.output.contains("too many open files"), "\(H.tail(p.output))")
            let out = sb.path("restored.db")
            try H.restore(["-o", out, "file://" + replica])
            #expect(H.difference(expected: try H.eventRows(db), actual: try H.eventRows(out)) == nil)
        }
    }
}
