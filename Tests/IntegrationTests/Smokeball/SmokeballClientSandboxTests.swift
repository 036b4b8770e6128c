import Basics
import Foundation
import HTTPClient
import PostgreSQL
import Smokeball
import TestSupport
import Testing

/// The Smokeball client against the sandbox over real HTTP through nginx: both grants, the
/// resources the connection flow uses, and the retry rules under injected faults, counted in
/// the sandbox's request log.
@Suite(.serialized) struct SmokeballClientSandboxTests {
    @Test("the code grant with PKCE, refresh and client credentials each reach the firm's account")
    func bothGrants() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let verifier = PKCE.verifier()
            let code = try sandbox.signIn(client, state: "grant-state", challenge: PKCE.challenge(for: verifier))
            let tokens = try client.exchangeCode(
                code, redirectURI: SmokeballSandbox.redirectURI, codeVerifier: verifier)
            #expect(tokens.tokenType == "Bearer" && tokens.expiresIn > 0)
            let refreshToken = try #require(tokens.refreshToken)

            // A code is single use.
            do {
                _ = try client.exchangeCode(code, redirectURI: SmokeballSandbox.redirectURI, codeVerifier: verifier)
                Issue.record("a reused code was exchanged")
            } catch let error as SmokeballError {
                #expect(error.code == .invalidGrant && error.oauthError == "invalid_grant")
            }
            // The verifier must match the challenge sent with the sign-in.
            let other = try sandbox.signIn(client, state: "s2", challenge: PKCE.challenge(for: verifier))
            #expect(throws: SmokeballError.self) {
                try client.exchangeCode(other, redirectURI: SmokeballSandbox.redirectURI, codeVerifier: PKCE.verifier())
            }

            let firm = try client.firm(.user(tokens.accessToken))
            #expect(firm.value.name == "Client Tests Law")
            #expect(firm.value.id == sandbox.accountID)
            #expect(firm.status == 200)

            let refreshed = try client.refresh(refreshToken)
            #expect(refreshed.accessToken != tokens.accessToken)
            #expect(try client.firm(.user(refreshed.accessToken)).value.id == sandbox.accountID)
            do {
                _ = try client.refresh("not-a-refresh-token")
                Issue.record("a bad refresh token was accepted")
            } catch let error as SmokeballError {
                #expect(error.code == .invalidGrant)
            }

            // Client credentials name the account in the path and may act for a user.
            let server = try client.clientCredentials()
            #expect(server.refreshToken == nil)
            let staff = try client.allStaff(.user(tokens.accessToken))
            let actingUser = try #require(staff.first?.userId)
            let onBehalf = try client.firm(
                .account(sandbox.accountID, accessToken: server.accessToken, actingUserID: actingUser))
            #expect(onBehalf.value.id == sandbox.accountID)
            // The UserId header makes the write the named user's: the event it causes says so.
            struct Person: Encodable { let firstName: String, lastName: String }
            struct NewContact: Encodable { let person: Person }
            let secondUser = try #require(staff.first { $0.email != SmokeballSandbox.email }?.userId)
            let contact = try client.write(
                "POST", "/contacts", body: NewContact(person: Person(firstName: "Ada", lastName: "Client")),
                access: .account(sandbox.accountID, accessToken: server.accessToken, actingUserID: secondUser))
            #expect(contact.status == 202)
            let event = try Connection(url: sandbox.store.url).execute(
                "SELECT user_id::text AS u, payload->>'id' AS id FROM sb_events WHERE request_id = $1",
                [contact.requestID]
            ).single()
            #expect(try event.optionalString("u") == secondUser.lowercased())
            #expect(try event.optionalString("id") == contact.value.id)
            // Without the account in the path the token names none.
            #expect(throws: SmokeballError.self) { try client.firm(.user(server.accessToken)) }

            // Each call sent its own RequestId, which the sandbox logged against the right path.
            let log = try sandbox.requestLog()
            let firmCalls = [firm.requestID, onBehalf.requestID]
            #expect(Set(firmCalls).count == 2)
            #expect(try sandbox.attempts(firm.requestID).map { $0["path"] as? String } == ["/firm"])
            #expect(
                try sandbox.attempts(onBehalf.requestID).map { $0["path"] as? String } == ["/\(sandbox.accountID)/firm"]
            )
            // Token calls carry none (they are logged too, with their grant type).
            let apiCalls = log.filter { $0["grant_type"] is NSNull }
            #expect(!apiCalls.isEmpty && apiCalls.count < log.count)
            #expect(apiCalls.allSatisfy { ($0["request_id"] as? String)?.isEmpty == false })
        }
    }

    @Test("staff, webhook subscriptions, matter types and uploads work with their spec shapes")
    func resources() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let access = try sandbox.userAccess(client)

            let staff = try client.allStaff(access)
            #expect(staff.count == 2)
            let owner = try #require(staff.first { $0.email == SmokeballSandbox.email })
            #expect(owner.firstName == "Olive" && owner.lastName == "Owner")
            let userID = try #require(owner.userId)
            #expect(try client.staffMember(userID: userID, access: access) == owner)
            #expect(try client.staffMember(userID: UUID().uuidString, access: access) == nil)
            #expect(try client.staffMember(id: try #require(owner.id), access: access).value == owner)

            // Webhook subscriptions: the types, then create, list, read, update, notify, delete.
            let types = try client.webhookEventTypes(access)
            for wanted in ["matter.created", "matter.updated", "contact.updated", "files.updated", "error"] {
                #expect(types.contains(wanted), "\(wanted)")
            }
            let request = WebhookSubscriptionRequest(
                name: "CaseHug", eventTypes: ["matter.created", "contact.updated"],
                eventNotificationUrl: "https://casehug.test/api/v1/integrations/smokeball/webhooks",
                key: "webhook-key-0123456789")
            let created = try client.createWebhookSubscription(request, access: access)
            let id = try #require(created.value.id)
            #expect(created.status == 200)
            #expect(created.value.eventTypes == ["matter.created", "contact.updated"])
            #expect(try client.webhookSubscriptions(access).map(\.id) == [id])
            #expect(try client.webhookSubscription(id: id, access: access).value.name == "CaseHug")
            var changed = request
            changed.eventTypes = ["matter.updated", "error"]
            let updated = try client.updateWebhookSubscription(id: id, changed, access: access)
            #expect(updated.value.eventTypes == ["matter.updated", "error"])
            #expect(try client.notifyWebhookSubscription(id: id, access: access).status == 200)
            #expect(try client.deleteWebhookSubscription(id: id, access: access).status == 200)
            #expect(try client.webhookSubscriptions(access).isEmpty)
            do {
                _ = try client.webhookSubscription(id: id, access: access)
                Issue.record("a deleted subscription was read")
            } catch let error as SmokeballError {
                #expect(error.code == .notFound && error.problem?.status == 404)
            }

            // Paging follows offset/limit to the end: small pages give what one page of 500 gives.
            let whole = try client.matterTypes(access: access)
            client.pageSize = 40
            let before = try sandbox.requestLog().count
            let paged = try client.matterTypes(access: access)
            #expect(whole.count > 80)
            #expect(paged.map(\.id) == whole.map(\.id))
            let pageCalls = try sandbox.requestLog().dropFirst(before).filter {
                $0["path"] as? String == "/mattertypes"
            }
            // The last page is short, or ends exactly at the envelope's size: no extra call either way.
            #expect(pageCalls.count == (whole.count + 39) / 40)
            let californian = try client.matterTypes(location: "CA", access: access)
            #expect(!californian.isEmpty && californian.allSatisfy { $0.location == "CA" })
            client.pageSize = 500

            // A 202's Link id: a folder on a matter, and the file upload's pre-signed URL, which
            // takes no token from the partner's bucket and no Smokeball headers.
            let matter = try sandbox.store.insertMatter(accountID: sandbox.accountID)
            struct Folder: Encodable { let name: String }
            let folder = try client.write(
                "POST", "/matters/\(matter.uuidString.lowercased())/documents/folders", body: Folder(name: "CaseHug"),
                access: access)
            #expect(folder.status == 202)
            #expect(folder.value.id?.isEmpty == false)
            #expect(folder.value.href?.hasSuffix(folder.value.id ?? "-") == true)
            struct AddFile: Encodable { let fileName: String }
            struct AddedFile: Decodable, Sendable { let fileId: String, uploadUrl: String }
            let (response, _) = try client.call(
                "POST", "/matters/\(matter.uuidString.lowercased())/documents/files",
                body: Array(try JSONEncoder().encode(AddFile(fileName: "scan.pdf"))), access: access)
            let added = try JSONDecoder().decode(AddedFile.self, from: Data(response.body))
            // Through an emptied bucket that refills too slowly to matter: a call that took a
            // token would give up; the upload does not ask for one.
            let drained = PartnerRateLimit(
                database: Database(url: sandbox.database.appURL), clientID: "drained", ratePerSecond: 0.001, burst: 1,
                maximumWait: 0.1)
            #expect(try drained.tryTake(.interactive) == 0)
            let uploader = try SmokeballClient(configuration: try sandbox.configuration(), rateLimit: drained)
            #expect(throws: SmokeballError.self) { try uploader.firm(access) }
            try uploader.upload(Array("%PDF-1.4 scan".utf8), to: added.uploadUrl)
            let stored = try Connection(url: sandbox.store.url).execute(
                "SELECT content FROM sb_files WHERE id = $1::uuid", [added.fileId]
            ).single().bytes("content")
            #expect(stored == Array("%PDF-1.4 scan".utf8))
        }
    }

    /// The RequestId of the call that failed with a SmokeballError (kept across its retries).
    static func failedRequestID(_ body: () throws -> Void) -> (SmokeballError.Code?, String?) {
        do {
            try body()
            return (nil, nil)
        } catch let error as SmokeballError {
            return (error.code, error.requestID)
        } catch {
            return (nil, nil)
        }
    }

    @Test("GETs are retried a bounded number of times on 500s and dropped connections; writes are not")
    func retriesOnServerFaults() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let access = try sandbox.userAccess(client)
            let subscription = WebhookSubscriptionRequest(
                name: "n", eventTypes: ["matter.created"], eventNotificationUrl: "https://casehug.test/hook", key: nil)

            try sandbox.addFault(["path_prefix": "/firm", "status": 500])
            let (getCode, getID) = Self.failedRequestID { _ = try client.firm(access) }
            #expect(getCode == .unavailable)
            #expect(try sandbox.attempts(getID).map { $0["status"] as? Int } == [500, 500, 500])

            try sandbox.addFault(["path_prefix": "/webhooks", "status": 503])
            let (postCode, postID) = Self.failedRequestID {
                _ = try client.createWebhookSubscription(subscription, access: access)
            }
            #expect(postCode == .unavailable)
            #expect(try sandbox.attempts(postID).map { $0["status"] as? Int } == [503])
            try sandbox.clearFaults()

            // A dropped connection: nginx answers 502 for the dead worker; the log has status 0.
            try sandbox.addFault(["path_prefix": "/firm", "drop_connection": true])
            let (droppedCode, droppedID) = Self.failedRequestID { _ = try client.firm(access) }
            #expect(droppedCode == .unavailable)
            #expect(try sandbox.attempts(droppedID).map { $0["status"] as? Int } == [0, 0, 0])
            try sandbox.addFault(["path_prefix": "/webhooks", "drop_connection": true])
            let (droppedPostCode, droppedPostID) = Self.failedRequestID {
                _ = try client.createWebhookSubscription(subscription, access: access)
            }
            #expect(droppedPostCode == .unavailable)
            #expect(try sandbox.attempts(droppedPostID).map { $0["status"] as? Int } == [0])
            try sandbox.clearFaults()
            try Processes.waitFor("the sandbox's workers to be replaced") {
                (try? client.firm(access).status) == 200
            }

            // A fault on part of the calls: the retry gets through.
            try sandbox.addFault(["path_prefix": "/firm", "status": 502, "share": 0.5])
            var recovered = 0
            for _ in 0..<10 where (try? client.firm(access)) != nil { recovered += 1 }
            #expect(recovered >= 5)
        }
    }

    @Test("time-outs are retried for GETs only; every call is retried on 429, with Retry-After honoured")
    func retriesOnTimeoutsAnd429s() throws {
        try SmokeballSandbox.with(retryAfterHeader: false) { sandbox in
            let client = try sandbox.client()
            let access = try sandbox.userAccess(client)
            let subscription = WebhookSubscriptionRequest(
                name: "n", eventTypes: ["matter.created"], eventNotificationUrl: "https://casehug.test/hook", key: nil)

            try sandbox.addFault(["path_prefix": "/firm", "latency_ms": 900])
            try sandbox.addFault(["path_prefix": "/webhooks", "latency_ms": 900])
            client.requestTimeout = 0.3
            let (slowGet, slowGetID) = Self.failedRequestID { _ = try client.firm(access) }
            #expect(slowGet == .timedOut)
            let (slowPost, slowPostID) = Self.failedRequestID {
                _ = try client.createWebhookSubscription(subscription, access: access)
            }
            #expect(slowPost == .timedOut)
            // The sandbox logs each request when it finishes answering it, after the latency.
            try Processes.waitFor("the slow requests to be logged") {
                try sandbox.attempts(slowGetID).count == 3 && sandbox.attempts(slowPostID).count == 1
            }
            usleep(1_200_000)
            #expect(try sandbox.attempts(slowGetID).count == 3)
            #expect(try sandbox.attempts(slowPostID).count == 1)
            client.requestTimeout = 30
            try sandbox.clearFaults()

            // Smokeball's gateway 429 (no Retry-After): POSTs are retried too, within the bound.
            try sandbox.addFault(["path_prefix": "/webhooks", "status": 429])
            let (limited, limitedID) = Self.failedRequestID {
                _ = try client.createWebhookSubscription(subscription, access: access)
            }
            #expect(limited == .rateLimited)
            #expect(try sandbox.attempts(limitedID).map { $0["status"] as? Int } == [429, 429, 429])
        }
        // With the partner's Retry-After knob: a Retry-After beyond what the policy waits for
        // ends the call at once; one within it is waited for and retried.
        try SmokeballSandbox.with(retryAfterHeader: true) { sandbox in
            let patient = try sandbox.client(
                retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.05, maxRetryAfter: 5))
            let hasty = try sandbox.client(
                retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.05, maxRetryAfter: 0.5))
            let access = try sandbox.userAccess(patient)
            try sandbox.addFault(["path_prefix": "/firm", "status": 429])
            let (hastyCode, hastyID) = Self.failedRequestID { _ = try hasty.firm(access) }
            #expect(hastyCode == .rateLimited)
            #expect(try sandbox.attempts(hastyID).count == 1)
            let (patientCode, patientID) = Self.failedRequestID { _ = try patient.firm(access) }
            #expect(patientCode == .rateLimited)
            #expect(try sandbox.attempts(patientID).count == 3)
        }
    }

    @Test("the token endpoint's failures are typed: a 500 is unavailable, an unknown client is refused")
    func tokenEndpointFaults() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            try sandbox.addFault(["path_prefix": "/oauth2/token", "status": 500])
            let (down, _) = Self.failedRequestID { _ = try client.clientCredentials() }
            #expect(down == .unavailable)
            try sandbox.clearFaults()
            let stranger = try SmokeballClient(
                configuration: try sandbox.configuration(["SMOKEBALL_CLIENT_SECRET": "wrong-secret"]), rateLimit: nil)
            do {
                _ = try stranger.clientCredentials()
                Issue.record("a wrong secret got a token")
            } catch let error as SmokeballError {
                #expect(error.code == .tokenRefused && error.oauthError == "invalid_client")
                #expect(!error.description.contains("wrong-secret"))
            }
            #expect(try client.clientCredentials().accessToken.isEmpty == false)

            // Slow or dropped: a time-out, and nginx's 502 for the dead worker.
            try sandbox.addFault(["path_prefix": "/oauth2/token", "latency_ms": 900])
            client.requestTimeout = 0.3
            #expect(Self.failedRequestID { _ = try client.clientCredentials() }.0 == .timedOut)
            client.requestTimeout = 30
            try sandbox.clearFaults()
            try sandbox.addFault(["path_prefix": "/oauth2/token", "drop_connection": true])
            #expect(Self.failedRequestID { _ = try client.refresh("any-refresh-token") }.0 == .unavailable)
            try sandbox.clearFaults()
        }
    }

    @Test("a firm's revoked grant makes its calls unauthorized and its refresh token invalid")
    func revokedAccount() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let verifier = PKCE.verifier()
            let code = try sandbox.signIn(client, state: "revoke", challenge: PKCE.challenge(for: verifier))
            let tokens = try client.exchangeCode(
                code, redirectURI: SmokeballSandbox.redirectURI, codeVerifier: verifier)
            #expect(try client.firm(.user(tokens.accessToken)).status == 200)
            _ = try client.createWebhookSubscription(
                WebhookSubscriptionRequest(
                    name: "CaseHug", eventTypes: ["matter.created"], eventNotificationUrl: "https://casehug.test/hooks",
                    key: "webhook-key-0123456789"), access: .user(tokens.accessToken))
            let revoked = try sandbox.service.send(
                "POST", "/_sandbox/revoke", body: SmokeballSandbox.json(["account_id": sandbox.accountID]),
                contentType: "application/json", base: sandbox.url)
            try #require(revoked.status == 200)
            // Smokeball removes the subscriptions with the grant (FACTS.md).
            #expect(revoked.jsonObject["subscriptions_removed"] as? Int == 1)
            let subscriptions = try Connection(url: sandbox.store.url).execute(
                "SELECT count(*) AS n FROM sb_webhook_subscriptions"
            ).single().int("n")
            #expect(subscriptions == 0)
            let (code401, requestID) = Self.failedRequestID { _ = try client.firm(.user(tokens.accessToken)) }
            #expect(code401 == .unauthorized)
            // Not retried: a token that is not accepted stays so.
            #expect(try sandbox.attempts(requestID).map { $0["status"] as? Int } == [401])
            #expect(Self.failedRequestID { _ = try client.refresh(tokens.refreshToken ?? "") }.0 == .invalidGrant)
        }
    }
}
