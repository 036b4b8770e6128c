import Foundation

/// Where Smokeball sends the browser back (the callback route) and where the callback then
/// sends the person (the settings page), with the seeds' names: `SMOKEBALL_REDIRECT_URI`
/// (default `SITE_URL` + the callback path) and `SMOKEBALL_RETURN_URL` (default `SITE_URL` +
/// `/settings/integrations`). The redirect URI must match the one registered at Smokeball
/// exactly, so it is used as given.
public struct OAuthRedirects: Sendable, Equatable {
    public static let callbackPath = "/api/v1/integrations/smokeball/callback"
    public static let returnPath = "/settings/integrations"

    public let redirectURI: String
    public let returnURL: String

    public init(redirectURI: String, returnURL: String) {
        self.redirectURI = redirectURI
        self.returnURL = returnURL
    }

    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> OAuthRedirects
    {
        func url(_ variable: String) throws(ConfigurationError) -> String? {
            guard let text = environment[variable], !text.isEmpty else { return nil }
            guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
                scheme == "https" || scheme == "http", components.host?.isEmpty == false, components.fragment == nil
            else { throw ConfigurationError(variable: variable, problem: "must be an absolute http(s) URL") }
            return text
        }
        let site = try url("SITE_URL").map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        guard let redirect = try url("SMOKEBALL_REDIRECT_URI") ?? site.map({ $0 + callbackPath }) else {
            throw ConfigurationError(variable: "SITE_URL", problem: "is not set (nor SMOKEBALL_REDIRECT_URI)")
        }
        guard let back = try url("SMOKEBALL_RETURN_URL") ?? site.map({ $0 + returnPath }) else {
            throw ConfigurationError(variable: "SITE_URL", problem: "is not set (nor SMOKEBALL_RETURN_URL)")
        }
        return OAuthRedirects(redirectURI: redirect, returnURL: back)
    }
}
