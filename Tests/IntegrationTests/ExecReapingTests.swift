import Foundation
import Testing

extension ExecTests {
    /// Orphans of the app are re-parented to the launcher (PID 1, or subreaper otherwise) and reaped.
    @Suite struct ExecReapingTests {
        /// Leaves 20 orphaned `sleep` processes, records how many the launcher ($PPID) adopted, waits (bounded)
        /// until none of them is left, running or zombie, and records the number of zombies still there.
        static let orphanScript = """
            out="$1"
            launcher=$PPID
            for i in $(seq 20); do (sleep 1 &); done
            ps -e -o ppid=,comm= | awk -v l=$launcher '$1 == l && $2 == "sleep"' | wc -l > "$out.adopted"
            i=0
            while [ $i -lt 100 ]; do
                n=$(ps -e -o ppid=,comm= | awk -v l=$launcher '$1 == l && $2 == "sleep"' | wc -l)
                [ "$n" -eq 0 ] && break
                sleep 0.1
                i=$((i + 1))
            done
            ps -e -o ppid=,stat= | awk -v l=$launcher '$1 == l && $2 ~ /^Z/' | wc -l > "$out.zombies"
            echo "$launcher" > "$out.launcher"
            """

        @Test("as PID 1: 20 orphaned grandchildren end with 0 zombies")
        func reapsAsPID1() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let app = try sb.writeScript("orphans.sh", Self.orphanScript)
            let p = try sb.start("/usr/bin/unshare", ["--pid", "--fork", "--mount-proc",
                                                      TestSupport.launcher, "-config", config, "-exec", "\(app) \(sb.path("out"))"])
            #expect(p.wait(timeout: 30) == 0, "\(p.output)")
            #expect(sb.read("out.launcher") == "1", "the launcher was not PID 1")
            #expect(sb.read("out.adopted") == "20", "orphans adopted by the launcher")
            #expect(sb.read("out.zombies") == "0", "zombies left")
        }

        @Test("not PID 1: the subreaper adopts and reaps 20 orphans")
        func reapsAsSubreaper() throws {
            let sb = try TestSandbox.exec()
            defer { sb.cleanup() }
            let config = try sb.writeConfig()
            let app = try sb.writeScript("orphans.sh", Self.orphanScript)
            let p = try sb.launch(["-config", config, "-exec", "\(app) \(sb.path("out"))"])
            #expect(p.wait(timeout: 30) == 0, "\(p.output)")
            #expect(sb.read("out.launcher") == String(p.pid), "the app's parent is the launcher")
            #expect(sb.read("out.adopted") == "20", "orphans adopted by the launcher")
            #expect(sb.read("out.zombies") == "0", "zombies left")
        }
    }
}
