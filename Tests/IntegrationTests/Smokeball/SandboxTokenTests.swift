import Basics
import Foundation
import HTTPClient
import PostgreSQL
import Smokeball
import TestSupport
import Testing

/// What the client learns from the sandbox's Cognito-shaped tokens, and the token endpoint's
/// injected faults as the request log counts them, over real HTTP through nginx.
@Suite(.serialized) struct SandboxTokenTests {
    @Test("a user's access token names the staff member who signed in, as Cognito's does")
    func theAccessTokenNamesTheSigningInStaffMember() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let verifier = PKCE.verifier()
            let code = try sandbox.signIn(client, state: "who", challenge: PKCE.challenge(for: verifier))
            let tokens = try client.exchangeCode(
                code, redirectURI: SmokeballSandbox.redirectURI, codeVerifier: verifier)
            let userID = try #require(AccessTokenClaims.userID(tokens.accessToken))
            let member = try #require(try client.staffMember(userID: userID, access: .user(tokens.accessToken)))
            #expect(member.email == SmokeballSandbox.email)
            // The user's id is not the staff member's id, as on Smokeball.
            #expect(member.id != userID)
            #expect(throws: SmokeballError.self) {
                try client.staffMember(id: userID, access: .user(tokens.accessToken))
            }
            // A refreshed token names the same user.
            let refreshed = try client.refresh(try #require(tokens.refreshToken))
            #expect(AccessTokenClaims.userID(refreshed.accessToken) == userID)
        }
    }

    /// The faults the callback and refresh tests inject on `/oauth2/token`: a 500, a slow answer
    /// (the client times out) and a dropped connection; each is one logged token request.
    @Test("token-endpoint faults (500, timeout, dropped connection) are each one logged token request")
    func tokenEndpointFaultsAreLogged() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client(retry: RetryPolicy(maxAttempts: 1, baseDelay: 0.01, maxDelay: 0.01))
            try sandbox.addFault(["path_prefix": "/oauth2/token", "status": 500])
            #expect(
                SmokeballClientSandboxTests.failedRequestID { _ = try client.clientCredentials() }.0 == .unavailable)
            try sandbox.clearFaults()
            try sandbox.addFault(["path_prefix": "/oauth2/token", "latency_ms": 900])
            client.requestTimeout = 0.3
            #expect(SmokeballClientSandboxTests.failedRequestID { _ = try client.clientCredentials() }.0 == .timedOut)
            client.requestTimeout = 30
            try sandbox.clearFaults()
            try sandbox.addFault(["path_prefix": "/oauth2/token", "drop_connection": true])
            #expect(
                SmokeballClientSandboxTests.failedRequestID { _ = try client.refresh("any-token") }.0 == .unavailable)
            try sandbox.clearFaults()

            // The slow call is logged when its answer is written, after the client gave up.
            let query = "/_sandbox/counters?client_id=\(SmokeballSandbox.clientID)&path=/oauth2/token"
            var counts: [String: Int] = [:]
            try Processes.waitFor("the slow token call to be logged") {
                let counters = try sandbox.service.send("GET", query, base: sandbox.url).jsonObject
                counts = counters["by_grant_type_status"] as? [String: Int] ?? [:]
                return counts.values.reduce(0, +) >= 3
            }
            #expect(counts == ["client_credentials 500": 1, "client_credentials 200": 1, "refresh_token 0": 1])
            // And the endpoint answers again once the dropped worker is replaced.
            try Processes.waitFor("the token endpoint to answer again") {
                (try? client.clientCredentials()) != nil
            }
        }
    }
}
