import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// The firm's Smokeball matter types as the status route reads them for people (the mapping
/// editor, the check of `case_type_mappings`): `MatterTypeResolver`'s cache and fetch, with a
/// person waiting, so each request to Smokeball is short and tried at most twice, and every way
/// of not getting the types is a `Failure` with a code, never a 5xx of the route.
public struct MatterTypeCatalogue: Sendable {
    let resolver: MatterTypeResolver
    /// Nil when the server has no Smokeball credentials.
    let tokens: SmokeballTokenProvider?
    let requestTimeout: Double
    let retryPolicy: RetryPolicy

    public init(
        resolver: MatterTypeResolver, tokens: SmokeballTokenProvider?, requestTimeout: Double = 8,
        retryPolicy: RetryPolicy = RetryPolicy(maxAttempts: 2, baseDelay: 0.25, maxDelay: 1, maxRetryAfter: 2)
    ) {
        self.resolver = resolver
        self.tokens = tokens
        self.requestTimeout = requestTimeout
        self.retryPolicy = retryPolicy
    }

    /// Why the types could not be read: what `mappings.error` shows, and what a settings update
    /// that needs them answers.
    struct Failure: Error, Equatable {
        let code: String
        let message: String
        let status: HTTPStatus

        static let notConfigured = Failure(
            code: "not_configured", message: "Smokeball integration is not configured", status: .serviceUnavailable)

        static func notConnected(reason: String?) -> Failure {
            let error =
                reason.map { SmokeballTokenError(.needsReconnect, reason: $0) } ?? SmokeballTokenError(.notConnected)
            return Failure(error)
        }

        /// As the sync route reports it: a firm waiting for a reconnect is `not_connected` too.
        init(_ error: SmokeballTokenError) {
            switch error.code {
            case .notConnected, .needsReconnect:
                self.init(code: "not_connected", message: error.httpError.message, status: .conflict)
            case .unavailable:
                self = .unavailable
            case .notConfigured:
                self = .notConfigured
            }
        }

        init(code: String, message: String, status: HTTPStatus) {
            self.code = code
            self.message = message
            self.status = status
        }

        static let unavailable = Failure(
            code: "smokeball_unavailable", message: "Smokeball is unavailable; try again shortly",
            status: .serviceUnavailable)

        var httpError: HTTPError {
            HTTPError(
                status, code: code, message,
                headers: status == .serviceUnavailable && code == Self.unavailable.code ? [("Retry-After", "30")] : [])
        }
    }

    /// The firm's types for `location` (nil: the Smokeball firm's state) fetched from Smokeball
    /// now and stored in the cache for every process.
    func fetch(location: String?, scope: any TenantScope) throws -> MatterTypeResolver.Catalogue {
        guard let tokens else { throw Failure.notConfigured }
        do {
            return try tokens.withAccess(scope) { client, access in
                client.requestTimeout = requestTimeout
                client.retryPolicy = retryPolicy
                return try resolver.fetch(
                    location: location, scope: scope,
                    session: SmokeballSession(client: client, access: access, lane: .interactive))
            }
        } catch let error as SmokeballTokenError {
            throw Failure(error)
        } catch is SmokeballError {
            throw Failure.unavailable
        } catch let error as JobError where error.code == MatterTypeResolver.locationUnknown {
            throw Failure(code: "location_unknown", message: error.message, status: .conflict)
        }
    }

}

/// A row of `case_types`: a case type and its built-in mapping.
struct CaseTypeRow {
    let key: String
    let name: String
    let category: String
    let builtInName: String

    static let sql = """
        SELECT key, display_name, smokeball_category, smokeball_matter_type FROM case_types ORDER BY sort_order, key
        """

    init(_ row: Row) throws {
        key = try row.string("key")
        name = try row.string("display_name")
        category = try row.string("smokeball_category")
        builtInName = try row.string("smokeball_matter_type")
    }

    var request: MatterTypeRequest {
        MatterTypeRequest(caseType: key, displayName: name, category: category, builtInName: builtInName)
    }

    static func all(_ connection: Connection) throws -> [CaseTypeRow] {
        try connection.execute(sql).rows.map(CaseTypeRow.init)
    }
}

extension StatusHandler {
    /// What `GET ?include=mappings[&refresh=1]` asks for; nil without `include`.
    struct MappingsQuery {
        var refresh: Bool

        init?(_ request: Request) throws(HTTPError) {
            let include = request.queryValues("include").flatMap { $0.split(separator: ",") }
            guard !include.isEmpty else { return nil }
            guard include.allSatisfy({ $0 == "mappings" }) else {
                throw HTTPError(.badRequest, code: "invalid_include", "include must be mappings")
            }
            switch request.queryValues("refresh").first {
            case nil, "0", "false": refresh = false
            case "1", "true": refresh = true
            default: throw HTTPError(.badRequest, code: "invalid_refresh", "refresh must be 1 or 0")
            }
        }
    }

    /// The mapping editor's part of the answer. Smokeball is asked only when the cached types do
    /// not serve the firm now (missing, stale, another location or account) or `refresh`, and
    /// only for a connected firm; otherwise, and when asking fails, `error` says why and the case
    /// types are listed with what the cached types (if any are the firm's) give.
    func mappings(
        _ status: StatusAnswer, cached: MatterTypeResolver.Catalogue?, caseTypes: [CaseTypeRow], refresh: Bool,
        scope: any TenantScope
    ) throws -> StatusAnswer.Mappings {
        let location = status.settings.location
        var catalogue = cached.flatMap { $0.isCurrent(for: location) ? $0 : nil }
        var failure: MatterTypeCatalogue.Failure?
        if !status.connected || status.needsReconnect {
            failure = .notConnected(reason: status.needsReconnectReason)
        } else if refresh || catalogue?.isFresh(for: location, ttl: matterTypes?.resolver.ttl ?? 0) != true {
            do {
                guard let matterTypes else { throw MatterTypeCatalogue.Failure.notConfigured }
                catalogue = try matterTypes.fetch(location: location, scope: scope)
            } catch let error as MatterTypeCatalogue.Failure {
                failure = error
            }
        }
        return StatusAnswer.Mappings(
            settings: status.settings, catalogue: catalogue, failure: failure, caseTypes: caseTypes)
    }

    /// For an update that sets a `case_type_mappings` value: the firm's types to check the values
    /// against (for the location the update leaves). Nil when it sets none (other settings, or
    /// removals only): such an update needs no Smokeball. A firm admin's only; the update's
    /// values are checked (400) before Smokeball is asked, its case type keys in the update's own
    /// transaction (this one reads no `case_types`, so the update's locking stays as it was).
    func typesForUpdate(_ body: [String: Any], mode: IntegrationSettings.UpdateMode, userID: UUID) throws
        -> MatterTypeResolver.Catalogue?
    {
        guard let mappings = body[IntegrationSettings.caseTypeMappingsKey] as? [String: Any],
            mappings.values.contains(where: { !($0 is NSNull) })
        else { return nil }
        let (location, cached) = try database.transaction { connection in
            let caller = try Tenancy.enter(connection, userID: userID)
            guard caller.isFirmAdmin else { throw Self.notFirmAdmin }
            let updated = try IntegrationSettings.current(connection).applying(
                body, mode: mode, knownCaseTypes: Set(mappings.keys))
            return (updated.location, try MatterTypeResolver.cached(connection))
        }
        // A fresh cached list serves without Smokeball (and in a route without it).
        if let cached, cached.isFresh(for: location, ttl: matterTypes?.resolver.ttl ?? MatterTypeResolver.defaultTTL) {
            return cached
        }
        do {
            guard let matterTypes else { throw MatterTypeCatalogue.Failure.notConfigured }
            return try matterTypes.fetch(location: location, scope: UserScope(userID: userID))
        } catch let failure as MatterTypeCatalogue.Failure {
            throw failure.httpError
        }
    }

    /// 422 `invalid_mapping` for the first value `body` sets (in the case types' order) that
    /// names none of `catalogue`'s types, as a sync would look it up.
    static func checkMappings(
        _ body: [String: Any], _ updated: IntegrationSettings, in catalogue: MatterTypeResolver.Catalogue,
        caseTypes: [CaseTypeRow]
    ) throws(HTTPError) {
        guard let mappings = body[IntegrationSettings.caseTypeMappingsKey] as? [String: Any] else { return }
        for caseType in caseTypes where mappings[caseType.key] != nil {
            guard let value = updated.caseTypeMappings[caseType.key],
                catalogue.custom(value, preferring: caseType.category) == nil
            else { continue }
            throw HTTPError(
                .unprocessableEntity, code: "invalid_mapping",
                "\(caseType.name): \(MatterTypeResolver.unknownMapping(value))",
                field: "\(IntegrationSettings.caseTypeMappingsKey).\(caseType.key)")
        }
    }

    static let notFirmAdmin = HTTPError(
        .forbidden, code: "forbidden", "Only firm administrators can change these settings")
}

extension StatusAnswer {
    /// `mappings`: the firm's Smokeball matter types and, per case type, what a sync would use.
    struct Mappings: Encodable, Equatable {
        struct MatterType: Encodable, Equatable {
            var id: String
            var name: String
            var category: String?
        }

        struct TypeReference: Encodable, Equatable {
            var id: String
            var name: String
        }

        struct Problem: Encodable, Equatable {
            var code: String
            var message: String
        }

        struct CaseType: Encodable, Equatable {
            var key: String
            var name: String
            var category: String
            /// What the built-in mapping picks.
            var defaultType: TypeReference?
            /// `settings.case_type_mappings[key]`.
            var overrideValue: String?
            /// What a sync would use now.
            var effective: TypeReference?
            var problem: String?

            enum CodingKeys: String, CodingKey {
                case key, name, category
                case defaultType = "default"
                case overrideValue = "override"
                case effective, problem
            }
        }

        var location: String?
        var matterTypes: [MatterType]
        var fetchedAt: Date?
        var error: Problem?
        var caseTypes: [CaseType]

        enum CodingKeys: String, CodingKey {
            case location
            case matterTypes = "matter_types"
            case fetchedAt = "fetched_at"
            case error
            case caseTypes = "case_types"
        }

        /// `default` and `effective` are `MatterTypeResolver.choose`'s, on the types given; all
        /// null without types.
        init(
            settings: IntegrationSettings, catalogue: MatterTypeResolver.Catalogue?,
            failure: MatterTypeCatalogue.Failure?, caseTypes rows: [CaseTypeRow]
        ) {
            location = catalogue?.location ?? settings.location
            matterTypes = (catalogue?.matterTypes ?? []).map {
                MatterType(id: $0.id, name: $0.name, category: $0.category)
            }
            fetchedAt = catalogue?.fetchedAt
            error = failure.map { Problem(code: $0.code, message: $0.message) }
            caseTypes = rows.map { row in
                let override = settings.caseTypeMappings[row.key]
                var entry = CaseType(
                    key: row.key, name: row.name, category: row.category, defaultType: nil, overrideValue: override,
                    effective: nil, problem: nil)
                guard let catalogue else { return entry }
                func reference(_ mapping: String?) throws -> TypeReference {
                    let type = try MatterTypeResolver.choose(row.request, mapping: mapping, in: catalogue)
                    return TypeReference(id: type.id, name: type.name)
                }
                entry.defaultType = try? reference(nil)
                do {
                    entry.effective = try reference(override)
                } catch {
                    if let override, catalogue.custom(override, preferring: row.category) == nil {
                        entry.problem = MatterTypeResolver.unknownMapping(override)
                    } else {
                        entry.problem = (error as? JobError)?.message
                    }
                }
                return entry
            }
        }
    }
}
