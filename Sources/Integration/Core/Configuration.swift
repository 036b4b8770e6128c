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
    /// Session limits of the route's connections: `.routes`, with `DATABASE_STATEMENT_TIMEOUT_MS`,
    /// `DATABASE_LOCK_TIMEOUT_MS` and `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS` when set.
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
            guard let decoded = Data(base64Encoded: encoded), decoded.count == AES256GCM.keyByteCount else {
                throw ConfigurationError(
                    variable: "TOKEN_ENCRYPTION_KEY", problem: "must be base64 of exactly 32 bytes")
            }
            key = [UInt8](decoded)
        } else if requireEncryptionKey {
            throw ConfigurationError(variable: "TOKEN_ENCRYPTION_KEY", problem: "is not set")
        }
        var options = ConnectionOptions.routes
        options.statementTimeoutMilliseconds =
            try milliseconds("DATABASE_STATEMENT_TIMEOUT_MS", environment) ?? options.statementTimeoutMilliseconds
        options.lockTimeoutMilliseconds =
            try milliseconds("DATABASE_LOCK_TIMEOUT_MS", environment) ?? options.lockTimeoutMilliseconds
        options.idleInTransactionTimeoutMilliseconds =
            try milliseconds("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", environment)
            ?? options.idleInTransactionTimeoutMilliseconds
        var configuration = Configuration(
            databaseURL: databaseURL, jwtSecret: Array(secret.utf8), tokenEncryptionKey: key, databaseOptions: options)
        if let audience = environment["CASEHUG_JWT_AUDIENCE"], !audience.isEmpty {
            configuration.jwtAudience = audience
        }
        if let issuer = environment["CASEHUG_JWT_ISSUER"], !issuer.isEmpty { configuration.jwtIssuer = issuer }
        return configuration
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
