import Foundation

/// One JSON decoder and encoder configuration for every Smokeball body (the spec's camelCase
/// names are spelled out in the models, so no key strategy applies).
enum JSONDecoderFactory {
    static var decoder: JSONDecoder { JSONDecoder() }
    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}

/// `POST /oauth2/token`'s answer. A refresh answers no `refresh_token` (FACTS.md), and the refresh
/// token's lifetime is never in it. Printing it shows no token.
public struct TokenResponse: Decodable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessToken: String
    public var refreshToken: String?
    public var tokenType: String
    public var expiresIn: Int

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token"
        case refreshToken = "refresh_token"
        case tokenType = "token_type"
        case expiresIn = "expires_in"
    }

    public init(accessToken: String, refreshToken: String?, tokenType: String, expiresIn: Int) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.tokenType = tokenType
        self.expiresIn = expiresIn
    }

    public var description: String {
        "TokenResponse(tokenType: \(tokenType), expiresIn: \(expiresIn), refreshToken: \(refreshToken == nil ? "none" : "<redacted>"))"
    }
    public var debugDescription: String { description }
}

/// The spec's `Link`: what a 202 answers (`{id, href, relation, method}`).
public struct Link: Codable, Sendable, Equatable {
    public var id: String?
    public var href: String?
    public var relation: String?
    public var method: String?
}

/// A write Smokeball accepted (202, processed later) or answered at once: the new resource's id
/// from the Link body, else the last path segment of `Location`.
public struct Accepted: Sendable, Equatable {
    public var id: String?
    public var href: String?
}

/// The spec's paged envelope (`*PagedCollection`): `value` holds the items, `size` the total.
public struct PagedCollection<Item: Decodable & Sendable>: Decodable, Sendable {
    public var value: [Item]?
    public var offset: Int?
    public var limit: Int?
    public var size: Int?
}

/// `GET /firm`.
public struct Firm: Decodable, Sendable, Equatable {
    public struct Status: Decodable, Sendable, Equatable {
        public var status: String?
        public var statusMessage: String?
    }

    public var id: String?
    public var versionId: String?
    public var owner: String?
    public var name: String?
    public var status: Status?
    public var productId: String?
    public var email: String?
    public var streetAddress: Address?
    public var mailingAddress: Address?

    /// The part of a `FirmAddress` the integration reads.
    public struct Address: Decodable, Sendable, Equatable {
        /// State, province or region (US: IL; AU: NSW): the location of the firm's matter types.
        public var state: String?
    }
}

/// `GET /staff`, `GET /staff/{id}`.
public struct Staff: Decodable, Sendable, Equatable {
    public var id: String?
    public var versionId: String?
    public var title: String?
    public var firstName: String?
    public var middleName: String?
    public var lastName: String?
    public var initials: String?
    public var email: String?
    public var role: String?
    public var former: Bool?
    public var enabled: Bool?
    /// The user behind the staff member (a staff member who can sign in has one).
    public var userId: String?
}

/// `GET /webhooks[/{id}]`, and what POST and PUT answer. The `key` is never returned.
public struct WebhookSubscription: Decodable, Sendable, Equatable {
    public var id: String?
    public var href: String?
    public var accountId: String?
    public var name: String?
    public var eventTypes: [String]?
    public var eventNotificationUrl: String?
    public var createdDateUtc: String?
    public var updatedDateUtc: String?
    public var lastUpdated: Int64?
}

/// The spec's `WebhookSubscriptionDto`: the body of POST /webhooks and PUT /webhooks/{id}.
/// Printing it withholds the signing key.
public struct WebhookSubscriptionRequest: Encodable, Sendable, CustomStringConvertible,
    CustomDebugStringConvertible
{
    public var name: String
    public var eventTypes: [String]
    public var eventNotificationUrl: String
    public var key: String?

    public init(name: String, eventTypes: [String], eventNotificationUrl: String, key: String?) {
        self.name = name
        self.eventTypes = eventTypes
        self.eventNotificationUrl = eventNotificationUrl
        self.key = key
    }

    public var description: String {
        "WebhookSubscriptionRequest(name: \(name), eventTypes: \(eventTypes), key: \(key == nil ? "none" : "<redacted>"))"
    }
    public var debugDescription: String { description }
}

/// The spec's `StringCollection` (`GET /webhooks/types`).
public struct StringCollection: Decodable, Sendable, Equatable {
    public var value: [String]?
}

/// `GET /mattertypes`' items (`MatterTypeInfo`).
public struct MatterTypeInfo: Decodable, Sendable, Equatable {
    public var id: String?
    public var versionId: String?
    public var name: String?
    public var category: String?
    /// 0 matter type, 1 lead type.
    public var type: Int?
    public var representativeOptions: [String]?
    public var location: String?
    public var isDeleted: Bool?
}

/// The OAuth error body of the token endpoint.
struct OAuthErrorBody: Decodable {
    var error: String?
}
