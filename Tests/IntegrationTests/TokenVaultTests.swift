import Basics
import Cryptography
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// Smokeball tokens at rest: sealed with AES-256-GCM under a key id, bound to their firm,
/// platform and column; old keys listed in `TOKEN_ENCRYPTION_KEYS` still open.
@Suite struct TokenVaultTests {
    static let key = SecureRandom.bytes(32)

    @Test func sealedTokensRoundTripThroughTheDatabaseAndNeverAppearInClear() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let firm = try seed.firm()
            let vault = try TokenVault(key: Self.key)
            let access = "sb-access-" + SecureRandom.token()
            let sealed = try vault.seal(access, firmID: firm, platform: "smokeball", column: .accessToken)
            #expect(sealed.count == access.utf8.count + KeyRing.minimumSealedByteCount)
            try seed.asFirm(firm) { connection in
                try connection.execute(
                    "INSERT INTO firm_integrations (firm_id, platform, access_token) VALUES ($1, 'smokeball', $2)",
                    [firm, SQLValue.bytes(sealed)])
            }
            let stored = try seed.asFirm(firm) { connection in
                try connection.execute(
                    "SELECT access_token, encode(access_token, 'escape') AS raw FROM firm_integrations WHERE firm_id = $1",
                    [firm]
                ).single()
            }
            #expect(!(try stored.string("raw")).contains(access))
            #expect(
                try vault.open(
                    try stored.bytes("access_token"), firmID: firm, platform: "smokeball", column: .accessToken)
                    == access)
        }
    }

    @Test func aSealedTokenOpensOnlyForItsFirmPlatformAndColumnWithItsKey() throws {
        let vault = try TokenVault(key: Self.key)
        let firm = UUID()
        let sealed = try vault.seal("refresh-123", firmID: firm, platform: "smokeball", column: .refreshToken)
        #expect(try vault.open(sealed, firmID: firm, platform: "smokeball", column: .refreshToken) == "refresh-123")
        #expect(throws: CryptoError.authenticationFailed) {
            try vault.open(sealed, firmID: UUID(), platform: "smokeball", column: .refreshToken)
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try vault.open(sealed, firmID: firm, platform: "clio", column: .refreshToken)
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try vault.open(sealed, firmID: firm, platform: "smokeball", column: .accessToken)
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try TokenVault(key: SecureRandom.bytes(32)).open(
                sealed, firmID: firm, platform: "smokeball", column: .refreshToken)
        }
        var tampered = sealed
        tampered[tampered.count / 2] ^= 0x01
        #expect(throws: CryptoError.authenticationFailed) {
            try vault.open(tampered, firmID: firm, platform: "smokeball", column: .refreshToken)
        }
        // Fresh nonce per seal: the same token never seals to the same bytes.
        #expect(try vault.seal("refresh-123", firmID: firm, platform: "smokeball", column: .refreshToken) != sealed)
    }

    @Test func theVaultNeverPrintsItsKey() throws {
        let vault = try TokenVault(key: Self.key)
        #expect(!String(describing: vault).contains(Hex.encode(Self.key)))
        #expect(throws: CryptoError.self) { try TokenVault(key: SecureRandom.bytes(16)) }
    }

    /// Values sealed before the format had a version byte: there is no deployment holding any, so
    /// they are refused rather than read (their first byte is random, so some say "version" and
    /// a few "unknown key" or "authentication failed", but none opens).
    @Test func aValueInTheUnversionedFormatIsRefused() throws {
        let vault = try TokenVault(key: Self.key)
        let firm = UUID()
        let cipher = try AES256GCM(key: Self.key)
        for _ in 0..<64 {
            let legacy = try cipher.seal(
                Array("refresh-123".utf8),
                associatedData: TokenVault.associatedData(firm, "smokeball", .refreshToken))
            #expect(throws: CryptoError.self) {
                try vault.open(legacy, firmID: firm, platform: "smokeball", column: .refreshToken)
            }
        }
    }

    static let environment = [
        "DATABASE_URL": "postgresql:///casehug", "CASEHUG_JWT_SECRET": String(repeating: "s", count: 32),
    ]

    static func vault(_ settings: [String: String]) throws -> TokenVault {
        try TokenVault(configuration: Configuration.fromEnvironment(environment.merging(settings) { $1 }))
    }

    @Test func theConfiguredVaultSealsUnderTheCurrentIDAndOpensValuesUnderListedOldKeys() throws {
        let oldKey = SecureRandom.bytes(32)
        let older = SecureRandom.bytes(32)
        let firm = UUID()
        let beforeRotation = try Self.vault(["TOKEN_ENCRYPTION_KEY": Data(oldKey).base64EncodedString()])
        let sealedBefore = try beforeRotation.seal(
            "access-1", firmID: firm, platform: "smokeball", column: .accessToken)
        // Without TOKEN_ENCRYPTION_KEY_ID the key is id 1.
        #expect(try KeyRing.keyID(of: sealedBefore) == 1)

        let rotated = try Self.vault([
            "TOKEN_ENCRYPTION_KEY": Data(Self.key).base64EncodedString(), "TOKEN_ENCRYPTION_KEY_ID": "7",
            "TOKEN_ENCRYPTION_KEYS": " 1:\(Data(oldKey).base64EncodedString()), 3:\(Data(older).base64EncodedString())",
        ])
        #expect(try rotated.open(sealedBefore, firmID: firm, platform: "smokeball", column: .accessToken) == "access-1")
        #expect(rotated.needsResealing(sealedBefore))
        let resealed = try rotated.seal(
            try rotated.open(sealedBefore, firmID: firm, platform: "smokeball", column: .accessToken), firmID: firm,
            platform: "smokeball", column: .accessToken)
        #expect(try KeyRing.keyID(of: resealed) == 7)
        #expect(!rotated.needsResealing(resealed))
        #expect(try rotated.open(resealed, firmID: firm, platform: "smokeball", column: .accessToken) == "access-1")
        // The old key only reads: the pre-rotation vault cannot open what the rotated one seals.
        #expect(throws: CryptoError.unknownKeyID(7)) {
            try beforeRotation.open(resealed, firmID: firm, platform: "smokeball", column: .accessToken)
        }
        // Dropping the old key from the list makes its values an unknown id, not garbage.
        let withoutOld = try Self.vault([
            "TOKEN_ENCRYPTION_KEY": Data(Self.key).base64EncodedString(), "TOKEN_ENCRYPTION_KEY_ID": "7",
        ])
        #expect(throws: CryptoError.unknownKeyID(1)) {
            try withoutOld.open(sealedBefore, firmID: firm, platform: "smokeball", column: .accessToken)
        }
    }

    @Test func aVaultNeedsTheCurrentKey() throws {
        let error = #expect(throws: ConfigurationError.self) { try Self.vault([:]) }
        #expect(error?.description == "TOKEN_ENCRYPTION_KEY is not set")
    }

    struct BadKeySetting: Sendable, CustomStringConvertible {
        let settings: [String: String]
        let variable: String
        let problem: String
        var description: String { problem }
    }

    /// Secrets a bad setting must never echo.
    static let current = Data(SecureRandom.bytes(32)).base64EncodedString()
    static let listed = Data(SecureRandom.bytes(32)).base64EncodedString()
    static let short = Data(SecureRandom.bytes(16)).base64EncodedString()

    static let badSettings: [BadKeySetting] = [
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEY_ID": "0"],
            variable: "TOKEN_ENCRYPTION_KEY_ID", problem: "must be a whole number from 1 to 255"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEY_ID": "256"],
            variable: "TOKEN_ENCRYPTION_KEY_ID", problem: "must be a whole number from 1 to 255"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEY_ID": "+2"],
            variable: "TOKEN_ENCRYPTION_KEY_ID", problem: "must be a whole number from 1 to 255"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY_ID": "2"], variable: "TOKEN_ENCRYPTION_KEY_ID",
            problem: "is set but TOKEN_ENCRYPTION_KEY is not"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEYS": "1:\(listed)"], variable: "TOKEN_ENCRYPTION_KEYS",
            problem: "is set but TOKEN_ENCRYPTION_KEY is not"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEYS": listed],
            variable: "TOKEN_ENCRYPTION_KEYS", problem: "entry 1 is not ID:BASE64 (entries are comma-separated)"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEYS": "2:\(listed),"],
            variable: "TOKEN_ENCRYPTION_KEYS", problem: "entry 2 is not ID:BASE64 (entries are comma-separated)"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEYS": "\(listed):1"],
            variable: "TOKEN_ENCRYPTION_KEYS", problem: "entry 1 has a key id that is not a whole number from 1 to 255"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEYS": "2:\(listed),1:\(short)"],
            variable: "TOKEN_ENCRYPTION_KEYS", problem: "entry 2 (key id 1) is not base64 of exactly 32 bytes"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEYS": "2:\(listed),2:\(listed)"],
            variable: "TOKEN_ENCRYPTION_KEYS", problem: "lists key id 2 twice"),
        BadKeySetting(
            settings: ["TOKEN_ENCRYPTION_KEY": current, "TOKEN_ENCRYPTION_KEYS": "1:\(listed)"],
            variable: "TOKEN_ENCRYPTION_KEYS", problem: "gives key id 1, the TOKEN_ENCRYPTION_KEY_ID, a different key"),
    ]

    @Test(arguments: badSettings)
    func aBadKeySettingNamesItsVariableAndNeverItsValue(_ bad: BadKeySetting) throws {
        let error = #expect(throws: ConfigurationError.self) {
            try Configuration.fromEnvironment(Self.environment.merging(bad.settings) { $1 })
        }
        #expect(error?.variable == bad.variable)
        #expect(error?.problem == bad.problem)
        let message = error.map { String(describing: $0) } ?? ""
        for secret in [Self.current, Self.listed, Self.short] {
            #expect(!message.contains(secret))
            #expect(!message.contains(secret.prefix(8)))
        }
    }

    @Test func theCurrentKeyListedAgainUnderItsOwnIDIsAccepted() throws {
        let configuration = try Configuration.fromEnvironment(
            Self.environment.merging([
                "TOKEN_ENCRYPTION_KEY": Self.current, "TOKEN_ENCRYPTION_KEY_ID": "4",
                "TOKEN_ENCRYPTION_KEYS": "4:\(Self.current),9:\(Self.listed)",
            ]) { $1 })
        #expect(configuration.tokenEncryptionKeyID == 4)
        #expect(configuration.oldTokenEncryptionKeys.keys.sorted() == [4, 9])
        #expect(try TokenVault(configuration: configuration).keys.currentKeyID == 4)
    }
}
