import Cryptography
import Foundation

/// Digests and random values for the sandbox's credentials. Only digests are stored, so the
/// database never holds a usable code, token, secret or API key.
enum Secrets {
    static func digest(_ text: String) -> [UInt8] { SHA256.hash(Array(text.utf8)) }

    static func newToken() -> String { SecureRandom.token(byteCount: 32) }

    static func passwordDigest(_ password: String, salt: [UInt8]) -> [UInt8] {
        HMACSHA256.authenticate(Array(password.utf8), key: salt)
    }

    /// RFC 7636 §4.2: base64url(SHA-256(ASCII(code_verifier))).
    static func s256Challenge(verifier: String) -> String {
        Base64URL.encode(SHA256.hash(Array(verifier.utf8)))
    }

    /// RFC 7636 §4.1: 43–128 characters of [A-Z a-z 0-9 - . _ ~].
    static func isValidVerifier(_ verifier: String) -> Bool {
        (43...128).contains(verifier.utf8.count)
            && verifier.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                    UInt8(ascii: "_"), UInt8(ascii: "~"):
                    true
                default: false
                }
            }
    }

    /// `Authorization: Basic base64(client_id:client_secret)` with both parts form-decoded, as
    /// RFC 6749 §2.3.1 specifies.
    static func basicCredentials(_ header: String?) -> (id: String, secret: String)? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
            let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":")
        else { return nil }
        let id = String(text[..<colon]).removingPercentEncoding ?? ""
        let secret = String(text[text.index(after: colon)...]).removingPercentEncoding ?? ""
        guard !id.isEmpty, !secret.isEmpty else { return nil }
        return (id, secret)
    }
}
