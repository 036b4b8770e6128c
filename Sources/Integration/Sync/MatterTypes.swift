import Foundation
import PostgreSQL
import Smokeball

/// Finds the Smokeball matter type for a case type (docs/sync.md, "Matter types"):
///
/// 1. the firm's `case_type_mappings` entry: a type's id (exactly), else its name
///    (case-insensitively, in any category). A mapping that names no type fails: the firm asked
///    for that type, and another would be a silent mistype;
/// 2. the built-in mapping: `builtInName` within `category` (case-insensitively);
/// 3. the category's general type: a type in it named "General", "General <Category>",
///    "<Category> - General" or "<Category>", first match in that order.
///
/// Names match matter types only (`type` 1 is a lead type); an id is taken as given.
///
/// The firm's types for its location come from one `GET /mattertypes?Location=` (all pages),
/// cached in `smokeball_matter_type_cache` (migration 032) so every worker process shares them:
/// a resolve while the row is fresh costs no request. The location is the `location` setting,
/// else the Smokeball firm's state (`GET /firm`). The row is refetched once it is older than
/// `ttl`, when it was fetched for another location than the one wanted now (the setting
/// changed), or for another Smokeball account (the firm reconnected elsewhere); a changed `case_type_mappings` needs no refetch, as mappings are applied to the
/// cached types at each resolve.
public struct MatterTypeResolver: MatterTypeResolving {
    public static let defaultTTL: TimeInterval = 24 * 3600
    public static let notFound = JobError.Code(rawValue: "matter_type_not_found")
    /// Neither the `location` setting nor the Smokeball firm's address gives a location.
    public static let locationUnknown = JobError.Code(rawValue: "matter_type_location_unknown")

    let database: Database
    let ttl: TimeInterval

    /// `ttl`: how long the firm's cached matter types are used before they are fetched again.
    public init(database: Database, ttl: TimeInterval = MatterTypeResolver.defaultTTL) {
        self.database = database
        self.ttl = ttl
    }

    public func resolve(_ request: MatterTypeRequest, scope: any TenantScope, session: SmokeballSession) throws
        -> ResolvedMatterType
    {
        let (settings, catalogue) = try types(scope: scope, session: session)
        return try Self.choose(request, mapping: settings.caseTypeMappings[request.caseType], in: catalogue)
    }

    /// The firm's settings and its matter types for its location: the cached row while it is
    /// fresh, else fetched and stored. The import's reverse mapping reads the same types.
    func types(scope: any TenantScope, session: SmokeballSession) throws -> (IntegrationSettings, Catalogue) {
        let (settings, cached) = try database.transaction { connection in
            _ = try scope.enter(connection)
            return (try IntegrationSettings.current(connection), try Self.cached(connection))
        }
        if let cached, cached.isFresh(for: settings.location, ttl: ttl) {
            return (settings, cached)
        }
        return (settings, try fetch(location: settings.location, scope: scope, session: session))
    }

    // MARK: Choosing

    static func choose(_ request: MatterTypeRequest, mapping: String?, in catalogue: Catalogue) throws
        -> ResolvedMatterType
    {
        let chosen: (CachedType, ResolvedMatterType.Source)?
        if let mapping {
            chosen = catalogue.custom(mapping, preferring: request.category).map { ($0, .custom) }
        } else if let type = catalogue.named(request.builtInName, in: request.category) {
            chosen = (type, .builtIn)
        } else {
            chosen = catalogue.general(request.category).map { ($0, .general) }
        }
        guard let chosen else {
            throw JobError(notFound, "configure a custom mapping for \(request.displayName)", retryable: false)
        }
        let (type, source) = chosen
        return ResolvedMatterType(
            id: type.id, name: type.name, category: type.category, location: catalogue.location,
            clientRole: type.representativeOptions.first, source: source)
    }

    /// Why a `case_type_mappings` value is refused (the settings' validation) or flagged (the
    /// status route's mappings): it names none of the firm's types.
    static func unknownMapping(_ value: String) -> String {
        "no Smokeball matter type named \"\(value)\""
    }

    /// The names a category's general type may have, in the order they are tried.
    static func generalNames(_ category: String) -> [String] {
        ["General", "General \(category)", "\(category) - General", category]
    }

    // MARK: The cache

    /// One matter type as cached: what choosing needs.
    struct CachedType: Codable, Sendable, Equatable {
        var id: String
        var name: String
        var category: String?
        /// 0 matter type, 1 lead type.
        var type: Int?
        var representativeOptions: [String]

        var isLead: Bool { type == 1 }

        init?(_ info: MatterTypeInfo) {
            guard let id = info.id, !id.isEmpty, let name = info.name, info.isDeleted != true else { return nil }
            self.id = id
            self.name = name
            category = info.category
            type = info.type
            representativeOptions = info.representativeOptions ?? []
        }

        enum CodingKeys: String, CodingKey {
            case id, name, category, type
            case representativeOptions = "representative_options"
        }
    }

    /// A firm's matter types for one location.
    struct Catalogue {
        var location: String
        /// The Smokeball firm's state, when the location came from it.
        var firmLocation: String?
        var types: [CachedType]
        /// Whether they were fetched for the Smokeball account the firm is connected to now.
        var sameAccount: Bool
        /// Seconds since the types were fetched (by the database's clock, which every process shares).
        var age: TimeInterval
        var fetchedAt: Date? = nil

        /// Whether these types are the ones the firm has now for `setting` (whatever their age).
        func isCurrent(for setting: String?) -> Bool { sameAccount && serves(setting) }

        func isFresh(for setting: String?, ttl: TimeInterval) -> Bool { age < ttl && isCurrent(for: setting) }

        /// What people choose from: the matter types (no lead types), by category then name.
        var matterTypes: [CachedType] {
            types.filter { !$0.isLead }.sorted {
                ($0.category ?? "", $0.name.lowercased(), $0.id) < ($1.category ?? "", $1.name.lowercased(), $1.id)
            }
        }

        /// Whether these are the types for `setting` (nil: the firm's own state).
        func serves(_ setting: String?) -> Bool {
            if let setting { return location == setting }
            return firmLocation == location
        }

        func custom(_ mapping: String, preferring category: String) -> CachedType? {
            if let byID = types.first(where: { $0.id == mapping }) { return byID }
            let named = types.filter { !$0.isLead && Self.same($0.name, mapping) }
            // The same name in several categories: the case type's own category, else a fixed order.
            return named.first { Self.same($0.category, category) }
                ?? named.min { ($0.category ?? "", $0.id) < ($1.category ?? "", $1.id) }
        }

        func named(_ name: String, in category: String) -> CachedType? {
            types.first { !$0.isLead && Self.same($0.category, category) && Self.same($0.name, name) }
        }

        func general(_ category: String) -> CachedType? {
            guard !category.isEmpty else { return nil }
            for name in MatterTypeResolver.generalNames(category) {
                if let type = named(name, in: category) { return type }
            }
            return nil
        }

        static func same(_ a: String?, _ b: String) -> Bool {
            guard let a else { return false }
            return a.lowercased() == b.lowercased()
        }
    }

    static func cached(_ connection: Connection) throws -> Catalogue? {
        try connection.execute(cachedSQL).first.flatMap(cached(from:))
    }

    /// The firm's cached row (at most one); the status route reads it in its own pipeline.
    static let cachedSQL = """
        SELECT c.location, c.firm_location, c.types::text AS types,
               c.smokeball_account_id IS NOT DISTINCT FROM i.smokeball_account_id AS same_account,
               extract(epoch FROM now() - c.fetched_at)::float8 AS age, c.fetched_at
        FROM smokeball_matter_type_cache c
        LEFT JOIN firm_integrations i
            ON i.firm_id = c.firm_id AND i.platform = 'smokeball' AND i.firm_id = app_current_firm()
        WHERE c.firm_id = app_current_firm()
        """

    static func cached(from row: Row) throws -> Catalogue? {
        // A row this version cannot read is refetched rather than trusted.
        guard
            let types = try? JSONDecoder().decode([CachedType].self, from: Data(try row.string("types").utf8))
        else { return nil }
        return Catalogue(
            location: try row.string("location"), firmLocation: try row.optionalString("firm_location"),
            types: types, sameAccount: try row.bool("same_account"), age: try row.double("age"),
            fetchedAt: try row.date("fetched_at"))
    }

    /// Fetches the firm's types for its location (asking Smokeball for the firm's state unless
    /// the setting gives it) and stores them for every process. No transaction is held over the
    /// requests; two processes fetching at once both store, the later winning.
    func fetch(location setting: String?, scope: any TenantScope, session: SmokeballSession) throws -> Catalogue {
        var firmLocation: String?
        let location: String
        if let setting {
            location = setting
        } else {
            let firm = try session.client.firm(session.access, lane: session.lane).value
            let states = [firm.streetAddress?.state, firm.mailingAddress?.state].compactMap {
                $0?.trimmingCharacters(in: .whitespacesAndNewlines).uppercased()
            }
            guard let state = states.first(where: { !$0.isEmpty }) else {
                throw JobError(
                    Self.locationUnknown, "set the location setting: the Smokeball firm's address has no state",
                    retryable: false)
            }
            firmLocation = state
            location = state
        }
        let types = try session.client.matterTypes(location: location, access: session.access, lane: session.lane)
            .compactMap(CachedType.init)
        let json = String(decoding: try JSONEncoder().encode(types), as: UTF8.self)
        let fetchedAt = try database.transaction { connection in
            _ = try scope.enter(connection)
            return try connection.execute(
                """
                INSERT INTO smokeball_matter_type_cache
                    (firm_id, smokeball_account_id, location, firm_location, types, fetched_at)
                VALUES (
                    app_current_firm(),
                    (SELECT smokeball_account_id FROM firm_integrations
                     WHERE firm_id = app_current_firm() AND platform = 'smokeball'),
                    $1, $2, $3::jsonb, now())
                ON CONFLICT (firm_id) DO UPDATE
                SET smokeball_account_id = EXCLUDED.smokeball_account_id, location = EXCLUDED.location,
                    firm_location = EXCLUDED.firm_location, types = EXCLUDED.types, fetched_at = EXCLUDED.fetched_at
                WHERE smokeball_matter_type_cache.firm_id = app_current_firm()
                RETURNING fetched_at
                """, [location, firmLocation, SQLValue.json(json)]
            ).single().date("fetched_at")
        }
        return Catalogue(
            location: location, firmLocation: firmLocation, types: types, sameAccount: true, age: 0,
            fetchedAt: fetchedAt)
    }
}
