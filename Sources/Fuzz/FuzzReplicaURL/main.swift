// Fuzzes replica URL parsing: `GoURL.parse`, `ReplicaURL.redacted`, `S3Host.parse` and `ReplicaConfig.fromURL`.
//
// Input: the URL text (invalid UTF-8 is replaced with U+FFFD first).
import FuzzSupport
import Foundation
import ReplicationKit

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)

    // GoURL: deterministic; a URL that parses parses again the same way after its password is redacted, with
    // only the password changed (so what the logs show is the same URL, minus the secret).
    let parsed = try? GoURL.parse(text)
    if let u = parsed {
        let again = try? GoURL.parse(text)
        fuzzCheck(again?.scheme == u.scheme && again?.host == u.host && again?.path == u.path
                  && again?.user == u.user && again?.password == u.password, "GoURL.parse is not deterministic")
        fuzzCheck(u.scheme == u.scheme.lowercased(), "scheme not lowercased")
        let redacted = ReplicaURL.redacted(text)
        if u.password != nil {
            do {
                let r = try GoURL.parse(redacted)
                fuzzCheck(r.scheme == u.scheme && r.host == u.host && r.path == u.path && r.user == u.user
                          && r.rawQuery == u.rawQuery && r.opaque == u.opaque,
                          "redaction changed more than the password: \(text) -> \(redacted)")
                fuzzCheck(r.password == "xxxxx", "password not redacted: \(redacted)")
            } catch {
                fuzzCheck(false, "redacted URL no longer parses: \(redacted): \(error)")
            }
        }
        // Hosts of any shape: the S3 provider table never crashes and keeps the bucket a prefix of the host.
        let h = S3Host.parse(u.host)
        let hostOnly = S3Host.splitHostPort(u.host).0
        fuzzCheck(hostOnly.hasPrefix(h.bucket), "bucket \(h.bucket) is not a prefix of \(hostOnly)")
        if let e = h.endpoint {
            fuzzCheck(e.hasPrefix("https://") || e.hasPrefix("http://"), "endpoint without scheme: \(e)")
        }
    }
    _ = S3Host.parse(text)

    // ReplicaConfig.fromURL: only ReplicationError, never the password in the message; a URL it accepts is
    // accepted again with the same type (the CLI and the config file both resolve it).
    let password = parsed?.password ?? ""
    do {
        let config = try ReplicaConfig.fromURL(text)
        fuzzCheck(parsed != nil, "fromURL accepted what GoURL rejects")
        fuzzCheck(["file", "s3", "gs", "abs", "sftp"].contains(config.type), "unknown type \(config.type)")
        let again = try? ReplicaConfig.fromURL(text)
        fuzzCheck(again?.type == config.type, "re-parse differs")
    } catch {
        fuzzCheck(error is ReplicationError, "fromURL threw \(type(of: error))")
        // Only a password that occurs once in the text: any copy of it in the message is the secret, unless the
        // message for the same URL with the password redacted has it too (then it is the message's own wording,
        // e.g. the password "account" and "account-name required").
        if password.count >= 4 && text.components(separatedBy: password).count == 2 {
            var baseline = ""
            do { _ = try ReplicaConfig.fromURL(ReplicaURL.redacted(text)) } catch { baseline = "\(error)" }
            if !baseline.contains(password) {
                fuzzCheck(!"\(error)".contains(password), "error message shows the password: \(error)")
            }
        }
    }
    return 0
}

runFuzzer("FuzzReplicaURL", fuzzOne)
