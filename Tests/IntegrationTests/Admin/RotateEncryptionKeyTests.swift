import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// `casehug-admin rotate-encryption-key`: every sealed value moves to the new key, in slices,
/// while routes holding both keys keep working.
@Suite struct RotateEncryptionKeyTests {
    static let oldKey = SecureRandom.bytes(32)
    static let newKey = SecureRandom.bytes(32)

    /// The settings every process has during a rotation: the new key current, the old one readable.
    static let rotatingEnvironment = [
        "TOKEN_ENCRYPTION_KEY": Data(newKey).base64EncodedString(), "TOKEN_ENCRYPTION_KEY_ID": "2",
        "TOKEN_ENCRYPTION_KEYS": "1:" + Data(oldKey).base64EncodedString(),
    ]

    struct ConnectedFirm {
        let id: UUID
        let account: String
        let webhookKey: String
    }

    /// Firms connected before the rotation: tokens and webhook keys under the old key (id 1), the
    /// first firm with a previous webhook key, the first three with an OAuth state in flight.
    static func arrange(_ fixture: OpsFixture, firms count: Int) throws -> [ConnectedFirm] {
        let old = try TokenVault(key: oldKey, keyID: 1)
        var firms: [ConnectedFirm] = []
        for index in 0..<count {
            let firm = try fixture.seed.firm("Rotating \(index)")
            let connected = ConnectedFirm(
                id: firm, account: "account-\(index)", webhookKey: "webhook-key-\(index)-\(UUID().uuidString)")
            func seal(_ text: String, _ column: TokenVault.Column) throws -> [UInt8] {
                try old.seal(text, firmID: firm, platform: "smokeball", column: column)
            }
            try fixture.connect(
                firm, account: connected.account, accessToken: try seal("access-\(index)", .accessToken),
                refreshToken: try seal("refresh-\(index)", .refreshToken),
                webhookSecret: try seal(connected.webhookKey, .webhookSecret))
            if index == 0 {
                try fixture.seed.asFirm(firm) { connection in
                    try connection.execute(
                        "UPDATE firm_integrations SET previous_webhook_secret = $2 WHERE firm_id = $1",
                        [firm, try seal("previous", .previousWebhookSecret)])
                }
            }
            if index < 3 {
                let user = try fixture.seed.user(firm: firm, role: "firm_admin")
                try fixture.seed.asFirm(firm) { connection in
                    try connection.execute(
                        "INSERT INTO oauth_states (firm_id, user_id, state_hash, code_verifier) VALUES ($1, $2, $3, $4)",
                        [firm, user, SecureRandom.bytes(32), try seal("verifier-\(index)", .codeVerifier)])
                }
            }
            firms.append(connected)
        }
        return firms
    }

    /// Every sealed value in the database, with what opens it.
    static func sealedValues(_ fixture: OpsFixture) throws -> [(firm: UUID, column: String, sealed: [UInt8])] {
        try fixture.seed.connection.execute(
            """
            SELECT i.firm_id, c.name, c.value FROM firm_integrations i
            CROSS JOIN LATERAL (VALUES ('access_token', i.access_token), ('refresh_token', i.refresh_token),
                ('webhook_secret', i.webhook_secret), ('previous_webhook_secret', i.previous_webhook_secret)) c (name, value)
            WHERE c.value IS NOT NULL
            UNION ALL SELECT s.firm_id, 'code_verifier', s.code_verifier FROM oauth_states s
            """
        ).rows.map { (try $0.uuid("firm_id"), try $0.string("name"), try $0.bytes("value")) }
    }

    /// Delivers one signed webhook for `firm` to a webhooks handler holding `vault`: its status.
    static func deliver(_ fixture: OpsFixture, _ firm: ConnectedFirm, vault: TokenVault) -> Int {
        let handler = WebhooksHandler(
            database: Database(url: fixture.database.appURL), vault: vault, clientID: WebhookFixture.factsClientID)
        let timestamp = String(DotNetTicks.from(Date()))
        let requestID = UUID().uuidString.lowercased()
        let headers = [
            "content-type": "application/json", "timestamp": timestamp, "requestid": requestID,
            "signature": WebhookFixture.signature(key: firm.webhookKey, timestamp: timestamp, requestID: requestID),
        ]
        let request = Request(
            method: "POST", path: "/api/v1/integrations/smokeball/webhooks", headers: headers,
            body: Array(WebhookFixture.body(account: firm.account).utf8), requestID: "rotation-test")
        return respond(to: request, with: handler, log: Logger(route: "webhooks")).0.status.code
    }

    @Test func rotationReSealsEveryValueUnderTheNewKeyInResumableSlicesWhileRoutesKeepWorking() throws {
        try OpsFixture.with { fixture in
            let firms = try Self.arrange(fixture, firms: 10)
            let total = try Self.sealedValues(fixture).count
            #expect(total == 10 * 3 + 1 + 3)
            let both = try TokenVault(key: Self.newKey, keyID: 2, oldKeys: [1: Self.oldKey])
            let newOnly = try TokenVault(key: Self.newKey, keyID: 2)

            // A first slice: part of the values moved, the rest not yet.
            let first = try fixture.rows(
                ["rotate-encryption-key", "--limit", "10", "--batch", "4"], key: "rotation",
                environment: Self.rotatingEnvironment)
            #expect(first.first?["resealed"] as? Int == 10)
            #expect(first.first?["remaining"] as? Int == total - 10)
            #expect(first.first?["key_id"] as? Int == 2)
            // Mid-rotation, a route with both keys accepts every firm's deliveries; one with only
            // the new key accepts exactly the firms whose webhook key has moved.
            #expect(firms.map { Self.deliver(fixture, $0, vault: both) } == Array(repeating: 200, count: firms.count))
            let moved = try fixture.seed.connection.execute(
                "SELECT count(*) AS n FROM firm_integrations WHERE get_byte(webhook_secret, 1) = 2"
            ).single().int("n")
            #expect(moved > 0 && moved < firms.count)
            #expect(firms.filter { Self.deliver(fixture, $0, vault: newOnly) == 200 }.count == Int(moved))

            // The rest, one value per batch, while deliveries keep arriving.
            let finished = Locked<Result<String, any Error>?>(nil)
            let environment = fixture.environment.merging(Self.rotatingEnvironment) { $1 }
            let rotation = Thread {
                let result = Result {
                    try AdminCommand.run(["rotate-encryption-key", "--batch", "1", "--json"], environment: environment)
                }
                finished.withLock { $0 = result }
            }
            rotation.start()
            var statuses: [Int] = []
            while finished.value == nil {
                statuses.append(Self.deliver(fixture, firms[statuses.count % firms.count], vault: both))
            }
            #expect(statuses.allSatisfy { $0 == 200 })
            print("deliveries during the second slice: \(statuses.count)")
            let output = try #require(try finished.value?.get())
            #expect(output.contains(#""remaining":0"#) && output.contains(#""resealed":\#(total - 10)"#))

            // Every value opens with the new key alone, under its own firm and column.
            for value in try Self.sealedValues(fixture) {
                let column = try #require(TokenVault.Column(rawValue: value.column))
                #expect(throws: Never.self) {
                    try newOnly.open(value.sealed, firmID: value.firm, platform: "smokeball", column: column)
                }
            }
            #expect(
                firms.map { Self.deliver(fixture, $0, vault: newOnly) } == Array(repeating: 200, count: firms.count))
            // Nothing left: running it again changes nothing.
            let again = try fixture.rows(
                ["rotate-encryption-key"], key: "rotation", environment: Self.rotatingEnvironment)
            #expect(again.first?["resealed"] as? Int == 0 && again.first?["remaining"] as? Int == 0)
        }
    }

    @Test func aValueNoConfiguredKeyOpensIsReportedAndLeftAsItWas() throws {
        try OpsFixture.with { fixture in
            _ = try Self.arrange(fixture, firms: 1)
            // The old key is not among the settings: nothing can be opened.
            let environment = [
                "TOKEN_ENCRYPTION_KEY": Data(Self.newKey).base64EncodedString(), "TOKEN_ENCRYPTION_KEY_ID": "2",
            ]
            let before = try Self.sealedValues(fixture).map(\.sealed)
            #expect(
                OpsFixture.errorCode { try fixture.run(["rotate-encryption-key"], environment: environment) }
                    == "unreadable_values")
            #expect(try Self.sealedValues(fixture).map(\.sealed) == before)
            #expect(
                OpsFixture.errorCode { try fixture.run(["rotate-encryption-key"], environment: [:]) } == "configuration"
            )
        }
    }
}
