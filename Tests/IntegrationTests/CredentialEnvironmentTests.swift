import Foundation
import Testing

/// INTERFACES §2.7: LITESTREAM_* credentials are copied to the AWS_* names (when unset) before any command,
/// so an -exec child sees them too.
@Suite struct CredentialEnvironmentTests {
    func childSees(_ env: [String: String]) throws -> String {
        let sb = try TestSandbox()
        defer { sb.cleanup() }
        let dir = sb.dir
        var environment = ProcessInfo.processInfo.environment
        for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY"] {
            environment[k] = nil
        }
        environment.merge(env) { _, new in new }
        let r = try runCommand(TestSupport.launcher, [
            "replicate", "-exec", "sh -c 'echo KEYS=$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY'",
            dir + "/db", "file://" + dir + "/replica",
        ], timeout: 60, environment: environment)
        #expect(r.status == 0, "\(r.output)")
        return r.output.split(separator: "\n").first { $0.hasPrefix("KEYS=") }.map(String.init) ?? r.output
    }

    @Test func litestreamNamesAreCopiedToAWSNames() throws {
        #expect(try childSees(["LITESTREAM_ACCESS_KEY_ID": "id1", "LITESTREAM_SECRET_ACCESS_KEY": "s1"]) == "KEYS=id1/s1")
    }

    @Test func explicitAWSNamesWin() throws {
        #expect(try childSees(["LITESTREAM_ACCESS_KEY_ID": "id1", "AWS_ACCESS_KEY_ID": "id2",
                               "LITESTREAM_SECRET_ACCESS_KEY": "s1"]) == "KEYS=id2/s1")
    }
}
