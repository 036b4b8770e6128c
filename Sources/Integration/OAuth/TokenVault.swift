import Cryptography
import Foundation

/// Seals Smokeball tokens for the `bytea` columns of `firm_integrations` with AES-256-GCM.
/// The firm, platform and column are the associated data: a sealed value copied into another
/// firm's row, or from `refresh_token` into `access_token`, fails to open instead of working.
public struct TokenVault: Sendable, CustomStringConvertible {
    public enum Column: String, Sendable {
        case accessToken = "access_token"
        case refreshToken = "refresh_token"
    }

    private let cipher: AES256GCM

    public init(key: [UInt8]) throws(CryptoError) {
        cipher = try AES256GCM(key: key)
    }

    public var description: String { "TokenVault(<redacted>)" }

    public func seal(_ token: String, firmID: UUID, platform: String, column: Column) throws(CryptoError) -> [UInt8] {
        try cipher.seal(Array(token.utf8), associatedData: Self.associatedData(firmID, platform, column))
    }

    public func open(_ sealed: [UInt8], firmID: UUID, platform: String, column: Column) throws(CryptoError) -> String {
        let plain = try cipher.open(sealed, associatedData: Self.associatedData(firmID, platform, column))
        return String(decoding: plain, as: UTF8.self)
    }

    static func associatedData(_ firmID: UUID, _ platform: String, _ column: Column) -> [UInt8] {
        Array("casehug/v1|\(firmID.uuidString.lowercased())|\(platform)|\(column.rawValue)".utf8)
    }
}
