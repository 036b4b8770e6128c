import Foundation

/// Where Smokeball sends the browser back (the callback route), where the callback then sends
/// the person (the settings page) and where Smokeball posts webhook events, with the seeds' names: `SMOKEBALL_REDIRECT_URI`
/// (default `SITE_URL` + the callback path) and `SMOKEBALL_RETURN_URL` (default `SITE_URL` +
/// `/settings/integrations`). The redirect URI must match the one registered at Smokeball
/// exactly, so it is used as given.
public struct OAuthRedirects: Sendable, Equatable {
    public static let callbackPath = "/api/v1/integrations/smokeball/callback"
    public static let returnPath = "/settings/integrations"
    public static let webhookPath = "/api/v1/integrations/smokeball/webhooks"

    public let redirectURI: String
    public let returnURL: String
    /// Where Smokeball delivers the firm's webhook events: `SMOKEBALL_WEBHOOK_URL`, default
    /// `SITE_URL` + the webhooks route. The subscription that points here is the firm's.
    public let webhookURL: String

    public init(redirectURI: String, returnURL: String, webhookURL: String) {
        self.redirectURI = redirectURI
        self.returnURL = returnURL
        self.webhookURL = webhookURL
    }

    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> OAuthRedirects
    {
        let site = try siteURL(environment)
        guard let redirect = try url("SMOKEBALL_REDIRECT_URI", environment) ?? site.map({ $0 + callbackPath }) else {
            throw ConfigurationError(variable: "SITE_URL", problem: "is not set (nor SMOKEBALL_REDIRECT_URI)")
        }
        guard let back = try url("SMOKEBALL_RETURN_URL", environment) ?? site.map({ $0 + returnPath }) else {
            throw ConfigurationError(variable: "SITE_URL", problem: "is not set (nor SMOKEBALL_RETURN_URL)")
        }
        return OAuthRedirects(redirectURI: redirect, returnURL: back, webhookURL: try webhookURL(environment))
    }

    /// Only the webhook address (the worker needs no browser redirects).
    public static func webhookURL(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> String
    {
        let site = try siteURL(environment)
        guard let webhooks = try url("SMOKEBALL_WEBHOOK_URL", environment) ?? site.map({ $0 + webhookPath }) else {
            throw ConfigurationError(variable: "SITE_URL", problem: "is not set (nor SMOKEBALL_WEBHOOK_URL)")
        }
        return webhooks
    }

    static func siteURL(_ environment: [String: String]) throws(ConfigurationError) -> String? {
        try url("SITE_URL", environment).map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    static func url(_ variable: String, _ environment: [String: String]) throws(ConfigurationError) -> String? {
        guard let text = environment[variable], !text.isEmpty else { return nil }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "https" || scheme == "http", components.host?.isEmpty == false, components.fragment == nil
        else { throw ConfigurationError(variable: variable, problem: "must be an absolute http(s) URL") }
        return text
    }
}
