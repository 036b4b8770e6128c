import Cryptography
import Foundation
import PostgreSQL

/// An access token as Smokeball's Cognito writes one: a signed JWT whose claims an integration
/// reads without verifying (Smokeball has no current-user endpoint, so `username` is how it
/// learns who signed in). Signed HS256 with the sandbox's key (`sb_signing_key`): Cognito signs
/// RS256, but the integration never verifies, and the Cryptography module has HS256 only.
/// The token's digest is still what the sandbox stores and looks up; its claims decide nothing.
enum CognitoAccessToken {
    /// Smokeball's scope names are not published; Cognito grants every scope the client has
    /// when none is asked for, and client-credentials tokens carry custom scopes only.
    static let userScope = "openid email smokeball-sandbox/api"
    static let clientScope = "smokeball-sandbox/api"

    /// The sign-in a user token descends from: every access token refreshed from it repeats
    /// these (Cognito keeps `auth_time`, `origin_jti` and `event_id` across refreshes).
    struct SignIn {
        let user: UUID
        let authTime: Date
        let originJTI: UUID
        let eventID: UUID
    }

    /// The claims of a Cognito access token: a user token names the user in `sub` and
    /// `username` (the staff member's `userId`); a client-credentials token (`signIn` nil) has
    /// `sub` = the client id and no `username`. `jti` is new every time, so no two are alike.
    static func claims(clientID: String, signIn: SignIn?, issuer: String, issuedAt: Date, lifetime: Int64)
        -> [String: Any]
    {
        let iat = Int64(issuedAt.timeIntervalSince1970.rounded(.down))
        var claims: [String: Any] = [
            "client_id": clientID, "token_use": "access", "iss": issuer, "version": 2, "iat": iat,
            "exp": iat + lifetime, "jti": UUID().uuidString.lowercased(),
        ]
        if let signIn {
            let user = signIn.user.uuidString.lowercased()
            claims["sub"] = user
            claims["username"] = user
            claims["scope"] = userScope
            claims["auth_time"] = Int64(signIn.authTime.timeIntervalSince1970.rounded(.down))
            claims["origin_jti"] = signIn.originJTI.uuidString.lowercased()
            claims["event_id"] = signIn.eventID.uuidString.lowercased()
        } else {
            claims["sub"] = clientID
            claims["scope"] = clientScope
            claims["auth_time"] = iat
        }
        return claims
    }

    static func sign(_ claims: [String: Any], connection: Connection) throws -> String {
        JWT.signHS256(claims: claims, secret: try signingKey(connection))
    }

    /// The sandbox's signing key (made by the migration, the same for every process).
    static func signingKey(_ connection: Connection) throws -> [UInt8] {
        try connection.execute("SELECT secret FROM sb_signing_key WHERE id = 1").single().bytes("secret")
    }
}
