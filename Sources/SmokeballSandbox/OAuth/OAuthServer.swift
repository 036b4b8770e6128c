import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL

/// Smokeball's auth server (AWS Cognito behind it): `/oauth2/authorize` signs a firm user in and
/// hands the client a single-use code; `/oauth2/token` exchanges codes, refresh tokens and client
/// credentials for tokens. As strict as Cognito where the integration could get it wrong: exact
/// redirect URIs, S256-only PKCE, Basic client authentication, single-use 5-minute codes.
struct OAuthServer {
    let database: Database
    let now: Date
    /// The `iss` of the tokens it issues: the sandbox's auth base URL as the caller reached it.
    var issuer = "http://localhost"

    static let codeLifetime: TimeInterval = 300

    func handle(_ request: Request) throws -> Response {
        switch (request.path, request.method) {
        case ("/oauth2/authorize", "GET"): return try authorizePage(request)
        case ("/oauth2/authorize", "POST"): return try authorizeDecision(request)
        case ("/oauth2/token", "POST"): return try token(request)
        case ("/oauth2/authorize", _):
            throw SandboxFailure.page(.methodNotAllowed, "Use GET or POST")
        default:
            throw SandboxFailure.oauth(.methodNotAllowed, "invalid_request", "Use POST")
        }
    }

    // MARK: Authorize

    /// The parameters of an authorization request, checked in the order that decides whether
    /// redirecting back is safe: nothing is sent to a redirect URI that is not registered.
    struct AuthorizeRequest {
        let clientID: String
        let redirectURI: String
        let state: String?
        let codeChallenge: String?

        static func parse(_ fields: [String: String], connection: Connection) throws -> AuthorizeRequest {
            guard let clientID = fields["client_id"], !clientID.isEmpty else {
                throw SandboxFailure.page(.badRequest, "client_id is missing")
            }
            let redirectURI = fields["redirect_uri"] ?? ""
            let client = try connection.execute(
                "SELECT $2 = ANY (redirect_uris) AS registered FROM sb_clients WHERE client_id = $1",
                [clientID, redirectURI]
            ).first
            guard let client else { throw SandboxFailure.page(.badRequest, "Unknown client") }
            guard !redirectURI.isEmpty else { throw SandboxFailure.page(.badRequest, "redirect_uri is missing") }
            guard try client.bool("registered") else {
                throw SandboxFailure.page(.badRequest, "redirect_uri does not match a registered URI")
            }
            guard fields["response_type"] == "code" else {
                throw SandboxFailure.page(.badRequest, "response_type must be code")
            }
            var challenge: String?
            if let value = fields["code_challenge"], !value.isEmpty {
                guard fields["code_challenge_method"] == "S256" else {
                    throw SandboxFailure.page(.badRequest, "code_challenge_method must be S256")
                }
                // base64url of 32 bytes, unpadded.
                guard value.utf8.count == 43, Base64URLShape.isValid(value) else {
                    throw SandboxFailure.page(.badRequest, "code_challenge is malformed")
                }
                challenge = value
            } else if fields["code_challenge_method"] != nil {
                throw SandboxFailure.page(.badRequest, "code_challenge is missing")
            }
            return AuthorizeRequest(
                clientID: clientID, redirectURI: redirectURI, state: fields["state"], codeChallenge: challenge)
        }

        var hiddenFields: [(String, String)] {
            var fields = [("response_type", "code"), ("client_id", clientID), ("redirect_uri", redirectURI)]
            if let state { fields.append(("state", state)) }
            if let codeChallenge {
                fields += [("code_challenge", codeChallenge), ("code_challenge_method", "S256")]
            }
            return fields
        }

        /// `scheme://host[:port]` of the redirect URI for the sign-in page's form-action; nil unless
        /// it is http(s) with a plain host, so nothing else can reach the CSP header.
        var redirectOrigin: String? {
            guard let components = URLComponents(string: redirectURI),
                let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
                let host = components.host, !host.isEmpty,
                host.unicodeScalars.allSatisfy({
                    $0.isASCII && (CharacterSet.alphanumerics.contains($0) || ".-:".unicodeScalars.contains($0))
                })
            else { return nil }
            let bracketed = host.contains(":") ? "[" + host + "]" : host
            return scheme + "://" + bracketed.lowercased() + (components.port.map { ":\($0)" } ?? "")
        }

        func redirect(_ parameters: [(String, String)]) -> Response {
            var all = parameters
            if let state { all.append(("state", state)) }
            let query = all.map { "\(PercentEncoding.encode($0.0))=\(PercentEncoding.encode($0.1))" }.joined(
                separator: "&")
            return Response.redirect(to: redirectURI + (redirectURI.contains("?") ? "&" : "?") + query)
        }
    }

    func authorizePage(_ request: Request) throws -> Response {
        let parsed = try database.withConnection { try AuthorizeRequest.parse(request.query, connection: $0) }
        return signInPage(parsed, status: .ok, message: nil)
    }

    func signInPage(_ parsed: AuthorizeRequest, status: HTTPStatus, message: String?) -> Response {
        let hidden = parsed.hiddenFields.map {
            "<input type=\"hidden\" name=\"\(HTMLPage.escape($0.0))\" value=\"\(HTMLPage.escape($0.1))\">"
        }.joined(separator: "\n")
        let notice = message.map { "<p id=\"error\" role=\"alert\">\(HTMLPage.escape($0))</p>" } ?? ""
        let body = """
            <h1>Sign in to Smokeball (sandbox)</h1>
            <p>Client <strong>\(HTMLPage.escape(parsed.clientID))</strong> asks for access to your firm's Smokeball data.</p>
            \(notice)
            <form method="post" action="/oauth2/authorize">
            \(hidden)
            <label>Email <input type="email" name="username" autocomplete="username" required></label>
            <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
            <button type="submit" name="decision" value="allow">Sign in and allow</button>
            <button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
            </form>
            """
        return HTMLPage.response(
            status: status, title: "Sign in to Smokeball", body: body,
            formTargets: parsed.redirectOrigin.map { [$0] } ?? [])
    }

    func authorizeDecision(_ request: Request) throws -> Response {
        guard let form = request.formFields else {
            throw SandboxFailure.page(.unsupportedMediaType, "Expected a form submission")
        }
        return try database.transaction { connection in
            let parsed = try AuthorizeRequest.parse(form, connection: connection)
            if form["decision"] == "deny" {
                return parsed.redirect([("error", "access_denied")])
            }
            let email = (form["username"] ?? "").lowercased()
            let user = try connection.execute(
                "SELECT id, password_salt, password_digest FROM sb_users WHERE email = $1", [email]
            ).first
            guard let user,
                ConstantTime.equals(
                    Secrets.passwordDigest(form["password"] ?? "", salt: try user.bytes("password_salt")),
                    try user.bytes("password_digest"))
            else {
                return signInPage(parsed, status: .unauthorized, message: "Incorrect username or password.")
            }
            let code = Secrets.newToken()
            try connection.execute(
                """
                INSERT INTO sb_auth_codes (code_sha256, client_id, user_id, redirect_uri, code_challenge, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                [
                    Secrets.digest(code), parsed.clientID, try user.uuid("id"), parsed.redirectURI,
                    parsed.codeChallenge, now.addingTimeInterval(Self.codeLifetime),
                ])
            return parsed.redirect([("code", code)])
        }
    }

    // MARK: Token

    struct Client {
        let id: String
        let accessTTL: Int64
        let refreshTTL: Int64
    }

    /// Basic authentication of the client; a wrong secret is indistinguishable from an unknown id.
    func authenticateClient(_ request: Request, connection: Connection) throws -> Client {
        let challenge = [("WWW-Authenticate", "Basic realm=\"smokeball-sandbox\"")]
        guard let credentials = Secrets.basicCredentials(request.header("authorization")) else {
            throw SandboxFailure.oauth(
                .unauthorized, "invalid_client", "Client authentication failed", headers: challenge)
        }
        let row = try connection.execute(
            "SELECT secret_sha256, access_ttl_seconds, refresh_ttl_seconds FROM sb_clients WHERE client_id = $1",
            [credentials.id]
        ).first
        guard let row, ConstantTime.equals(Secrets.digest(credentials.secret), try row.bytes("secret_sha256"))
        else {
            throw SandboxFailure.oauth(
                .unauthorized, "invalid_client", "Client authentication failed", headers: challenge)
        }
        return Client(
            id: credentials.id, accessTTL: try row.int("access_ttl_seconds"),
            refreshTTL: try row.int("refresh_ttl_seconds"))
    }

    func token(_ request: Request) throws -> Response {
        guard let form = request.formFields else {
            throw SandboxFailure.oauth(
                .badRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        }
        return try database.transaction { connection in
            let client = try authenticateClient(request, connection: connection)
            if let bodyClient = form["client_id"], bodyClient != client.id {
                throw SandboxFailure.oauth(.badRequest, "invalid_client", "client_id does not match the credentials")
            }
            switch form["grant_type"] {
            case "authorization_code": return try exchangeCode(form, client: client, connection: connection)
            case "refresh_token": return try refresh(form, client: client, connection: connection)
            case "client_credentials":
                let access = try issueAccess(client: client, account: nil, signIn: nil, connection: connection)
                return tokenResponse(["access_token": access, "token_type": "Bearer", "expires_in": client.accessTTL])
            case nil, "":
                throw SandboxFailure.oauth(.badRequest, "invalid_request", "grant_type is missing")
            default:
                throw SandboxFailure.oauth(.badRequest, "unsupported_grant_type", "Unsupported grant_type")
            }
        }
    }

    func exchangeCode(_ form: [String: String], client: Client, connection: Connection) throws -> Response {
        guard let code = form["code"], !code.isEmpty else {
            throw SandboxFailure.oauth(.badRequest, "invalid_request", "code is missing")
        }
        // Marking the code used and reading it is one statement, so two racing exchanges of the
        // same code cannot both succeed.
        let row = try connection.execute(
            """
            UPDATE sb_auth_codes c SET used_at = $3
            WHERE c.code_sha256 = $1 AND c.client_id = $2 AND c.used_at IS NULL AND c.expires_at > $3
            RETURNING c.user_id, c.redirect_uri, c.code_challenge,
                      (SELECT u.account_id FROM sb_users u WHERE u.id = c.user_id) AS account_id
            """, [Secrets.digest(code), client.id, now]
        ).first
        guard let row else { throw SandboxFailure.oauth(.badRequest, "invalid_grant", "Invalid authorization code") }
        guard form["redirect_uri"] == (try row.string("redirect_uri")) else {
            throw SandboxFailure.oauth(.badRequest, "invalid_grant", "redirect_uri does not match")
        }
        if let challenge = try row.optionalString("code_challenge") {
            guard let verifier = form["code_verifier"], Secrets.isValidVerifier(verifier),
                ConstantTime.equals(
                    Array(Secrets.s256Challenge(verifier: verifier).utf8), Array(challenge.utf8))
            else { throw SandboxFailure.oauth(.badRequest, "invalid_grant", "code_verifier does not match") }
        }
        let account = try row.uuid("account_id")
        // The sign-in: every access token refreshed from this grant repeats these claims.
        let signIn = CognitoAccessToken.SignIn(
            user: try row.uuid("user_id"), authTime: now, originJTI: UUID(), eventID: UUID())
        let access = try issueAccess(client: client, account: account, signIn: signIn, connection: connection)
        let refresh = try issueRefresh(client: client, account: account, signIn: signIn, connection: connection)
        return tokenResponse([
            "access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": client.accessTTL,
        ])
    }

    /// A refresh answers a new access token and no new refresh token, as Smokeball does.
    func refresh(_ form: [String: String], client: Client, connection: Connection) throws -> Response {
        guard let token = form["refresh_token"], !token.isEmpty else {
            throw SandboxFailure.oauth(.badRequest, "invalid_request", "refresh_token is missing")
        }
        let row = try connection.execute(
            """
            SELECT account_id, user_id, auth_time, origin_jti, event_id FROM sb_tokens
            WHERE token_sha256 = $1 AND kind = 'refresh' AND client_id = $2 AND revoked_at IS NULL AND expires_at > $3
            """, [Secrets.digest(token), client.id, now]
        ).first
        guard let row else { throw SandboxFailure.oauth(.badRequest, "invalid_grant", "Invalid refresh token") }
        let signIn = try row.optionalUUID("user_id").map { user in
            CognitoAccessToken.SignIn(
                user: user, authTime: try row.optionalDate("auth_time") ?? now,
                originJTI: try row.optionalUUID("origin_jti") ?? UUID(),
                eventID: try row.optionalUUID("event_id") ?? UUID())
        }
        let access = try issueAccess(
            client: client, account: try row.optionalUUID("account_id"), signIn: signIn, connection: connection)
        return tokenResponse(["access_token": access, "token_type": "Bearer", "expires_in": client.accessTTL])
    }

    enum TokenKind: String {
        case access, refresh
    }

    /// A Cognito-shaped JWT (see `CognitoAccessToken`); only its digest is stored.
    func issueAccess(client: Client, account: UUID?, signIn: CognitoAccessToken.SignIn?, connection: Connection)
        throws -> String
    {
        let claims = CognitoAccessToken.claims(
            clientID: client.id, signIn: signIn, issuer: issuer, issuedAt: now, lifetime: client.accessTTL)
        let token = try CognitoAccessToken.sign(claims, connection: connection)
        try store(token, kind: .access, client: client, account: account, signIn: signIn, connection: connection)
        return token
    }

    /// Refresh tokens stay opaque, as Cognito's are (to the client).
    func issueRefresh(client: Client, account: UUID, signIn: CognitoAccessToken.SignIn, connection: Connection)
        throws -> String
    {
        let token = Secrets.newToken()
        try store(token, kind: .refresh, client: client, account: account, signIn: signIn, connection: connection)
        return token
    }

    func store(
        _ token: String, kind: TokenKind, client: Client, account: UUID?, signIn: CognitoAccessToken.SignIn?,
        connection: Connection
    ) throws {
        let ttl = kind == .access ? client.accessTTL : client.refreshTTL
        try connection.execute(
            """
            INSERT INTO sb_tokens (token_sha256, kind, client_id, account_id, user_id, expires_at, auth_time, origin_jti,
                                   event_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            """,
            [
                Secrets.digest(token), kind.rawValue, client.id, account, signIn?.user,
                now.addingTimeInterval(TimeInterval(ttl)),
                signIn?.authTime, signIn?.originJTI, signIn?.eventID,
            ])
    }

    func tokenResponse(_ fields: [String: Any]) -> Response {
        Response.json(fields, headers: [("Cache-Control", "no-store"), ("Pragma", "no-cache")])
    }
}

enum Base64URLShape {
    static func isValid(_ text: String) -> Bool {
        text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                true
            default: false
            }
        }
    }
}
