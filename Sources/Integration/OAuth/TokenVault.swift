import Cryptography
import Foundation

/// Seals Smokeball tokens for the `bytea` columns of `firm_integrations` with AES-256-GCM under a
/// `KeyRing`: each value carries its format version and key id, so `TOKEN_ENCRYPTION_KEY` can be
/// rotated while old values stay readable through `TOKEN_ENCRYPTION_KEYS`.
/// The firm, platform and column are the associated data: a sealed value copied into another
/// firm's row, or from `refresh_token` into `access_token`, fails to open instead of working.
///
/// Values sealed before the format carried a version (nonce || ciphertext || tag) are refused,
/// not read: no deployment holds any, and their first byte is a random nonce byte, so they
/// cannot be told apart from damaged values reliably.
public struct TokenVault: Sendable, CustomStringConvertible {
    public enum Column: String, Sendable {
        case accessToken = "access_token"
        case refreshToken = "refresh_token"
        /// An OAuth state's PKCE verifier (`oauth_states.code_verifier`).
        case codeVerifier = "code_verifier"
        /// The key Smokeball signs the firm's webhook deliveries with (`firm_integrations.webhook_secret`).
        case webhookSecret = "webhook_secret"
        /// The key before the last reconnect, accepted for a short grace period
        /// (`firm_integrations.previous_webhook_secret`).
        case previousWebhookSecret = "previous_webhook_secret"
    }

    let keys: KeyRing

    public init(keys: KeyRing) {
        self.keys = keys
    }

    /// One key (tests, tools). Routes use `init(configuration:)`, which knows the configured key
    /// id and the old keys.
    public init(key: [UInt8], keyID: UInt8 = 1, oldKeys: [UInt8: [UInt8]] = [:]) throws(CryptoError) {
        keys = try KeyRing(currentKey: key, id: keyID, oldKeys: oldKeys)
    }

    /// The vault of a route that touches tokens: `TOKEN_ENCRYPTION_KEY` must be set.
    public init(configuration: Configuration) throws(ConfigurationError) {
        guard let key = configuration.tokenEncryptionKey else {
            throw ConfigurationError(variable: "TOKEN_ENCRYPTION_KEY", problem: "is not set")
        }
        do {
            keys = try KeyRing(
                currentKey: key, id: configuration.tokenEncryptionKeyID, oldKeys: configuration.oldTokenEncryptionKeys)
        } catch {
            // `fromEnvironment` refuses such settings with a precise message; only a
            // Configuration built by hand gets here.
            throw ConfigurationError(
                variable: "TOKEN_ENCRYPTION_KEYS", problem: "does not fit TOKEN_ENCRYPTION_KEY and its id")
        }
    }

    /// The vault from the token key settings alone (see `Configuration.tokenKeys`).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> TokenVault
    {
        let keys = try Configuration.tokenKeys(environment)
        do {
            return try TokenVault(key: keys.key, keyID: keys.id, oldKeys: keys.oldKeys)
        } catch {
            throw ConfigurationError(
                variable: "TOKEN_ENCRYPTION_KEYS", problem: "does not fit TOKEN_ENCRYPTION_KEY and its id")
        }
    }

    public var description: String { "TokenVault(<redacted>)" }

    public func seal(_ token: String, firmID: UUID, platform: String, column: Column) throws(CryptoError) -> [UInt8] {
        try keys.seal(Array(token.utf8), associatedData: Self.associatedData(firmID, platform, column))
    }

    public func open(_ sealed: [UInt8], firmID: UUID, platform: String, column: Column) throws(CryptoError) -> String {
        let plain = try keys.open(sealed, associatedData: Self.associatedData(firmID, platform, column))
        return String(decoding: plain, as: UTF8.self)
    }

    /// True when `sealed` is under an old key (or unreadable): a rotation opens such a value and
    /// seals it again.
    public func needsResealing(_ sealed: [UInt8]) -> Bool {
        (try? KeyRing.keyID(of: sealed)) != keys.currentKeyID
    }

    static func associatedData(_ firmID: UUID, _ platform: String, _ column: Column) -> [UInt8] {
        Array("casehug/v1|\(firmID.uuidString.lowercased())|\(platform)|\(column.rawValue)".utf8)
    }
}
