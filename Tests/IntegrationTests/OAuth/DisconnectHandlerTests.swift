import Basics
import FastCGI
import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// The disconnect route against the real sandbox: the subscription goes, the tokens and key are
/// forgotten, settings stay; failures at Smokeball are reported, not fatal; another firm's admin
/// and a standard user cannot disconnect anybody.
@Suite(.serialized) struct DisconnectHandlerTests {
    @Test("disconnect deletes the subscription, forgets tokens and key, keeps settings, and is idempotent")
    func disconnects() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            try flow.seed.connection.execute(
                "UPDATE firm_integrations SET settings = '{\"auto_sync_on_approval\": false}' WHERE firm_id = $1",
                [flow.firm.id])
            #expect(try flow.subscriptions().count == 1)
            let answer = try flow.disconnect()
            #expect(answer.status == 200)
            #expect(answer.body["connected"] as? Bool == false)
            #expect(answer.body["webhooks_deleted"] as? Int == 1)
            #expect((answer.body["webhook_errors"] as? [Any])?.isEmpty == true)
            #expect(try flow.subscriptions().isEmpty)
            let row = try #require(try flow.stored()).row
            for column in ["access_token", "refresh_token", "webhook_secret"] {
                #expect(try row.isNull(column), "\(column) is kept")
            }
            #expect(try !row.bool("is_active"))
            #expect(try row.optionalString("smokeball_account_id") == nil)
            #expect(try row.jsonText("settings").contains("\"auto_sync_on_approval\": false"))

            // Again: nothing to delete, nothing asked of Smokeball.
            let calls = try flow.sandbox.requestLog().count
            let again = try flow.disconnect()
            #expect(again.status == 200 && again.body["webhooks_deleted"] as? Int == 0)
            #expect((again.body["webhook_errors"] as? [Any])?.isEmpty == true)
            #expect(try flow.sandbox.requestLog().count == calls)

            // The account is free again: the other firm may connect it now.
            #expect(try ConnectionFlow.landing(flow.connectFirm(as: flow.otherFirm.admin))["smokeball"] == "connected")
        }
    }

    @Test("another firm's admin or a standard user cannot disconnect the firm")
    func onlyTheFirmsAdmin() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            let before = try #require(try flow.stored())
            let other = try flow.disconnect(as: flow.otherFirm.admin)
            // The other firm's admin disconnects only their own (absent) connection.
            #expect(other.status == 200 && other.body["webhooks_deleted"] as? Int == 0)
            let standard = try flow.disconnect(as: flow.firm.standard)
            #expect(standard.status == 403)
            let after = try #require(try flow.stored())
            #expect(after.accessToken == before.accessToken && after.webhookKey == before.webhookKey)
            #expect(try after.row.bool("is_active"))
            #expect(try flow.subscriptions().count == 1)
            // No Bearer token: 401, and a session cookie alone is not accepted for a POST.
            let cookieOnly = respond(
                to: ConnectionFlow.request("POST", route: "disconnect", cookieUser: flow.firm.admin),
                with: flow.disconnect, log: Logger(route: "disconnect")
            ).0
            #expect(cookieOnly.status.code == 401)
            #expect(try flow.subscriptions().count == 1)
        }
    }

    @Test("Smokeball failing during disconnect is reported, and the tokens are forgotten anyway")
    func smokeballDown() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            try flow.sandbox.addFault(["path_prefix": "/webhooks", "status": 503])
            let answer = try flow.disconnect()
            try flow.sandbox.clearFaults()
            #expect(answer.status == 200)
            #expect(answer.body["webhooks_deleted"] as? Int == 0)
            let errors = try #require(answer.body["webhook_errors"] as? [[String: Any]])
            #expect(errors.count == 1 && errors.first?["code"] as? String == "unavailable")
            #expect(try #require(try flow.stored()).row.isNull("access_token"))
            // The subscription Smokeball kept still points at us; a reconnect takes it over.
            #expect(try flow.subscriptions().count == 1)
            #expect(try ConnectionFlow.landing(flow.connectFirm())["smokeball"] == "connected")
            #expect(try flow.subscriptions().count == 1)
        }
    }

    @Test("a revoked account disconnects cleanly: the error is reported and nothing is left to act with")
    func revokedAccount() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            let revoked = try flow.sandbox.service.send(
                "POST", "/_sandbox/revoke", body: SmokeballSandbox.json(["account_id": flow.sandbox.accountID]),
                contentType: "application/json", base: flow.sandbox.url)
            try #require(revoked.status == 200)
            let answer = try flow.disconnect()
            #expect(answer.status == 200)
            #expect(answer.body["webhooks_deleted"] as? Int == 0)
            let errors = try #require(answer.body["webhook_errors"] as? [[String: Any]])
            #expect(errors.first?["code"] as? String == "needs_reconnect")
            #expect(try #require(try flow.stored()).row.isNull("refresh_token"))
        }
    }
}
