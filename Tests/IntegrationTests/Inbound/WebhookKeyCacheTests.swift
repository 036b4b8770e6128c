import Basics
import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// The webhooks route's per-process keys (`WebhookKeyCache`, migration 042): one handler (as in
/// one route process) receives several deliveries, and a change to the connection takes effect
/// at the very next one.
@Suite struct WebhookKeyCacheTests {
    static let otherKey = "a-new-key-after-reconnect"

    static func status(_ response: Response) throws -> String? {
        (try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["status"] as? String
    }

    static func deliver(_ fixture: WebhookFixture, _ handler: WebhooksHandler, key: String? = nil) -> Response {
        fixture.deliver(headers: fixture.headers(ticks: DotNetTicks.from(Date()), key: key), handler: handler)
    }

    @Test func laterDeliveriesUseTheKeysThisProcessReadAndAreStored() throws {
        try WebhookFixture.with { (fixture) throws in
            let handler = fixture.handler()
            #expect(handler.keyCache.count == 0)
            for _ in 0..<3 {
                let response = Self.deliver(fixture, handler)
                #expect(response.status.code == 200)
                #expect(try Self.status(response) == "accepted")
            }
            #expect(handler.keyCache.count == 1)
            #expect(try fixture.events().count == 3)
        }
    }

    @Test func aKeyReplacedByAReconnectPastItsGracePeriodIsRefusedAtTheNextDelivery() throws {
        try WebhookFixture.with { (fixture) throws in
            let handler = fixture.handler()
            #expect(Self.deliver(fixture, handler).status.code == 200)
            try fixture.connect(
                fixture.firm, account: fixture.accountID, key: Self.otherKey, previous: fixture.key,
                rotatedSecondsAgo: 11 * 60)
            #expect(Self.deliver(fixture, handler).status.code == 401)
            #expect(try fixture.events().count == 1)
            #expect(Self.deliver(fixture, handler, key: Self.otherKey).status.code == 200)
            #expect(try fixture.events().count == 2)
        }
    }

    @Test func aKeyReplacedByAReconnectStillWorksWithinItsGracePeriod() throws {
        try WebhookFixture.with { (fixture) throws in
            let handler = fixture.handler()
            #expect(Self.deliver(fixture, handler).status.code == 200)
            try fixture.connect(
                fixture.firm, account: fixture.accountID, key: Self.otherKey, previous: fixture.key,
                rotatedSecondsAgo: 60)
            #expect(Self.deliver(fixture, handler).status.code == 200)
            #expect(Self.deliver(fixture, handler, key: Self.otherKey).status.code == 200)
            #expect(try fixture.events().count == 3)
        }
    }

    @Test func aDisconnectedAccountIsIgnoredAndCountedThoughItsKeysWereHeld() throws {
        try WebhookFixture.with { (fixture) throws in
            let handler = fixture.handler()
            #expect(Self.deliver(fixture, handler).status.code == 200)
            try fixture.connect(fixture.firm, account: fixture.accountID, key: fixture.key, active: false)
            let response = Self.deliver(fixture, handler)
            #expect(response.status.code == 200)
            #expect(try Self.status(response) == "ignored")
            #expect(try fixture.events().count == 1)
            #expect(handler.keyCache.count == 0)
            let ignored = try fixture.seed.connection.execute(
                "SELECT deliveries FROM smokeball_ignored_webhooks WHERE account_id = $1", [fixture.accountID]
            ).first
            #expect(try ignored?.int("deliveries") == 1)
        }
    }

    @Test func theSameKeySealedAnewIsReadAgainAndTheDeliveryStored() throws {
        try WebhookFixture.with { (fixture) throws in
            let handler = fixture.handler()
            #expect(Self.deliver(fixture, handler).status.code == 200)
            // As an encryption key rotation leaves it: the same key, other sealed bytes.
            try fixture.connect(fixture.firm, account: fixture.accountID, key: fixture.key)
            let response = Self.deliver(fixture, handler)
            #expect(response.status.code == 200)
            #expect(try Self.status(response) == "accepted")
            #expect(try fixture.events().count == 2)
            #expect(handler.keyCache.count == 1)
        }
    }
}
