import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// What status tells a firm about its connection's health: why a reconnect is needed, when the
/// refresh token runs out, who connected, and the webhook subscription.
@Suite struct StatusConnectionHealthTests {
    typealias Fixture = StatusHandlerTests.Fixture

    /// A connected integration with the given refresh expiry and recorded reason.
    static func connect(
        _ fixture: Fixture, refreshExpiresIn: TimeInterval, reason: String? = nil, subscription: String? = nil
    ) throws {
        try fixture.seed.connection.execute(
            "UPDATE users SET full_name = 'Dana Admin' WHERE id = $1", [fixture.admin])
        try fixture.seed.asFirm(fixture.firm) { connection in
            try connection.execute(
                """
                INSERT INTO firm_integrations (firm_id, platform, access_token, refresh_token, token_expires_at,
                    refresh_token_expires_at, is_active, smokeball_account_id, region, connected_at, connected_by,
                    needs_reconnect_reason, webhook_subscription_id, webhook_event_types, webhook_ensured_at)
                VALUES ($1, 'smokeball', '\\x01'::bytea, '\\x02'::bytea, now() + interval '1 hour', $2, true,
                    'acct-1', 'US', now(), $3, $4, $5, '{matter.updated,error}', now())
                """,
                [fixture.firm, Date().addingTimeInterval(refreshExpiresIn), fixture.admin, reason, subscription])
        }
    }

    static func body(_ fixture: Fixture) throws -> [String: Any] {
        try StatusHandlerTests.json(fixture.call("GET", user: fixture.standard))
    }

    @Test func aHealthyConnectionNamesWhoConnectedAndItsSubscription() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            try Self.connect(fixture, refreshExpiresIn: 20 * 24 * 3600, subscription: "sub-1")
            let body = try Self.body(fixture)
            #expect(body["connected"] as? Bool == true)
            #expect(body["needs_reconnect"] as? Bool == false)
            #expect(body["needs_reconnect_reason"] is NSNull)
            #expect(body["reconnect_by"] is NSNull, "20 days left is no warning yet")
            let connectedBy = try #require(body["connected_by"] as? [String: Any])
            #expect(connectedBy["user_id"] as? String == fixture.admin.uuidString.lowercased())
            #expect(connectedBy["name"] as? String == "Dana Admin")
            let subscription = try #require(body["webhook_subscription"] as? [String: Any])
            #expect(subscription["id"] as? String == "sub-1")
            #expect(subscription["event_types"] as? [String] == ["matter.updated", "error"])
            #expect(subscription["ensured_at"] is String)
        }
    }

    @Test func aRefreshTokenEndingWithinSevenDaysShowsReconnectBy() throws {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            try Self.connect(fixture, refreshExpiresIn: 3 * 24 * 3600)
            let body = try Self.body(fixture)
            #expect(body["needs_reconnect"] as? Bool == false)
            #expect(body["reconnect_by"] as? String == body["refresh_token_expires_at"] as? String)
            #expect(body["webhook_subscription"] is NSNull)
        }
    }

    @Test(
        arguments: [
            (-60.0, nil, "refresh_token_expired"), (20.0 * 24 * 3600, "invalid_grant", "invalid_grant"),
        ] as [(TimeInterval, String?, String)])
    func aConnectionThatNeedsReconnectingSaysWhy(refreshExpiresIn: TimeInterval, stored: String?, reason: String) throws
    {
        try ServiceDatabase.with { database in
            let fixture = try Fixture(database)
            try Self.connect(fixture, refreshExpiresIn: refreshExpiresIn, reason: stored)
            let body = try Self.body(fixture)
            #expect(body["needs_reconnect"] as? Bool == true)
            #expect(body["needs_reconnect_reason"] as? String == reason)
            #expect(body["reconnect_by"] is NSNull)
        }
    }
}
