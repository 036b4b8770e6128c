import Basics
import Cryptography
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// Smokeball tokens at rest: sealed with AES-256-GCM, bound to their firm, platform and column.
@Suite struct TokenVaultTests {
    static let key = SecureRandom.bytes(32)

    @Test func sealedTokensRoundTripThroughTheDatabaseAndNeverAppearInClear() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let firm = try seed.firm()
            let vault = try TokenVault(key: Self.key)
            let access = "sb-access-" + SecureRandom.token()
            let sealed = try vault.seal(access, firmID: firm, platform: "smokeball", column: .accessToken)
            #expect(sealed.count == access.utf8.count + AES256GCM.nonceByteCount + AES256GCM.tagByteCount)
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
        #expect(throws: CryptoError.self) {
            try vault.open(sealed, firmID: UUID(), platform: "smokeball", column: .refreshToken)
        }
        #expect(throws: CryptoError.self) {
            try vault.open(sealed, firmID: firm, platform: "clio", column: .refreshToken)
        }
        #expect(throws: CryptoError.self) {
            try vault.open(sealed, firmID: firm, platform: "smokeball", column: .accessToken)
        }
        #expect(throws: CryptoError.self) {
            try TokenVault(key: SecureRandom.bytes(32)).open(
                sealed, firmID: firm, platform: "smokeball", column: .refreshToken)
        }
        var tampered = sealed
        tampered[tampered.count / 2] ^= 0x01
        #expect(throws: CryptoError.self) {
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
}
