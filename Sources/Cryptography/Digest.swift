import CCrypto
import Foundation

/// SHA-256 (FIPS 180-4) via OpenSSL's EVP interface.
public enum SHA256 {
    public static let digestByteCount = 32

    public static func hash(_ data: some Collection<UInt8>) -> [UInt8] {
        let input = Array(data)
        var output = [UInt8](repeating: 0, count: digestByteCount)
        var length: UInt32 = 0
        // EVP_Digest only fails on allocation failure or a broken provider; neither is recoverable here.
        guard EVP_Digest(input, input.count, &output, &length, EVP_sha256(), nil) == 1,
            length == UInt32(digestByteCount)
        else {
            fatalError("EVP_Digest(SHA-256) failed")
        }
        return output
    }
}

/// HMAC-SHA-256 (RFC 2104) via OpenSSL's one-shot `HMAC()`.
public enum HMACSHA256 {
    public static let macByteCount = 32

    public static func authenticate(_ message: some Collection<UInt8>, key: some Collection<UInt8>) -> [UInt8] {
        let messageBytes = Array(message)
        // Swift does not promise a non-NULL pointer for an empty array, and OpenSSL gives a NULL key
        // special meaning; a one-byte buffer with length 0 keeps an empty key unambiguous.
        let keyBytes = Array(key)
        let keyBuffer = keyBytes.isEmpty ? [0] : keyBytes
        guard keyBytes.count <= Int32.max else { fatalError("HMAC key too large") }
        var output = [UInt8](repeating: 0, count: macByteCount)
        var length: UInt32 = 0
        let result = HMAC(
            EVP_sha256(), keyBuffer, Int32(keyBytes.count), messageBytes, messageBytes.count, &output, &length)
        // As with EVP_Digest, failure means OpenSSL itself is unusable.
        guard result != nil, length == UInt32(macByteCount) else { fatalError("HMAC(SHA-256) failed") }
        return output
    }
}
