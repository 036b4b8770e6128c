import Cryptography
import Foundation
import PostgreSQL

/// What a route process needs from its environment. Read once at start so a missing or
/// malformed setting stops the process with a clear message instead of failing per request.
public struct Configuration: Sendable {
    /// libpq URI of the restricted `casehug_app` role.
    public let databaseURL: String
    /// HS256 key CaseHug's auth signs user tokens with.
    public let jwtSecret: [UInt8]
    /// AES-256-GCM key for tokens at rest; only routes that touch tokens require it.
    public let tokenEncryptionKey: [UInt8]?
    /// `TOKEN_ENCRYPTION_KEY_ID` (1...255, default 1): the id every newly sealed value carries.
    public var tokenEncryptionKeyID: UInt8 = 1
    /// `TOKEN_ENCRYPTION_KEYS` (`id:base64,id:base64`): earlier keys by id, for opening values
    /// sealed before a rotation. Never used to seal.
    public var oldTokenEncryptionKeys: [UInt8: [UInt8]] = [:]
    /// Session limits of the route's connections: `.routes`, with `DATABASE_STATEMENT_TIMEOUT_MS`,
    /// `DATABASE_LOCK_TIMEOUT_MS` and `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS` when set, and
    /// `DATABASE_POOL_MODE=transaction` behind a transaction-mode pooler.
    public let databaseOptions: ConnectionOptions
    /// `CASEHUG_JWT_AUDIENCE`: the `aud` user tokens must carry (Supabase issues "authenticated").
    public var jwtAudience = "authenticated"
    /// `CASEHUG_JWT_ISSUER`: when set, the exact `iss` user tokens must carry.
    public var jwtIssuer: String?

    public init(
        databaseURL: String, jwtSecret: [UInt8], tokenEncryptionKey: [UInt8]? = nil,
        databaseOptions: ConnectionOptions = .routes
    ) {
        self.databaseURL = databaseURL
        self.jwtSecret = jwtSecret
        self.tokenEncryptionKey = tokenEncryptionKey
        self.databaseOptions = databaseOptions
    }

    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, requireEncryptionKey: Bool = false
    ) throws(ConfigurationError) -> Configuration {
        guard let databaseURL = environment["DATABASE_URL"], !databaseURL.isEmpty else {
            throw ConfigurationError(variable: "DATABASE_URL", problem: "is not set")
        }
        guard let secret = environment["CASEHUG_JWT_SECRET"], !secret.isEmpty else {
            throw ConfigurationError(variable: "CASEHUG_JWT_SECRET", problem: "is not set")
        }
        // HS256 with a short secret is guessable offline from any token.
        guard secret.utf8.count >= 32 else {
            throw ConfigurationError(variable: "CASEHUG_JWT_SECRET", problem: "must be at least 32 bytes")
        }
        var key: [UInt8]?
        if let encoded = environment["TOKEN_ENCRYPTION_KEY"], !encoded.isEmpty {
            guard let decoded = aes256Key(encoded) else {
                throw ConfigurationError(
                    variable: "TOKEN_ENCRYPTION_KEY", problem: "must be base64 of exactly 32 bytes")
            }
            key = decoded
        } else if requireEncryptionKey {
            throw ConfigurationError(variable: "TOKEN_ENCRYPTION_KEY", problem: "is not set")
        }
        let (keyID, oldKeys) = try tokenKeyRing(environment, currentKey: key)
        var options = ConnectionOptions.routes
        options.statementTimeoutMilliseconds =
            try milliseconds("DATABASE_STATEMENT_TIMEOUT_MS", environment) ?? options.statementTimeoutMilliseconds
        options.lockTimeoutMilliseconds =
            try milliseconds("DATABASE_LOCK_TIMEOUT_MS", environment) ?? options.lockTimeoutMilliseconds
        options.idleInTransactionTimeoutMilliseconds =
            try milliseconds("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", environment)
            ?? options.idleInTransactionTimeoutMilliseconds
        options.transactionPooling = try transactionPooling(environment)
        var configuration = Configuration(
            databaseURL: databaseURL, jwtSecret: Array(secret.utf8), tokenEncryptionKey: key, databaseOptions: options)
        configuration.tokenEncryptionKeyID = keyID
        configuration.oldTokenEncryptionKeys = oldKeys
        if let audience = environment["CASEHUG_JWT_AUDIENCE"], !audience.isEmpty {
            configuration.jwtAudience = audience
        }
        if let issuer = environment["CASEHUG_JWT_ISSUER"], !issuer.isEmpty { configuration.jwtIssuer = issuer }
        return configuration
    }

    /// The token keys alone, for a process that seals but authenticates no one (the worker has
    /// no `CASEHUG_JWT_SECRET`): `TOKEN_ENCRYPTION_KEY` (required), `_ID` and `TOKEN_ENCRYPTION_KEYS`.
    public static func tokenKeys(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> (key: [UInt8], id: UInt8, oldKeys: [UInt8: [UInt8]])
    {
        guard let encoded = environment["TOKEN_ENCRYPTION_KEY"], !encoded.isEmpty else {
            throw ConfigurationError(variable: "TOKEN_ENCRYPTION_KEY", problem: "is not set")
        }
        guard let key = aes256Key(encoded) else {
            throw ConfigurationError(variable: "TOKEN_ENCRYPTION_KEY", problem: "must be base64 of exactly 32 bytes")
        }
        let (id, oldKeys) = try tokenKeyRing(environment, currentKey: key)
        return (key, id, oldKeys)
    }

    /// `TOKEN_ENCRYPTION_KEY_ID` and `TOKEN_ENCRYPTION_KEYS`. Messages name the variable, and an
    /// entry by its position or parsed id, never by its text: a malformed entry may hold key bytes.
    private static func tokenKeyRing(_ environment: [String: String], currentKey: [UInt8]?) throws(ConfigurationError)
        -> (UInt8, [UInt8: [UInt8]])
    {
        let idText = environment["TOKEN_ENCRYPTION_KEY_ID"] ?? ""
        let listText = environment["TOKEN_ENCRYPTION_KEYS"] ?? ""
        guard let currentKey else {
            // Old keys or an id without a current key would leave nothing to seal with.
            for variable in ["TOKEN_ENCRYPTION_KEY_ID", "TOKEN_ENCRYPTION_KEYS"]
            where !(environment[variable] ?? "").isEmpty {
                throw ConfigurationError(variable: variable, problem: "is set but TOKEN_ENCRYPTION_KEY is not")
            }
            return (1, [:])
        }
        var currentID: UInt8 = 1
        if !idText.isEmpty {
            guard let id = keyID(idText) else {
                throw ConfigurationError(
                    variable: "TOKEN_ENCRYPTION_KEY_ID", problem: "must be a whole number from 1 to 255")
            }
            currentID = id
        }
        var oldKeys: [UInt8: [UInt8]] = [:]
        guard !listText.isEmpty else { return (currentID, oldKeys) }
        let variable = "TOKEN_ENCRYPTION_KEYS"
        for (index, entry) in listText.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let position = "entry \(index + 1)"
            let parts = entry.trimmingCharacters(in: .whitespaces).split(
                separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw ConfigurationError(
                    variable: variable, problem: "\(position) is not ID:BASE64 (entries are comma-separated)")
            }
            guard let id = keyID(String(parts[0])) else {
                throw ConfigurationError(
                    variable: variable, problem: "\(position) has a key id that is not a whole number from 1 to 255")
            }
            guard let key = aes256Key(String(parts[1])) else {
                throw ConfigurationError(
                    variable: variable, problem: "\(position) (key id \(id)) is not base64 of exactly 32 bytes")
            }
            guard oldKeys[id] == nil else {
                throw ConfigurationError(variable: variable, problem: "lists key id \(id) twice")
            }
            guard id != currentID || key == currentKey else {
                throw ConfigurationError(
                    variable: variable, problem: "gives key id \(id), the TOKEN_ENCRYPTION_KEY_ID, a different key")
            }
            oldKeys[id] = key
        }
        return (currentID, oldKeys)
    }

    /// 1...255 in plain digits.
    private static func keyID(_ text: String) -> UInt8? {
        guard !text.isEmpty, text.utf8.count <= 3,
            text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let value = UInt8(text), value != 0
        else { return nil }
        return value
    }

    private static func aes256Key(_ base64: String) -> [UInt8]? {
        guard let decoded = Data(base64Encoded: base64), decoded.count == AES256GCM.keyByteCount else { return nil }
        return [UInt8](decoded)
    }

    /// `DATABASE_POOL_MODE`: `session` (default: PostgreSQL itself, or a pooler in session mode)
    /// or `transaction` (pgbouncer in transaction mode: see `ConnectionOptions.transactionPooling`).
    private static func transactionPooling(_ environment: [String: String]) throws(ConfigurationError) -> Bool {
        switch environment["DATABASE_POOL_MODE"] ?? "" {
        case "", "session": return false
        case "transaction": return true
        default: throw ConfigurationError(variable: "DATABASE_POOL_MODE", problem: "must be session or transaction")
        }
    }

    /// An optional whole number of milliseconds (0 turns PostgreSQL's limit off); nil when unset.
    private static func milliseconds(_ variable: String, _ environment: [String: String]) throws(ConfigurationError)
        -> Int?
    {
        guard let text = environment[variable], !text.isEmpty else { return nil }
        // Digits only: Int("+5") and the like would pass, and PostgreSQL reads a bare number as ms.
        guard text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let value = Int(text),
            value <= Int(Int32.max)
        else {
            throw ConfigurationError(
                variable: variable, problem: "must be a whole number of milliseconds from 0 to 2147483647")
        }
        return value
    }
}

/// Names the setting and the problem, never its value.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let variable: String
    public let problem: String
    public var description: String { "\(variable) \(problem)" }
}
