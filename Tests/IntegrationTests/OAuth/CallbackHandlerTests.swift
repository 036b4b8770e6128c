import Basics
import Cryptography
import FastCGI
import Foundation
import HTTPClient
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// The callback route against the real sandbox: what a successful connection stores at both
/// ends, and every way a browser can come back wrong, each ending on the configured return URL
/// with its reason, and without a token request where the state was not good.
@Suite(.serialized) struct CallbackHandlerTests {
    @Test("a firm admin who signs in lands on connected with sealed tokens, the firm, the user and one subscription")
    func connects() throws {
        try ConnectionFlow.with { flow in
            let before = Date()
            let landing = try ConnectionFlow.landing(try flow.connectFirm())
            #expect(landing == ["smokeball": "connected"])

            let stored = try #require(try flow.stored())
            let row = stored.row
            #expect(try row.bool("is_active"))
            #expect(try row.optionalString("smokeball_account_id") == flow.sandbox.accountID)
            #expect(try row.optionalString("region") == "US")
            #expect(try row.optionalUUID("connected_by") == flow.firm.admin)
            #expect(try row.optionalString("needs_reconnect_reason") == nil)
            // The access token is Smokeball's, and works.
            let client = try flow.sandbox.client()
            #expect(try client.firm(.user(stored.accessToken)).value.id == flow.sandbox.accountID)
            #expect(try client.refresh(stored.refreshToken).expiresIn > 0)
            let expires = try #require(try row.optionalDate("token_expires_at"))
            #expect(expires > before.addingTimeInterval(3000) && expires < Date().addingTimeInterval(3700))
            let refreshExpires = try #require(try row.optionalDate("refresh_token_expires_at"))
            #expect(abs(refreshExpires.timeIntervalSince(before) - 30 * 24 * 3600) < 120)
            // What status shows about the account: the firm and the staff member who signed in.
            let info = try #require(try row.json("account_info") as? [String: String])
            #expect(info["firm_name"] == "Client Tests Law")
            #expect(info["user_name"] == "Olive Owner")
            #expect(info["user_email"] == SmokeballSandbox.email)
            // A fresh 32-byte key, and the sandbox's one subscription carries it.
            #expect(stored.webhookKey.count == 64 && Hex.decode(stored.webhookKey)?.count == 32)
            let subscriptions = try flow.subscriptions()
            try #require(subscriptions.count == 1)
            #expect(subscriptions[0].url == ConnectionFlow.redirects.webhookURL)
            #expect(subscriptions[0].key == stored.webhookKey)
            #expect(Set(subscriptions[0].types) == Set(WebhookSubscriptions.eventTypes))
            #expect(try row.optionalString("webhook_subscription_id") == subscriptions[0].id)
            #expect(Set(try row.string("types").split(separator: ",").map(String.init)) == Set(subscriptions[0].types))
            #expect(try row.optionalDate("webhook_ensured_at") != nil)
        }
    }

    @Test("a reused, forged, expired or unknown state lands on invalid_state and no code is exchanged")
    func badStates() throws {
        try ConnectionFlow.with { flow in
            // Reused: the first arrival spends the state; a second one with a fresh code is refused.
            let first = try flow.signedIn()
            #expect(try ConnectionFlow.landing(flow.arrive(first))["smokeball"] == "connected")
            let tokenCalls = try flow.tokenRequests()
            #expect(tokenCalls == 1)
            var second = try flow.signedIn()
            second["state"] = first["state"]
            #expect(
                try ConnectionFlow.landing(flow.arrive(second)) == ["smokeball": "error", "reason": "invalid_state"])
            #expect(try !flow.codeWasExchanged(second["code"]!))

            // Forged: 32 random bytes nobody issued.
            var forged = try flow.signedIn()
            forged["state"] = Base64URL.encode(SecureRandom.bytes(32))
            #expect(try ConnectionFlow.landing(flow.arrive(forged))["reason"] == "invalid_state")
            #expect(try !flow.codeWasExchanged(forged["code"]!))

            // Malformed and missing.
            var malformed = try flow.signedIn()
            for bad in ["", "short", String(repeating: "A", count: 5000), "%%%"] {
                malformed["state"] = bad
                #expect(try ConnectionFlow.landing(flow.arrive(malformed))["reason"] == "invalid_state")
            }
            malformed.removeValue(forKey: "state")
            #expect(try ConnectionFlow.landing(flow.arrive(malformed))["reason"] == "invalid_state")
            #expect(try !flow.codeWasExchanged(malformed["code"]!))

            // Expired: the state's ten minutes are over.
            let expired = try flow.signedIn()
            try flow.seed.connection.execute(
                "UPDATE oauth_states SET expires_at = now() - interval '1 second' WHERE state_hash = $1",
                [SHA256.hash(Base64URL.decode(expired["state"]!)!)])
            #expect(try ConnectionFlow.landing(flow.arrive(expired))["reason"] == "invalid_state")
            #expect(try !flow.codeWasExchanged(expired["code"]!))

            // A good state with a repeated or missing code is spent and refused.
            let repeated = try flow.signedIn()
            let doubled = [("state", repeated["state"]!), ("code", repeated["code"]!), ("code", "other")]
            #expect(try ConnectionFlow.landing(flow.arrive(doubled))["reason"] == "invalid_state")
            #expect(try ConnectionFlow.landing(flow.arrive(repeated))["reason"] == "invalid_state")
            #expect(try !flow.codeWasExchanged(repeated["code"]!))
            // The sandbox's log: not one token request since the good arrival.
            #expect(try flow.tokenRequests() == tokenCalls)
        }
    }

    @Test("another user's session, or the state of an admin who lost the role, lands on invalid_state")
    func foreignStates() throws {
        try ConnectionFlow.with { flow in
            let tokensBefore = try flow.issuedTokens()
            let tokenCalls = try flow.tokenRequests()
            // The browser coming back belongs to someone else: another firm's admin, or a colleague.
            for intruder in [flow.otherFirm.admin, flow.firm.standard] {
                let items = try flow.signedIn()
                let landing = try ConnectionFlow.landing(flow.arrive(items, cookieUser: intruder))
                #expect(landing == ["smokeball": "error", "reason": "invalid_state"])
                #expect(try !flow.codeWasExchanged(items["code"]!))
                // The state is spent: the right browser cannot use it afterwards either.
                #expect(try ConnectionFlow.landing(flow.arrive(items))["reason"] == "invalid_state")
            }
            // A session cookie that is not a valid token proves nothing: refused too.
            let items = try flow.signedIn()
            let queryString = FormURLEncoding.encode(items.map { ($0.key, $0.value) })
            let request = Request(
                method: "GET", path: "/api/v1/integrations/smokeball/callback",
                query: QueryString.dictionary(queryString), queryString: queryString,
                headers: ["cookie": "casehug_session=not-a-token"], body: [], requestID: "test")
            let response = respond(to: request, with: flow.callback, log: Logger(route: "callback")).0
            #expect(try ConnectionFlow.landing(response)["reason"] == "invalid_state")

            // The admin was demoted between connect and callback.
            let demoted = try flow.signedIn()
            try flow.seed.connection.execute(
                "UPDATE users SET role = 'standard' WHERE id = $1", [flow.firm.admin])
            #expect(try ConnectionFlow.landing(flow.arrive(demoted))["reason"] == "invalid_state")
            #expect(try !flow.codeWasExchanged(demoted["code"]!))
            #expect(try flow.issuedTokens() == tokensBefore)
            #expect(try flow.tokenRequests() == tokenCalls)
            #expect(try flow.stored() == nil)
        }
    }

    @Test("Deny on Smokeball's page lands on access_denied, another OAuth error on authorization_failed")
    func denied() throws {
        try ConnectionFlow.with { flow in
            let denied = try flow.signedIn(decision: "deny")
            #expect(denied["error"] == "access_denied" && denied["code"] == nil)
            #expect(
                try ConnectionFlow.landing(flow.arrive(denied)) == ["smokeball": "error", "reason": "access_denied"])
            // The state was spent by the denial.
            var retried = denied
            retried["error"] = nil
            retried["code"] = "anything"
            #expect(try ConnectionFlow.landing(flow.arrive(retried))["reason"] == "invalid_state")

            var other = try flow.signedIn()
            other["error"] = "server_error"
            #expect(try ConnectionFlow.landing(flow.arrive(other))["reason"] == "authorization_failed")
            #expect(try !flow.codeWasExchanged(other["code"]!))
            #expect(try flow.tokenRequests() == 0)
            #expect(try flow.stored() == nil)
        }
    }

    @Test("a code used once already lands on token_exchange_failed and stores nothing")
    func reusedCode() throws {
        try ConnectionFlow.with { flow in
            let first = try flow.signedIn()
            let client = try flow.sandbox.client()
            // The code was exchanged once already (a double-submitted callback, a replay), with
            // the flow's own verifier so that only its single use can fail the second exchange.
            let sealed = try flow.seed.connection.execute(
                "SELECT code_verifier FROM oauth_states WHERE state_hash = $1",
                [SHA256.hash(Base64URL.decode(first["state"]!)!)]
            ).single().bytes("code_verifier")
            let verifier = try flow.vault.open(
                sealed, firmID: flow.firm.id, platform: "smokeball", column: .codeVerifier)
            _ = try client.exchangeCode(
                first["code"]!, redirectURI: SmokeballSandbox.redirectURI, codeVerifier: verifier)
            #expect(try flow.codeWasExchanged(first["code"]!))
            #expect(
                try ConnectionFlow.landing(flow.arrive(first)) == [
                    "smokeball": "error", "reason": "token_exchange_failed",
                ])
            #expect(try flow.stored() == nil)
            #expect(try flow.subscriptions().isEmpty)
        }
    }

    @Test("a token endpoint that answers 500, times out or drops the connection lands on smokeball_unavailable")
    func tokenEndpointDown() throws {
        try ConnectionFlow.with { flow in
            flow.callback.requestTimeout = 1
            for fault: [String: Any] in [
                ["path_prefix": "/oauth2/token", "status": 500], ["path_prefix": "/oauth2/token", "latency_ms": 2500],
                ["path_prefix": "/oauth2/token", "drop_connection": true],
            ] {
                let items = try flow.signedIn()
                try flow.sandbox.addFault(fault)
                let calls = try flow.tokenRequests()
                let landing = try ConnectionFlow.landing(flow.arrive(items))
                try flow.sandbox.clearFaults()
                #expect(landing == ["smokeball": "error", "reason": "smokeball_unavailable"], "\(fault)")
                // A code is single use: never sent twice, even after a failure that may not have
                // reached Smokeball. (The slow answer is logged once the sandbox ends it.)
                if let latency = fault["latency_ms"] as? Int {
                    Thread.sleep(forTimeInterval: Double(latency) / 1000 + 0.5)
                }
                #expect(try flow.tokenRequests() == calls + 1, "\(fault)")
                #expect(try flow.stored() == nil)
            }
            // Smokeball's API down after the exchange: nothing is kept either.
            let items = try flow.signedIn()
            try flow.sandbox.addFault(["path_prefix": "/firm", "status": 503])
            #expect(try ConnectionFlow.landing(flow.arrive(items))["reason"] == "smokeball_unavailable")
            try flow.sandbox.clearFaults()
            #expect(try flow.stored() == nil)
            // And once it is back, the flow works.
            #expect(try ConnectionFlow.landing(flow.connectFirm())["smokeball"] == "connected")
        }
    }

    @Test("an account connected to another firm is refused with account_in_use and that firm keeps its connection")
    func accountInUse() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            let firmA = try #require(try flow.stored())
            let landing = try ConnectionFlow.landing(try flow.connectFirm(as: flow.otherFirm.admin))
            #expect(landing == ["smokeball": "error", "reason": "account_in_use"])
            #expect(try flow.stored(flow.otherFirm.id) == nil)
            let after = try #require(try flow.stored())
            #expect(after.accessToken == firmA.accessToken && after.webhookKey == firmA.webhookKey)
            #expect(try flow.subscriptions().count == 1)
            #expect(try flow.subscriptions()[0].key == firmA.webhookKey)
        }
    }

    @Test("a firm connected to one Smokeball account is refused another until it disconnects")
    func differentAccount() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            let other = try flow.sandbox.service.send(
                "POST", "/_sandbox/accounts",
                body: SmokeballSandbox.json([
                    "name": "Other Account Law", "region": "US",
                    "users": [["email": "owner@other-account.test", "password": "other-account-password"]],
                ]), contentType: "application/json", base: flow.sandbox.url)
            try #require(other.status == 201)
            let otherAccount = try #require(other.jsonObject["id"] as? String)
            let current = flow
            func signIn() throws -> [String: String] {
                try current.sandbox.signIn(
                    authorizeURL: try current.start(), email: "owner@other-account.test",
                    password: "other-account-password")
            }
            let refused = try ConnectionFlow.landing(flow.arrive(try signIn()))
            #expect(refused == ["smokeball": "error", "reason": "different_account"])
            #expect(
                try #require(try flow.stored()).row.optionalString("smokeball_account_id") == flow.sandbox.accountID)
            #expect(try flow.disconnect().status == 200)
            #expect(try ConnectionFlow.landing(flow.arrive(try signIn()))["smokeball"] == "connected")
            #expect(try #require(try flow.stored()).row.optionalString("smokeball_account_id") == otherAccount)
        }
    }

    @Test("the same firm reconnecting replaces tokens and key, keeps settings and updates its one subscription")
    func reconnect() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            let first = try #require(try flow.stored())
            let subscription = try flow.subscriptions()[0]
            try flow.seed.connection.execute(
                """
                UPDATE firm_integrations SET settings = '{"auto_sync_on_approval": false}',
                    needs_reconnect_reason = 'invalid_grant' WHERE firm_id = $1
                """, [flow.firm.id])
            #expect(try ConnectionFlow.landing(flow.connectFirm())["smokeball"] == "connected")
            let second = try #require(try flow.stored())
            #expect(second.accessToken != first.accessToken && second.refreshToken != first.refreshToken)
            #expect(second.webhookKey != first.webhookKey)
            #expect(try second.row.jsonText("settings").contains("\"auto_sync_on_approval\": false"))
            #expect(try second.row.optionalString("needs_reconnect_reason") == nil)
            let now = try flow.subscriptions()
            #expect(now.count == 1)
            #expect(now[0].id == subscription.id && now[0].key == second.webhookKey)
        }
    }

    @Test("a subscription Smokeball lost is created again, and extra copies of ours are deleted")
    func repairsSubscriptions() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            try Connection(url: flow.sandbox.store.url).execute("DELETE FROM sb_webhook_subscriptions")
            try flow.connectFirm()
            #expect(try flow.subscriptions().count == 1)
            // Two of ours (an older version's leftovers) and one of another integration's.
            let stored = try #require(try flow.stored())
            let client = try flow.sandbox.client()
            let access = SmokeballAccess.user(stored.accessToken)
            for url in [ConnectionFlow.redirects.webhookURL, "https://elsewhere.test/hooks"] {
                _ = try client.createWebhookSubscription(
                    WebhookSubscriptionRequest(
                        name: "x", eventTypes: ["matter.created"], eventNotificationUrl: url, key: nil),
                    access: access)
            }
            #expect(try flow.subscriptions().count == 3)
            let ensured = try flow.callback.subscriptions.ensure(
                enter: { try Tenancy.enter($0, userID: flow.firm.admin).firmID }, client: client, access: access)
            #expect(ensured.duplicatesDeleted == 1 && !ensured.created)
            let left = try flow.subscriptions()
            #expect(left.count == 2)
            #expect(left.filter { $0.url == ConnectionFlow.redirects.webhookURL }.count == 1)
            #expect(left.contains { $0.url == "https://elsewhere.test/hooks" })
        }
    }

    @Test("eight concurrent ensures leave exactly one subscription")
    func concurrentEnsures() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            try Connection(url: flow.sandbox.store.url).execute("DELETE FROM sb_webhook_subscriptions")
            let stored = try #require(try flow.stored())
            let outcomes = Locked<[Bool]>([])
            let failures = Locked<[String]>([])
            let subscriptions = flow.callback.subscriptions
            let admin = flow.firm.admin
            let configuration = try flow.sandbox.configuration()
            let token = stored.accessToken
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                do {
                    let client = try SmokeballClient(configuration: configuration, rateLimit: nil)
                    let ensured = try subscriptions.ensure(
                        enter: { try Tenancy.enter($0, userID: admin).firmID }, client: client, access: .user(token))
                    outcomes.withLock { $0.append(ensured.created) }
                } catch {
                    failures.withLock { $0.append(String(describing: error)) }
                }
            }
            #expect(failures.value.isEmpty)
            #expect(outcomes.value.filter { $0 }.count == 1)
            #expect(try flow.subscriptions().count == 1)
        }
    }

    @Test("a server without Smokeball credentials lands on not_configured")
    func notConfigured() throws {
        try ConnectionFlow.with(configured: false) { flow in
            let items = try flow.signedIn()
            #expect(
                try ConnectionFlow.landing(flow.arrive(items)) == ["smokeball": "error", "reason": "not_configured"])
            #expect(try !flow.codeWasExchanged(items["code"]!))
        }
    }

    @Test("no parameter can move the landing away from the return URL, and other methods are refused")
    func onlyTheReturnURL() throws {
        try ConnectionFlow.with { flow in
            for query in [
                [("redirect_uri", "https://evil.test/"), ("state", "x")], [("return_to", "//evil.test")],
                [("error", "access_denied"), ("error_description", "https://evil.test")],
            ] {
                let response = flow.arrive(query)
                let location = try #require(response.header("Location"))
                #expect(location.hasPrefix(ConnectionFlow.redirects.returnURL + "?"))
                #expect(!location.contains("evil"))
                #expect(response.header("Referrer-Policy") == "no-referrer")
                // Once: the redirect carries it already (the callback used to add it again).
                #expect(response.headers.filter { $0.0 == "Cache-Control" }.map(\.1) == ["no-store"])
            }
            let post = respond(
                to: ConnectionFlow.request("POST", route: "callback"), with: flow.callback,
                log: Logger(route: "callback")
            ).0
            #expect(post.status.code == 405)
        }
    }
}
