import CCrypto
import Foundation

/// Errors from the cryptography module. Descriptions carry only a code (and, for OpenSSL
/// failures, the failing call and OpenSSL's reason string), never key or data bytes.
public struct CryptoError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Kind: Sendable, Equatable {
        case invalidKey
        case invalidNonce
        case malformed
        case authenticationFailed
        case invalidKeyID
        case truncated
        case unsupportedVersion(UInt8)
        case unknownKeyID(UInt8)
        case openssl(String)
    }

    private let kind: Kind

    private init(_ kind: Kind) { self.kind = kind }

    /// Key is not exactly the size the algorithm requires.
    public static let invalidKey = CryptoError(.invalidKey)
    /// Nonce is not the size the algorithm requires.
    public static let invalidNonce = CryptoError(.invalidNonce)
    /// Input is too short or otherwise structurally invalid.
    public static let malformed = CryptoError(.malformed)
    /// The AEAD tag did not verify: wrong key, wrong associated data, or tampering.
    public static let authenticationFailed = CryptoError(.authenticationFailed)

    /// A key id outside 1...255, or one id given two different keys (`KeyRing`).
    public static let invalidKeyID = CryptoError(.invalidKeyID)
    /// A sealed value shorter than its format's header, nonce and tag (`KeyRing`).
    public static let truncated = CryptoError(.truncated)
    /// A sealed value whose version byte is not one this build reads (`KeyRing`). The byte is
    /// shown: it is format, not secret.
    public static func unsupportedVersion(_ version: UInt8) -> CryptoError { CryptoError(.unsupportedVersion(version)) }
    /// A sealed value naming a key id that is not in the ring (`KeyRing`): the key it was sealed
    /// with is not configured. The id is shown, never a key.
    public static func unknownKeyID(_ id: UInt8) -> CryptoError { CryptoError(.unknownKeyID(id)) }

    /// An OpenSSL call failed; `code` names the call and OpenSSL's reason.
    public static func openssl(_ code: String) -> CryptoError { CryptoError(.openssl(code)) }

    public var description: String {
        switch kind {
        case .invalidKey: "CryptoError.invalidKey"
        case .invalidNonce: "CryptoError.invalidNonce"
        case .malformed: "CryptoError.malformed"
        case .authenticationFailed: "CryptoError.authenticationFailed"
        case .invalidKeyID: "CryptoError.invalidKeyID"
        case .truncated: "CryptoError.truncated"
        case .unsupportedVersion(let version): "CryptoError.unsupportedVersion(\(version))"
        case .unknownKeyID(let id): "CryptoError.unknownKeyID(\(id))"
        case .openssl(let code): "CryptoError.openssl(\(code))"
        }
    }

    /// Builds an `.openssl` error from the thread's OpenSSL error queue and clears the queue so
    /// stale entries cannot be misattributed to a later call on this thread.
    static func fromOpenSSL(_ function: String) -> CryptoError {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return .openssl(function) }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        let reason = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return .openssl("\(function): \(reason)")
    }
}
