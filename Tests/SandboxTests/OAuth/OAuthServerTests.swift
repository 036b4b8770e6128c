import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// The sandbox's auth server, as strict as Smokeball's Cognito where an integration could slip.
@Suite struct OAuthServerTests {
    typealias F = SandboxFixture

    @Test func pkceMatchesRFC7636AppendixB() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        #expect(Secrets.s256Challenge(verifier: verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        #expect(Secrets.isValidVerifier(verifier))
        #expect(!Secrets.isValidVerifier(String(verifier.prefix(42))))
        #expect(!Secrets.isValidVerifier(verifier + "+"))
    }

    @Test func theSignInPageEscapesWhatItEchoes() throws {
        let fixture = try F()
        let page = fixture.call(
            "GET", "/oauth2/authorize",
            query: [
                "response_type": "code", "client_id": F.clientID, "redirect_uri": F.redirectURI,
                "state": "<script>alert(1)</script>\"",
            ])
        #expect(page.status == .ok)
        let html = F.text(page)
        #expect(html.contains("<form method=\"post\" action=\"/oauth2/authorize\">"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;"))
        #expect(!html.contains("<script>"))
        #expect(page.header("X-Frame-Options") == "DENY")
    }

    /// Nothing may be sent to a redirect URI that is not registered: these answer an error page.
    @Test(arguments: [
        (["client_id": "nobody"], "Unknown client"),
        (["redirect_uri": "http://evil.test/callback"], "redirect_uri does not match"),
        (["redirect_uri": F.redirectURI + "/"], "redirect_uri does not match"),
        (["response_type": "token"], "response_type must be code"),
        (["code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "plain"], "S256"),
        (["code_challenge": "short", "code_challenge_method": "S256"], "code_challenge is malformed"),
    ])
    func badAuthorizeRequestsGetAnErrorPageAndNoRedirect(overrides: [String: String], message: String) throws {
        let fixture = try F()
        var query = ["response_type": "code", "client_id": F.clientID, "redirect_uri": F.redirectURI, "state": "s"]
        for (key, value) in overrides { query[key] = value }
        let page = fixture.call("GET", "/oauth2/authorize", query: query)
        #expect(page.status == .badRequest)
        #expect(page.header("Location") == nil)
        #expect(F.text(page).contains(message))
    }

    @Test func theCodeFlowWithPKCEIssuesTokensOnceForACode() throws {
        let fixture = try F()
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        let (redirect, query) = fixture.authorize(state: "xyz 1", challenge: Secrets.s256Challenge(verifier: verifier))
        #expect(redirect.status == .found)
        #expect(redirect.header("Location")?.hasPrefix(F.redirectURI + "?") == true)
        #expect(query["state"] == "xyz 1")
        let code = try #require(query["code"])

        let exchange: [(String, String)] = [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", F.redirectURI),
            ("code_verifier", verifier),
        ]
        let tokens = fixture.token(exchange)
        #expect(tokens.status == .ok)
        #expect(tokens.header("Cache-Control") == "no-store")
        let body = F.json(tokens)
        #expect(body["token_type"] as? String == "Bearer")
        #expect(body["expires_in"] as? Int == 3600)
        #expect((body["access_token"] as? String)?.isEmpty == false)
        #expect((body["refresh_token"] as? String)?.isEmpty == false)

        // Single use: the same code again is refused, and no second pair of tokens exists.
        let again = fixture.token(exchange)
        #expect(again.status == .badRequest)
        #expect(F.json(again)["error"] as? String == "invalid_grant")
        let issued = try Connection(url: fixture.databaseURL).execute("SELECT count(*)::int AS n FROM sb_tokens")
        #expect(try issued.single().int("n") == 2)
    }

    @Test(arguments: [
        ("code_verifier", "a-wrong-verifier-that-is-long-enough-to-be-well-formed-1234"),
        ("code_verifier", ""),
        ("redirect_uri", "http://127.0.0.1:8080/other"),
    ])
    func aCodeWithTheWrongVerifierOrRedirectIsRefused(field: String, value: String) throws {
        let fixture = try F()
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        let (_, query) = fixture.authorize(challenge: Secrets.s256Challenge(verifier: verifier))
        var fields: [(String, String)] = [
            ("grant_type", "authorization_code"), ("code", query["code"] ?? ""), ("redirect_uri", F.redirectURI),
            ("code_verifier", verifier),
        ]
        fields = fields.map { $0.0 == field ? ($0.0, value) : $0 }
        let refused = fixture.token(fields)
        #expect(refused.status == .badRequest)
        #expect(F.json(refused)["error"] as? String == "invalid_grant")
    }

    @Test func codesExpireAfterFiveMinutes() throws {
        let fixture = try F()
        let (_, query) = fixture.authorize()
        fixture.advance(by: 301)
        let late = fixture.token([
            ("grant_type", "authorization_code"), ("code", query["code"] ?? ""), ("redirect_uri", F.redirectURI),
        ])
        #expect(F.json(late)["error"] as? String == "invalid_grant")
    }

    @Test func clientAuthenticationIsBasicAndStrict() throws {
        let fixture = try F()
        let fields = [("grant_type", "client_credentials")]
        for authorization in [nil, F.basic(F.clientID, "wrong-secret"), F.basic("nobody", F.clientSecret), "Bearer x"] {
            let refused = fixture.token(fields, authorization: authorization)
            #expect(refused.status == .unauthorized)
            #expect(F.json(refused)["error"] as? String == "invalid_client")
            #expect(refused.header("WWW-Authenticate")?.hasPrefix("Basic") == true)
        }
        let granted = fixture.token(fields)
        #expect(granted.status == .ok)
        #expect(F.json(granted)["refresh_token"] == nil)

        let unsupported = fixture.token([("grant_type", "password")])
        #expect(F.json(unsupported)["error"] as? String == "unsupported_grant_type")
        let notAForm = fixture.call(
            "POST", "/oauth2/token", headers: ["content-type": "application/json", "authorization": F.basic()],
            body: Array(#"{"grant_type":"client_credentials"}"#.utf8))
        #expect(F.json(notAForm)["error"] as? String == "invalid_request")
    }

    @Test func aDeniedOrFailedSignInSendsNoCode() throws {
        let fixture = try F()
        let (wrong, wrongQuery) = fixture.authorize(password: "not the password")
        #expect(wrong.status == .unauthorized)
        #expect(wrongQuery.isEmpty)
        #expect(F.text(wrong).contains("Incorrect username or password."))

        let denied = fixture.call(
            "POST", "/oauth2/authorize", headers: ["content-type": "application/x-www-form-urlencoded"],
            body: F.form([
                ("response_type", "code"), ("client_id", F.clientID), ("redirect_uri", F.redirectURI),
                ("state", "st"), ("decision", "deny"),
            ]))
        #expect(denied.status == .found)
        #expect(F.redirectQuery(denied) == ["error": "access_denied", "state": "st"])
        let codes = try Connection(url: fixture.databaseURL).execute("SELECT count(*)::int AS n FROM sb_auth_codes")
        #expect(try codes.single().int("n") == 0)
    }

    @Test func refreshGivesANewAccessTokenUntilAccessIsRevoked() throws {
        let fixture = try F()
        let (access, refresh) = fixture.connect()
        let refreshed = fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)])
        #expect(refreshed.status == .ok)
        let body = F.json(refreshed)
        let newAccess = try #require(body["access_token"] as? String)
        #expect(newAccess != access)
        #expect(body["refresh_token"] == nil)
        #expect(fixture.api("GET", "/mattertypes", token: newAccess).status == .ok)

        let revoked = fixture.admin("POST", "/_sandbox/revoke", ["account_id": fixture.accountID.uuidString])
        #expect(F.json(revoked)["revoked"] as? Int == 3)
        #expect(fixture.api("GET", "/mattertypes", token: newAccess).status == .unauthorized)
        let afterRevoke = fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)])
        #expect(F.json(afterRevoke)["error"] as? String == "invalid_grant")
    }

    @Test func tokenLifetimesAreConfigurableSoTestsCanExpireThem() throws {
        let fixture = try F(accessTTL: 60, refreshTTL: 120)
        let (access, refresh) = fixture.connect()
        #expect(fixture.api("GET", "/mattertypes", token: access).status == .ok)
        fixture.advance(by: 61)
        #expect(fixture.api("GET", "/mattertypes", token: access).status == .unauthorized)
        #expect(fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)]).status == .ok)
        fixture.advance(by: 60)
        let expired = fixture.token([("grant_type", "refresh_token"), ("refresh_token", refresh)])
        #expect(F.json(expired)["error"] as? String == "invalid_grant")
    }
}
