import Cryptography

/// Proof Key for Code Exchange (RFC 7636), S256 only: Smokeball's auth server accepts nothing else.
public enum PKCE {
    /// A fresh verifier: 32 random bytes as base64url, 43 characters (RFC 7636 §4.1's minimum
    /// length, with 256 bits of entropy).
    public static func verifier() -> String {
        SecureRandom.token(byteCount: 32)
    }

    /// `BASE64URL(SHA256(ASCII(verifier)))`.
    public static func challenge(for verifier: String) -> String {
        Base64URL.encode(SHA256.hash(Array(verifier.utf8)))
    }

    public static let method = "S256"
}
