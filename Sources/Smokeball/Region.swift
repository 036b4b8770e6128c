import Basics

/// Smokeball's regions. Each has its own auth server and API host (FACTS.md "Hosts"); a firm's
/// data lives in one of them, so every base URL is chosen per region, never hard-coded.
public enum SmokeballRegion: String, Sendable, CaseIterable, Codable {
    case us = "US"
    case au = "AU"
    case uk = "UK"

    /// `US`, `au`, ... (case-insensitive); nil for anything else.
    public init?(code: String) {
        self.init(rawValue: code.uppercased())
    }

    var domainSuffix: String {
        switch self {
        case .us: "com"
        case .au: "com.au"
        case .uk: "co.uk"
        }
    }
}

/// Where the auth server and the API of one region live. Paths are appended to these bases, so
/// the sandbox (one origin for both) and real Smokeball go through the same code.
public struct SmokeballEndpoints: Sendable, Equatable {
    public var authBaseURL: String
    public var apiBaseURL: String

    public init(authBaseURL: String, apiBaseURL: String) {
        self.authBaseURL = Self.trimmed(authBaseURL)
        self.apiBaseURL = Self.trimmed(apiBaseURL)
    }

    /// Smokeball's published hosts: production, or staging (`datastaging-auth`, `stagingapi`).
    public static func published(_ region: SmokeballRegion, staging: Bool = false) -> SmokeballEndpoints {
        let suffix = region.domainSuffix
        return staging
            ? SmokeballEndpoints(
                authBaseURL: "https://datastaging-auth.smokeball.\(suffix)",
                apiBaseURL: "https://stagingapi.smokeball.\(suffix)")
            : SmokeballEndpoints(
                authBaseURL: "https://auth.smokeball.\(suffix)", apiBaseURL: "https://api.smokeball.\(suffix)")
    }

    public var authorizeURL: String { authBaseURL + "/oauth2/authorize" }

    /// Where the browser goes to sign in: `response_type=code`, the client id, the exact
    /// redirect URI, the state and an S256 challenge. No `scope`: Smokeball grants the client's
    /// scopes and asks integrators not to send one.
    public func authorizeURL(clientID: String, redirectURI: String, state: String, codeChallenge: String) -> String {
        URLQuery.build(
            base: authorizeURL,
            [
                ("response_type", "code"), ("client_id", clientID), ("redirect_uri", redirectURI), ("state", state),
                ("code_challenge_method", PKCE.method), ("code_challenge", codeChallenge),
            ])
    }
    public var tokenURL: String { authBaseURL + "/oauth2/token" }

    private static func trimmed(_ url: String) -> String {
        var url = url
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }
}
