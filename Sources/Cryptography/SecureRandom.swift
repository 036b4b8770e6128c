import CCrypto
import Foundation

/// Cryptographically secure random bytes from OpenSSL's CSPRNG.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0 && count <= Int32.max, "invalid random byte count")
        guard count > 0 else { return [] }
        var output = [UInt8](repeating: 0, count: count)
        // There is no safe fallback when the CSPRNG fails: returning predictable bytes would
        // silently produce guessable keys, nonces and tokens, so crash instead.
        guard RAND_bytes(&output, Int32(count)) == 1 else {
            fatalError("RAND_bytes failed; refusing to continue without secure randomness")
        }
        return output
    }

    /// A random token encoded as unpadded base64url (safe in URLs, headers and cookies).
    public static func token(byteCount: Int = 32) -> String {
        Base64URL.encode(bytes(byteCount))
    }
}

/// Comparison whose running time does not depend on where inputs differ, for MACs and tokens.
public enum ConstantTime {
    public static func equals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
        let left = Array(a)
        let right = Array(b)
        // Lengths of MACs/tokens are public, so an early exit here leaks nothing secret.
        guard left.count == right.count else { return false }
        guard !left.isEmpty else { return true }
        return CRYPTO_memcmp(left, right, left.count) == 0
    }
}
