import CCrypto
import Foundation

/// Owns one `EVP_CIPHER_CTX`, freeing it exactly once when the last reference goes away, so every
/// early return or throw in an operation releases the context.
final class CipherContext {
    let pointer: OpaquePointer

    init() throws(CryptoError) {
        guard let pointer = EVP_CIPHER_CTX_new() else { throw CryptoError.fromOpenSSL("EVP_CIPHER_CTX_new") }
        self.pointer = pointer
    }

    deinit { EVP_CIPHER_CTX_free(pointer) }
}

/// AES-256-GCM authenticated encryption. Sealed format: nonce (12) || ciphertext || tag (16).
public struct AES256GCM: Sendable, CustomStringConvertible {
    public static let keyByteCount = 32
    public static let nonceByteCount = 12
    public static let tagByteCount = 16

    private let key: [UInt8]

    public init(key: [UInt8]) throws(CryptoError) {
        guard key.count == Self.keyByteCount else { throw .invalidKey }
        self.key = key
    }

    /// Never print the key, even in logs of the enclosing value.
    public var description: String { "AES256GCM(key: <redacted>)" }

    /// Encrypts with a fresh random nonce. Random 96-bit nonces are safe for up to ~2^32 messages
    /// per key, far beyond this service's volume.
    public func seal(_ plaintext: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        try seal(plaintext, nonce: SecureRandom.bytes(Self.nonceByteCount), associatedData: associatedData)
    }

    /// Explicit-nonce variant for known-answer tests only: reusing a nonce with the same key
    /// destroys GCM's confidentiality and authenticity, so this stays internal.
    func seal(_ plaintext: [UInt8], nonce: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        guard nonce.count == Self.nonceByteCount else { throw .invalidNonce }
        guard plaintext.count <= Int32.max, associatedData.count <= Int32.max else { throw .malformed }
        let context = try CipherContext()
        let ctx = context.pointer

        guard EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1 else {
            throw CryptoError.fromOpenSSL("EVP_EncryptInit_ex")
        }
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, Int32(nonce.count), nil) == 1 else {
            throw CryptoError.fromOpenSSL("EVP_CTRL_GCM_SET_IVLEN")
        }
        guard EVP_EncryptInit_ex(ctx, nil, nil, key, nonce) == 1 else {
            throw CryptoError.fromOpenSSL("EVP_EncryptInit_ex(key)")
        }
        var length: Int32 = 0
        if !associatedData.isEmpty {
            guard EVP_EncryptUpdate(ctx, nil, &length, associatedData, Int32(associatedData.count)) == 1 else {
                throw CryptoError.fromOpenSSL("EVP_EncryptUpdate(aad)")
            }
        }
        // GCM is a stream mode: ciphertext length equals plaintext length. The extra block of
        // capacity only guards against a provider that buffers differently.
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + 16)
        var written = 0
        if !plaintext.isEmpty {
            guard EVP_EncryptUpdate(ctx, &ciphertext, &length, plaintext, Int32(plaintext.count)) == 1 else {
                throw CryptoError.fromOpenSSL("EVP_EncryptUpdate")
            }
            written = Int(length)
        }
        let finalOK = ciphertext.withUnsafeMutableBufferPointer { buffer in
            EVP_EncryptFinal_ex(ctx, buffer.baseAddress! + written, &length) == 1
        }
        guard finalOK else { throw CryptoError.fromOpenSSL("EVP_EncryptFinal_ex") }
        written += Int(length)
        guard written == plaintext.count else { throw .openssl("unexpected GCM output length") }

        var tag = [UInt8](repeating: 0, count: Self.tagByteCount)
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(Self.tagByteCount), &tag) == 1 else {
            throw CryptoError.fromOpenSSL("EVP_CTRL_GCM_GET_TAG")
        }
        return nonce + ciphertext.prefix(written) + tag
    }

    /// Decrypts and verifies. Any mismatch in key, nonce, ciphertext, tag or associated data yields
    /// `.authenticationFailed`; no plaintext is returned unless the tag verifies.
    public func open(_ sealed: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        guard sealed.count >= Self.nonceByteCount + Self.tagByteCount else { throw .malformed }
        guard sealed.count <= Int32.max, associatedData.count <= Int32.max else { throw .malformed }
        let nonce = Array(sealed.prefix(Self.nonceByteCount))
        var tag = Array(sealed.suffix(Self.tagByteCount))
        let ciphertext = Array(sealed[Self.nonceByteCount..<(sealed.count - Self.tagByteCount)])

        let context = try CipherContext()
        let ctx = context.pointer
        guard EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1 else {
            throw CryptoError.fromOpenSSL("EVP_DecryptInit_ex")
        }
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, Int32(nonce.count), nil) == 1 else {
            throw CryptoError.fromOpenSSL("EVP_CTRL_GCM_SET_IVLEN")
        }
        guard EVP_DecryptInit_ex(ctx, nil, nil, key, nonce) == 1 else {
            throw CryptoError.fromOpenSSL("EVP_DecryptInit_ex(key)")
        }
        var length: Int32 = 0
        if !associatedData.isEmpty {
            guard EVP_DecryptUpdate(ctx, nil, &length, associatedData, Int32(associatedData.count)) == 1 else {
                throw CryptoError.fromOpenSSL("EVP_DecryptUpdate(aad)")
            }
        }
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 16)
        var written = 0
        if !ciphertext.isEmpty {
            guard EVP_DecryptUpdate(ctx, &plaintext, &length, ciphertext, Int32(ciphertext.count)) == 1 else {
                throw CryptoError.fromOpenSSL("EVP_DecryptUpdate")
            }
            written = Int(length)
        }
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tag.count), &tag) == 1 else {
            throw CryptoError.fromOpenSSL("EVP_CTRL_GCM_SET_TAG")
        }
        let verified = plaintext.withUnsafeMutableBufferPointer { buffer in
            EVP_DecryptFinal_ex(ctx, buffer.baseAddress! + written, &length) > 0
        }
        guard verified else {
            // Tag mismatch leaves nothing useful in the error queue; drop it so it is not
            // misreported by a later call on this thread. Wipe the unauthenticated plaintext.
            ERR_clear_error()
            for index in plaintext.indices { plaintext[index] = 0 }
            throw .authenticationFailed
        }
        written += Int(length)
        return Array(plaintext.prefix(written))
    }
}
