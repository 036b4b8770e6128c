import FastCGI
import Foundation
import Testing

@testable import Integration

/// The `casehug_session` cookie: the same JWT, for a plain browser link to connect.
@Suite struct SessionCookieTests {
    static func request(headers: [String: String]) -> Request {
        Request(method: "GET", path: "/", headers: headers, body: [], requestID: "t")
    }

    @Test func cookiesAreReadByExactNameWithQuotesAndSpacesRemoved() {
        let request = Self.request(headers: ["cookie": #"theme=dark;  casehug_session="abc.def" ; other=1; x"#])
        #expect(request.cookie("casehug_session") == "abc.def")
        #expect(request.cookie("theme") == "dark")
        #expect(request.cookie("other") == "1")
        #expect(request.cookie("Casehug_Session") == nil)
        #expect(request.cookie("x") == nil)
        #expect(Self.request(headers: [:]).cookie("theme") == nil)
    }

    @Test func theSessionCookieIsAcceptedOnlyWhereTheRouteAllowsIt() throws {
        let user = UUID()
        let token = TestEnvironment.token(subject: user.uuidString)
        let authenticator = Authenticator(secret: Array(TestEnvironment.jwtSecret.utf8))
        let request = Self.request(headers: ["cookie": "casehug_session=\(token)"])
        #expect(try authenticator.userID(for: request, acceptingSessionCookie: true) == user)
        #expect(throws: HTTPError.self) { try authenticator.userID(for: request) }
    }

    @Test func anAuthorizationHeaderWinsOverTheCookieAndABadCookieIsRefused() throws {
        let headerUser = UUID()
        let authenticator = Authenticator(secret: Array(TestEnvironment.jwtSecret.utf8))
        let both = Self.request(headers: [
            "authorization": "Bearer " + TestEnvironment.token(subject: headerUser.uuidString),
            "cookie": "casehug_session=" + TestEnvironment.token(subject: UUID().uuidString),
        ])
        #expect(try authenticator.userID(for: both, acceptingSessionCookie: true) == headerUser)
        let forged = Self.request(headers: [
            "cookie": "casehug_session="
                + TestEnvironment.token(subject: UUID().uuidString, secret: String(repeating: "x", count: 40))
        ])
        let error = #expect(throws: HTTPError.self) {
            try authenticator.userID(for: forged, acceptingSessionCookie: true)
        }
        #expect(error?.code == "invalid_token")
    }
}
