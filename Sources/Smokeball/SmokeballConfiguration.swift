import Foundation

/// The partner's Smokeball settings, read from the environment once at start.
///
/// Credentials may be absent (a server that is not connected to Smokeball): `credentials` is
/// then nil and the routes answer `503 not_configured`. Half a set of credentials is a mistake
/// and stops the process, naming the missing variable.
public struct SmokeballConfiguration: Sendable {
    /// What Smokeball issued to the partner. Never printed: see `description`.
    public struct Credentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        public let clientID: String
        public let clientSecret: String
        public let apiKey: String

        public init(clientID: String, clientSecret: String, apiKey: String) {
            self.clientID = clientID
            self.clientSecret = clientSecret
            self.apiKey = apiKey
        }

        /// The client id is not a secret (it appears in authorize URLs); the rest is withheld.
        public var description: String {
            "Credentials(clientID: \(clientID), clientSecret: <redacted>, apiKey: <redacted>)"
        }
        public var debugDescription: String { description }
    }

    public var credentials: Credentials?
    /// `SMOKEBALL_REGION` (default US): the region of a connection that names none.
    public var defaultRegion: SmokeballRegion
    /// `SMOKEBALL_STAGING=true`: Smokeball's staging hosts instead of production.
    public var staging: Bool
    /// `SMOKEBALL_AUTH_BASE_URL` / `SMOKEBALL_API_BASE_URL`: replace the published hosts of
    /// every region (the sandbox, a proxy).
    public var authBaseURLOverride: String?
    public var apiBaseURLOverride: String?
    /// `SMOKEBALL_RATE_PER_SECOND` / `SMOKEBALL_BURST` (defaults 5 and 5): the partner's bucket.
    public var ratePerSecond: Double
    public var burst: Double
    /// `SMOKEBALL_REFRESH_TOKEN_DAYS` (default 30): how long a refresh token lives. The token
    /// answer never says (FACTS.md), so the callback records issue time plus this.
    public var refreshTokenLifetime: TimeInterval = defaultRefreshTokenLifetime

    public static let defaultRatePerSecond = 5.0
    public static let defaultBurst = 5.0
    public static let defaultRefreshTokenLifetime: TimeInterval = 30 * 24 * 3600

    public init(
        credentials: Credentials?, defaultRegion: SmokeballRegion = .us, staging: Bool = false,
        authBaseURLOverride: String? = nil, apiBaseURLOverride: String? = nil,
        ratePerSecond: Double = defaultRatePerSecond, burst: Double = defaultBurst
    ) {
        self.credentials = credentials
        self.defaultRegion = defaultRegion
        self.staging = staging
        self.authBaseURLOverride = authBaseURLOverride
        self.apiBaseURLOverride = apiBaseURLOverride
        self.ratePerSecond = ratePerSecond
        self.burst = burst
    }

    public var isConfigured: Bool { credentials != nil }

    /// The base URLs for `region` (default: `defaultRegion`), overrides applied.
    public func endpoints(for region: SmokeballRegion? = nil) -> SmokeballEndpoints {
        let published = SmokeballEndpoints.published(region ?? defaultRegion, staging: staging)
        return SmokeballEndpoints(
            authBaseURL: authBaseURLOverride ?? published.authBaseURL,
            apiBaseURL: apiBaseURLOverride ?? published.apiBaseURL)
    }

    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(SmokeballConfigurationError) -> SmokeballConfiguration
    {
        func value(_ name: String) -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return text
        }
        let names = ["SMOKEBALL_CLIENT_ID", "SMOKEBALL_CLIENT_SECRET", "SMOKEBALL_API_KEY"]
        let given = names.map(value)
        var credentials: Credentials?
        if let clientID = given[0], let secret = given[1], let key = given[2] {
            credentials = Credentials(clientID: clientID, clientSecret: secret, apiKey: key)
        } else if let missing = zip(names, given).first(where: { $0.1 == nil }), given.contains(where: { $0 != nil }) {
            throw SmokeballConfigurationError(
                variable: missing.0, problem: "is not set, but other Smokeball credentials are")
        }
        var region = SmokeballRegion.us
        if let code = value("SMOKEBALL_REGION") {
            guard let parsed = SmokeballRegion(code: code) else {
                throw SmokeballConfigurationError(variable: "SMOKEBALL_REGION", problem: "must be US, AU or UK")
            }
            region = parsed
        }
        var staging = false
        if let flag = value("SMOKEBALL_STAGING") {
            switch flag.lowercased() {
            case "1", "true", "yes": staging = true
            case "0", "false", "no": staging = false
            default:
                throw SmokeballConfigurationError(variable: "SMOKEBALL_STAGING", problem: "must be true or false")
            }
        }
        func baseURL(_ name: String) throws(SmokeballConfigurationError) -> String? {
            guard let text = value(name) else { return nil }
            guard let components = URLComponents(string: text),
                components.scheme == "https" || components.scheme == "http",
                components.host?.isEmpty == false, components.query == nil, components.fragment == nil
            else {
                throw SmokeballConfigurationError(variable: name, problem: "must be an http(s) URL without a query")
            }
            return text
        }
        func positive(_ name: String, default fallback: Double, atLeast minimum: Double)
            throws(SmokeballConfigurationError) -> Double
        {
            guard let text = value(name) else { return fallback }
            guard let number = Double(text), number.isFinite, number >= minimum, number <= 1_000_000 else {
                throw SmokeballConfigurationError(
                    variable: name, problem: "must be a number from \(minimum) to 1000000")
            }
            return number
        }
        var configuration = SmokeballConfiguration(
            credentials: credentials, defaultRegion: region, staging: staging,
            authBaseURLOverride: try baseURL("SMOKEBALL_AUTH_BASE_URL"),
            apiBaseURLOverride: try baseURL("SMOKEBALL_API_BASE_URL"),
            ratePerSecond: try positive("SMOKEBALL_RATE_PER_SECOND", default: defaultRatePerSecond, atLeast: 0.001),
            burst: try positive("SMOKEBALL_BURST", default: defaultBurst, atLeast: 1))
        guard let days = Int(exactly: try positive("SMOKEBALL_REFRESH_TOKEN_DAYS", default: 30, atLeast: 1)),
            days <= 3650
        else {
            throw SmokeballConfigurationError(
                variable: "SMOKEBALL_REFRESH_TOKEN_DAYS", problem: "must be a whole number of days from 1 to 3650")
        }
        configuration.refreshTokenLifetime = TimeInterval(days) * 24 * 3600
        return configuration
    }
}

/// Names the setting and the problem, never its value.
public struct SmokeballConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let variable: String
    public let problem: String
    public var description: String { "\(variable) \(problem)" }
}
