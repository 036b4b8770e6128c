import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// `GET`/`POST /api/v1/integrations/smokeball/connect`: a firm admin starts connecting the firm's
/// Smokeball account. Stores a single-use state (only its SHA-256) with a sealed PKCE verifier,
/// then answers 302 to Smokeball's authorize page, or, for `Accept: application/json`, 200 with
/// the URL. The caller is the Bearer JWT's user, or the same JWT in the `casehug_session` cookie,
/// so that a plain link in the browser works.
public struct ConnectHandler: DatabaseHandler {
    public let route = "connect"
    public let database: Database
    let authenticator: Authenticator
    let smokeball: SmokeballConfiguration
    let vault: TokenVault
    let redirects: OAuthRedirects

    public init(
        authenticator: Authenticator, database: Database, smokeball: SmokeballConfiguration, vault: TokenVault,
        redirects: OAuthRedirects
    ) {
        self.authenticator = authenticator
        self.database = database
        self.smokeball = smokeball
        self.vault = vault
        self.redirects = redirects
    }

    /// A connect route cannot seal the PKCE verifier without `TOKEN_ENCRYPTION_KEY`, nor name its
    /// callback without `SITE_URL`: both stop it at start. Missing Smokeball credentials do not;
    /// the route then answers 503 `not_configured`, as the FAQ describes.
    public init(configuration: Configuration) throws {
        self.init(
            authenticator: Authenticator(configuration: configuration),
            database: Database(
                url: configuration.databaseURL, applicationName: "casehug-connect",
                options: configuration.databaseOptions),
            smokeball: try SmokeballConfiguration.fromEnvironment(),
            vault: try TokenVault(configuration: configuration),
            redirects: try OAuthRedirects.fromEnvironment())
    }

    /// 200 `{authorize_url, expires_at}` for callers that asked for JSON.
    struct Answer: Encodable {
        let authorizeURL: String
        let expiresAt: Date

        enum CodingKeys: String, CodingKey {
            case authorizeURL = "authorize_url"
            case expiresAt = "expires_at"
        }
    }

    static let notConfigured = HTTPError(
        .serviceUnavailable, code: "not_configured", "Smokeball integration is not configured")

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        guard request.method == "GET" || request.method == "POST" else {
            throw HTTPError.methodNotAllowed(allowed: ["GET", "POST"])
        }
        let userID = try authenticator.userID(for: request, acceptingSessionCookie: true)
        guard let credentials = smokeball.credentials else { throw Self.notConfigured }
        let region: SmokeballRegion
        if let code = request.queryValues("region").first {
            guard let chosen = SmokeballRegion(code: code) else {
                throw HTTPError(.badRequest, code: "invalid_region", "region must be US, AU or UK")
            }
            region = chosen
        } else {
            region = smokeball.defaultRegion
        }
        // The state travels through the browser; only its hash is stored, so a database read
        // cannot replay a flow. The verifier stays here, sealed to the firm.
        let stateBytes = SecureRandom.bytes(32)
        let state = Base64URL.encode(stateBytes)
        let verifier = PKCE.verifier()
        let expiresAt: Date = try database.transaction { connection in
            let caller = try Tenancy.enter(connection, userID: userID)
            guard caller.isFirmAdmin else {
                throw HTTPError(.forbidden, code: "forbidden", "Only firm administrators can connect Smokeball")
            }
            let sealed = try vault.seal(verifier, firmID: caller.firmID, platform: "smokeball", column: .codeVerifier)
            return try connection.execute(
                "SELECT app_create_oauth_state($1, $2, $3) AS expires_at",
                [SHA256.hash(stateBytes), sealed, region.rawValue]
            ).single().date("expires_at")
        }
        let url = smokeball.endpoints(for: region).authorizeURL(
            clientID: credentials.clientID, redirectURI: redirects.redirectURI, state: state,
            codeChallenge: PKCE.challenge(for: verifier))
        context.log.info("connect_started", ["region": region.rawValue])
        if request.header("accept")?.lowercased().contains("application/json") == true {
            return try Response.json(encoding: Answer(authorizeURL: url, expiresAt: expiresAt))
        }
        return Response.redirect(to: url)
    }
}
