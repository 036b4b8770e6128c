import Basics
import FastCGI
import Foundation
import PostgreSQL

/// A firm's matters (leads are matters with `isLead`):
///
///     GET    /matters        Offset, Limit, Search, MatterTypeId, ContactId, Status (repeatable or
///                            comma-separated), Type | IsLead, UpdatedSince (ticks) | LastUpdated (date-time),
///                            Sort (status, lastUpdated; asc or desc)
///     POST   /matters        MatterDto  → 202 Link
///     GET    /matters/{id}
///     PATCH  /matters/{id}   MatterDto2 → 202 Link
///     PUT    /matters/{id}   MatterDto  → 202 Link, as PATCH but clientIds/otherSideIds cannot change
///     DELETE /matters/{id}              → 202 Link, status becomes Deleted
///
/// Smokeball checks a body's shape at once (400) but resolves what it refers to (matter type,
/// roles, contacts, staff) while processing the accepted write, so those failures answer 202
/// and arrive as an `error` event naming the matter. Columns hold what filters and paging need;
/// `doc` holds the rest under Smokeball's property names (openedDate, clientRole, ...), so an
/// update merges into it.
struct Matters: APIResource {
    let database: Database
    let now: Date

    static let statuses = ["Open", "Pending", "Closed", "Deleted", "Cancelled"]

    func handle(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response? {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.first == "matters", parts.count <= 2 else { return nil }
        if parts.count == 1 {
            switch request.method {
            case "GET": return try list(request, path: path, caller: caller)
            case "POST":
                return try create(
                    try BodyShape.check(try request.sandboxJSON(), "MatterDto", BodyShape.matter), request,
                    caller: caller)
            default: throw Self.methodNotAllowed(request)
            }
        }
        guard let id = UUID(uuidString: parts[1]) else {
            throw SandboxFailure.problem(.notFound, "Not Found", "No such matter")
        }
        switch request.method {
        case "GET":
            return try single(request, id: id, caller: caller)
        case "PATCH", "PUT", "DELETE":
            let body: [String: Any] =
                switch request.method {
                case "DELETE": [:]
                case "PATCH": try BodyShape.check(try request.sandboxJSON(), "MatterDto2", BodyShape.matterPatch)
                default: try BodyShape.check(try request.sandboxJSON(), "MatterDto", BodyShape.matter)
                }
            try PendingUpdate(resource: .matter, id: id, method: request.method, body: body).accept(
                database, caller: caller, now: now)
            return Accepted.link(request, id: id, path: "/matters/" + id.uuidString.lowercased())
        default:
            throw Self.methodNotAllowed(request)
        }
    }

    static func methodNotAllowed(_ request: Request) -> SandboxFailure {
        .problem(.methodNotAllowed, "Method Not Allowed", "\(request.method) is not supported here")
    }

    static func badRequest(_ detail: String) -> SandboxFailure { .problem(.badRequest, "Bad Request", detail) }

    static func origin(_ request: Request) -> String { request.sandboxOrigin }

    // MARK: Reading

    /// Every column a `Matter` is rendered from; `m` is sb_matters, `t` its matter type.
    static let columns = """
        m.id, m.number, m.matter_type_id, m.status, m.is_lead, m.description, m.external_system_id, m.updated_at,
        array_to_string(m.client_ids, ',') AS client_ids, array_to_string(m.other_side_ids, ',') AS other_side_ids,
        m.doc->>'openedDate' AS opened_date, m.doc->>'closedDate' AS closed_date,
        m.doc->>'leadOpenedDate' AS lead_opened_date, m.doc->>'leadClosedDate' AS lead_closed_date,
        m.doc->>'leadClosedReason' AS lead_closed_reason, m.doc->>'personResponsibleStaffId' AS person_responsible,
        t.name AS type_name,
        (SELECT string_agg(\(titleName), ' & ' ORDER BY array_position(m.client_ids, c.id)) FROM sb_contacts c
         WHERE c.account_id = m.account_id AND c.id = ANY (m.client_ids) AND \(titleName) <> '') AS client_names,
        (SELECT string_agg(\(titleName), ' & ' ORDER BY array_position(m.other_side_ids, c.id)) FROM sb_contacts c
         WHERE c.account_id = m.account_id AND c.id = ANY (m.other_side_ids) AND \(titleName) <> '') AS other_side_names
        """

    /// What a contact `c` contributes to a matter's title: a person's last name (a person with
    /// none: the name it has), a company's or trust's name; a group of people has none.
    static let titleName = "coalesce(nullif(c.doc->'person'->>'lastName', ''), c.name)"

    /// The matter as a webhook payload: its GET representation at this moment, whether or not
    /// it is readable yet (a `*.created` event is recorded when the create is accepted).
    static func payload(_ connection: Connection, id: UUID, account: UUID) throws -> [String: Any] {
        let row = try connection.execute(
            """
            SELECT \(columns) FROM sb_matters m JOIN sb_matter_types t ON t.id = m.matter_type_id
            WHERE m.id = $1 AND m.account_id = $2
            """, [id, account]
        ).single()
        return Events.payload(try render(row, origin: ""))
    }

    func list(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response {
        let page = try Paging(request)
        let filters = try Self.listFilters(request)
        // The spec's sortable fields: status and lastUpdated.
        let order = try SortOrder.sql(
            request.queryValue("Sort"), columns: ["status": "m.status", "lastupdated": "m.updated_at"], id: "m.id",
            fallback: "m.updated_at")
        let parameters: [any SQLValueConvertible] = [
            caller.accountID, now, filters.matterType, filters.contact, filters.statuses, filters.isLead,
            filters.updatedSince, filters.search,
        ]
        let conditions = """
            m.account_id = $1 AND m.visible_at <= $2
            AND ($3::uuid IS NULL OR m.matter_type_id = $3)
            AND ($4::uuid IS NULL OR (m.client_ids || m.other_side_ids) @> ARRAY[$4::uuid])
            AND ($5::text[] IS NULL OR m.status = ANY ($5::text[]))
            AND ($6::boolean IS NULL OR m.is_lead = $6)
            AND ($7::timestamptz IS NULL OR m.updated_at >= $7)
            AND ($8::text IS NULL OR m.number ILIKE $8 OR m.description ILIKE $8 OR EXISTS (
                SELECT 1 FROM sb_contacts c WHERE c.account_id = m.account_id
                AND c.id = ANY (m.client_ids || m.other_side_ids) AND c.name ILIKE $8))
            """
        let (size, rows) = try database.withConnection { connection in
            let size = try connection.execute(
                "SELECT count(*) AS size FROM sb_matters m WHERE \(conditions)", parameters
            ).single().int("size")
            // The page is chosen first and only its rows are rendered: the title subqueries
            // would otherwise run for every row the offset skips as well.
            let rows = try connection.execute(
                """
                SELECT \(Self.columns) FROM (
                    SELECT * FROM sb_matters m WHERE \(conditions) ORDER BY \(order) OFFSET $9 LIMIT $10
                ) m JOIN sb_matter_types t ON t.id = m.matter_type_id
                ORDER BY \(order)
                """, parameters + [page.offset, page.limit]
            ).rows
            return (size, rows)
        }
        let origin = Self.origin(request)
        let items = try rows.map { try Self.render($0, origin: origin) }
        let base = page.base(request, path: path)
        return Response.json(page.envelope(items: items, size: Int(size), base: base))
    }

    struct ListFilters {
        var matterType: UUID?
        var contact: UUID?
        /// A `text[]` literal of canonical status names (each from `statuses`, so nothing to escape).
        var statuses: String?
        var isLead: Bool? = false
        var updatedSince: Date?
        /// An ILIKE pattern.
        var search: String?
    }

    static func listFilters(_ request: Request) throws -> ListFilters {
        var filters = ListFilters()
        filters.matterType = try uuidParameter(request, "MatterTypeId")
        filters.contact = try uuidParameter(request, "ContactId")
        let named = request.queryValues("Status").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if !named.isEmpty {
            let canonical = try named.map { name in
                guard let status = statuses.first(where: { $0.caseInsensitiveCompare(name) == .orderedSame }) else {
                    throw badRequest("Status must be Open, Pending, Closed, Deleted or Cancelled")
                }
                return status
            }
            filters.statuses = "{" + canonical.joined(separator: ",") + "}"
        }
        // Type is the current parameter; IsLead is its deprecated predecessor. Matters only by default.
        if let type = request.queryValue("Type"), !type.isEmpty {
            let kinds = Set(type.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
            switch kinds {
            case ["matters"]: filters.isLead = false
            case ["leads"]: filters.isLead = true
            case ["matters", "leads"]: filters.isLead = nil
            default: throw badRequest("Type must be Matters, Leads or Matters,Leads")
            }
        } else if let text = request.queryValue("IsLead"), !text.isEmpty {
            guard let flag = Bool(text.lowercased()) else { throw badRequest("IsLead must be true or false") }
            filters.isLead = flag
        }
        let ticks = try DotNetTicks.parameter(request, "UpdatedSince")
        let lastUpdated = request.queryValue("LastUpdated").flatMap { $0.isEmpty ? nil : $0 }
        switch (ticks, lastUpdated) {
        case (.some, .some):
            throw badRequest("UpdatedSince cannot be used in conjunction with LastUpdated")
        case (.some(let value), nil):
            filters.updatedSince = DotNetTicks.date(value)
        case (nil, .some(let text)):
            guard let date = parseDate(text) else { throw badRequest("LastUpdated must be an ISO 8601 date-time") }
            filters.updatedSince = date
        case (nil, nil):
            break
        }
        if let term = request.queryValue("Search")?.trimmingCharacters(in: .whitespaces), !term.isEmpty {
            filters.search = likePattern(term)
        }
        return filters
    }

    static func uuidParameter(_ request: Request, _ name: String) throws -> UUID? {
        guard let text = request.queryValue(name), !text.isEmpty else { return nil }
        guard let id = UUID(uuidString: text) else { throw badRequest("\(name) must be a uuid") }
        return id
    }

    /// `*` is Smokeball's wildcard; without one the term matches anywhere (case-insensitive).
    static func likePattern(_ term: String) -> String {
        var escaped = ""
        for character in term {
            switch character {
            case "\\", "%", "_": escaped += "\\" + String(character)
            case "*": escaped += "%"
            default: escaped.append(character)
            }
        }
        return term.contains("*") ? escaped : "%" + escaped + "%"
    }

    func single(_ request: Request, id: UUID, caller: APIServer.Caller) throws -> Response {
        let row = try database.withConnection {
            try $0.execute(
                """
                SELECT \(Self.columns) FROM sb_matters m JOIN sb_matter_types t ON t.id = m.matter_type_id
                WHERE m.id = $1 AND m.account_id = $2 AND m.visible_at <= $3
                """, [id, caller.accountID, now]
            ).first
        }
        // Another account's matter is as absent as one not yet processed.
        guard let row else { throw SandboxFailure.problem(.notFound, "Not Found", "No such matter") }
        return Response.json(try Self.render(row, origin: Self.origin(request)))
    }

    /// A `Matter` as the spec shapes it (no property outside the schema: it forbids others).
    static func render(_ row: Row, origin: String) throws -> [String: Any] {
        let id = try row.uuid("id").uuidString.lowercased()
        let typeID = try row.uuid("matter_type_id").uuidString.lowercased()
        let number = try row.optionalString("number")
        let isLead = try row.bool("is_lead")
        func links(_ column: String) throws -> [[String: Any]] {
            try row.string(column).split(separator: ",").map {
                ["id": String($0), "href": origin + "/contacts/" + $0]
            }
        }
        // Smokeball's title, computed and never written: number - client last names - matter
        // type - other side last names, each part left out when missing; several names join with " & ".
        let title = [
            number, try row.optionalString("client_names"), try row.string("type_name"),
            try row.optionalString("other_side_names"),
        ].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " - ")
        var matter: [String: Any] = [
            "href": origin + "/matters/" + id, "id": id,
            // Ticks of the last change: the spec says a versionId can be passed as UpdatedSince.
            "versionId": String(DotNetTicks.from(try row.date("updated_at"))),
            "number": number ?? NSNull(), "title": title,
            "matterType": ["id": typeID, "href": origin + "/mattertypes/" + typeID],
            "clients": try links("client_ids"), "otherSides": try links("other_side_ids"),
            "description": (try row.optionalString("description")) ?? NSNull(),
            "status": try row.string("status"), "isLead": isLead,
            "externalSystemId": (try row.optionalString("external_system_id")) ?? NSNull(),
            "openedDate": (try row.optionalString("opened_date")) ?? NSNull(),
            "closedDate": (try row.optionalString("closed_date")) ?? NSNull(),
            "personResponsible": try row.optionalString("person_responsible").map {
                ["id": $0, "href": origin + "/staff/" + $0] as [String: Any]
            } ?? NSNull(),
        ]
        if isLead {
            matter["leadOpenedDate"] = (try row.optionalString("lead_opened_date")) ?? NSNull()
            matter["leadClosedDate"] = (try row.optionalString("lead_closed_date")) ?? NSNull()
            matter["leadClosedReason"] = (try row.optionalString("lead_closed_reason")) ?? NSNull()
        }
        return matter
    }

    // MARK: Bodies

    /// A body property whose JSON type has been checked.
    enum Field: Equatable {
        case null
        case text(String)
        case id(UUID)
        case ids([UUID])
        case date(Date)
        case flag(Bool)
        /// Accepted as Smokeball does but not modelled here (branch, referral, split staff, items).
        case unmodelled
    }

    enum Kind { case text, id, ids, status, date, flag, number, object, texts }

    /// MatterDto and MatterDto2 properties, matched without regard to case as ASP.NET does. A
    /// body has been checked against `BodyShape.matter` or `.matterPatch` (unknown properties and
    /// JSON types) first; this adds what the spec's descriptions require (uuids, status names).
    static let kinds: [String: (name: String, kind: Kind)] = {
        let properties: [(String, Kind)] = [
            ("externalSystemId", .text), ("number", .text), ("matterTypeId", .id), ("clientIds", .ids),
            ("otherSideIds", .ids), ("branchId", .text), ("branchProviderId", .text), ("clientRole", .text),
            ("otherSideRole", .text), ("description", .text), ("status", .status), ("openedDate", .date),
            ("dateOpened", .date), ("closedDate", .date), ("leadOpenedDate", .date), ("leadClosedDate", .date),
            ("leadClosedReason", .text), ("referralType", .text), ("referrerId", .text),
            ("referralAgreementFeeType", .text), ("referralAgreementFee", .number),
            ("referralAgreementFeeComment", .text), ("personResponsibleStaffId", .id),
            ("personAssistingStaffId", .text), ("personAssistingStaffIds", .texts), ("originatingStaffId", .text),
            ("originatingStaffIds", .texts), ("splitOriginatingStaffSettings", .object),
            ("supervisorStaffId", .text), ("clientCode", .text), ("isLead", .flag), ("items", .object),
        ]
        return Dictionary(uniqueKeysWithValues: properties.map { ($0.0.lowercased(), (name: $0.0, kind: $0.1)) })
    }()

    /// The body's known properties by their spec name, or a 400 naming the first ill-typed one.
    static func fields(_ body: [String: Any]) throws -> [String: Field] {
        var fields: [String: Field] = [:]
        for key in body.keys.sorted() {
            guard let property = kinds[key.lowercased()], let raw = body[key] else { continue }
            fields[property.name] = try field(raw, name: property.name, kind: property.kind)
        }
        // MatterDto2 spells openedDate both ways.
        if fields["openedDate"] == nil, let opened = fields["dateOpened"] { fields["openedDate"] = opened }
        return fields
    }

    static func field(_ raw: Any, name: String, kind: Kind) throws -> Field {
        if raw is NSNull {
            guard kind != .flag else { throw badRequest("\(name) must be true or false") }
            return .null
        }
        switch kind {
        case .text:
            guard let text = raw as? String else { throw badRequest("\(name) must be a string") }
            return .text(text)
        case .id:
            guard let text = raw as? String, let id = UUID(uuidString: text) else {
                throw badRequest("\(name) must be a uuid string")
            }
            return .id(id)
        case .ids:
            guard let array = raw as? [Any] else { throw badRequest("\(name) must be an array of uuid strings") }
            return .ids(
                try array.map { element in
                    guard let text = element as? String, let id = UUID(uuidString: text) else {
                        throw badRequest("\(name) must be an array of uuid strings")
                    }
                    return id
                })
        case .status:
            guard let text = raw as? String,
                let status = statuses.first(where: { $0.caseInsensitiveCompare(text) == .orderedSame })
            else { throw badRequest("status must be one of Open, Pending, Closed, Deleted or Cancelled") }
            return .text(status)
        case .date:
            guard let text = raw as? String, let date = parseDate(text) else {
                throw badRequest("\(name) must be an ISO 8601 date-time")
            }
            return .date(date)
        case .flag:
            guard let flag = JSONBoolean.value(raw) else { throw badRequest("\(name) must be true or false") }
            return .flag(flag)
        case .number:
            guard raw is NSNumber, JSONBoolean.value(raw) == nil else { throw badRequest("\(name) must be a number") }
            return .unmodelled
        case .object:
            guard raw is [String: Any] else { throw badRequest("\(name) must be an object") }
            return .unmodelled
        case .texts:
            guard let array = raw as? [Any], array.allSatisfy({ $0 is String }) else {
                throw badRequest("\(name) must be an array of strings")
            }
            return .unmodelled
        }
    }

    /// ISO 8601 as .NET reads it: with or without fractional seconds and offset, or a date alone.
    static func parseDate(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        let variants: [ISO8601DateFormatter.Options] = [
            [.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime],
            [.withFullDate, .withTime, .withDashSeparatorInDate, .withColonSeparatorInTime],
            [.withFullDate, .withTime, .withDashSeparatorInDate, .withColonSeparatorInTime, .withFractionalSeconds],
            [.withFullDate],
        ]
        for options in variants {
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }

    static func iso(_ date: Date) -> String { Timestamp.iso8601(date, fractionDigits: 0) }

    static func arrayLiteral(_ ids: [UUID]) -> String {
        "{" + ids.map { $0.uuidString.lowercased() }.joined(separator: ",") + "}"
    }

    static func ids(_ text: String) -> [UUID] { text.split(separator: ",").compactMap { UUID(uuidString: String($0)) } }

    // MARK: Processing checks (failures become `error` events, not HTTP errors)

    struct MatterType {
        let region: String
        let isLeadType: Bool
        let isDeleted: Bool
        let options: [String]

        static func load(_ connection: Connection, _ id: UUID) throws -> MatterType? {
            guard
                let row = try connection.execute(
                    """
                    SELECT region, type, is_deleted, array_to_json(representative_options)::text AS options
                    FROM sb_matter_types WHERE id = $1
                    """, [id]
                ).first
            else { return nil }
            let options = (try? JSONSerialization.jsonObject(with: Data(try row.string("options").utf8))) as? [String]
            return MatterType(
                region: try row.string("region"), isLeadType: try row.int("type") == 1,
                isDeleted: try row.bool("is_deleted"), options: options ?? [])
        }

        /// Why a matter (or lead) of this type cannot be saved in an account of `region`.
        static func problem(_ type: MatterType?, id: UUID, region: String, isLead: Bool) -> String? {
            let name = id.uuidString.lowercased()
            guard let type else { return "matterTypeId \(name) does not name a matter type" }
            if type.region != region {
                return "matter type \(name) belongs to region \(type.region), not the account's region \(region)"
            }
            if type.isDeleted { return "matter type \(name) has been deleted" }
            if isLead && !type.isLeadType { return "a lead needs a lead matter type; \(name) is a matter type" }
            if !isLead && type.isLeadType { return "matter type \(name) is a lead type; set isLead to create a lead" }
            return nil
        }

        /// The option as the type spells it, or nil when the type has no such option.
        func option(_ role: String) -> String? {
            options.first { $0.caseInsensitiveCompare(role) == .orderedSame }
        }

        func roleProblem(_ role: String, property: String) -> String {
            "\(property) '\(role)' is not one of the matter type's representative options: "
                + options.joined(separator: ", ")
        }
    }

    /// Ids among `ids` that name no live contact of the account.
    static func missingContacts(_ connection: Connection, account: UUID, _ ids: [UUID]) throws -> [String] {
        guard !ids.isEmpty else { return [] }
        let missing = try connection.execute(
            """
            SELECT array_to_string(ARRAY(
                SELECT u FROM unnest($2::uuid[]) u WHERE NOT EXISTS (
                    SELECT 1 FROM sb_contacts c WHERE c.id = u AND c.account_id = $1 AND NOT c.is_deleted)), ',') AS missing
            """, [account, arrayLiteral(ids)]
        ).single().string("missing")
        return missing.split(separator: ",").map(String.init)
    }

    static func staffProblem(_ connection: Connection, account: UUID, _ field: Field?) throws -> String? {
        guard case .id(let staff)? = field else { return nil }
        let found =
            try connection.execute(
                "SELECT 1 FROM sb_users WHERE staff_id = $1 AND account_id = $2", [staff, account]
            )
            .rowCount == 1
        return found ? nil : "personResponsibleStaffId \(staff.uuidString.lowercased()) is not a staff member"
    }

    /// The `error` event of a write Smokeball accepted but could not apply.
    static func recordFailure(
        _ connection: Connection, account: UUID, id: UUID, reason: String,
        caller: APIServer.Caller?
    ) throws {
        try Events.record(
            connection, account: account, type: "error", caller: caller,
            payload: Events.error(message: reason, resourceName: "matter", resourceID: id))
    }

    // MARK: Create

    /// `body`: a MatterDto checked against its shape.
    func create(_ body: [String: Any], _ request: Request, caller: APIServer.Caller) throws -> Response {
        let fields = try Self.fields(body)
        // The spec's 400: "a mandatory field - i.e. client, matter type, status - is not provided".
        guard case .id(let typeID)? = fields["matterTypeId"] else {
            throw Self.badRequest("matterTypeId is required: the id of a matter type (GET /mattertypes)")
        }
        guard case .text(let status)? = fields["status"] else {
            throw Self.badRequest("status is required: Open, Pending, Closed, Deleted or Cancelled")
        }
        guard case .ids(let clientIDs)? = fields["clientIds"], !clientIDs.isEmpty else {
            throw Self.badRequest("clientIds is required: at least one client contact id")
        }
        var otherSideIDs: [UUID] = []
        if case .ids(let given)? = fields["otherSideIds"] { otherSideIDs = given }
        var isLead = false
        if case .flag(let flag)? = fields["isLead"] { isLead = flag }
        let clientRole = fields.text("clientRole")
        let otherSideRole = fields.text("otherSideRole")
        if let clientRole, let otherSideRole, clientRole.caseInsensitiveCompare(otherSideRole) == .orderedSame {
            throw Self.badRequest("clientRole and otherSideRole cannot be identical")
        }
        let id = UUID()
        let visibleAt = caller.visibleAt(now)
        try database.transaction { connection in
            let type = try MatterType.load(connection, typeID)
            func failure() throws -> String? {
                if let problem = MatterType.problem(type, id: typeID, region: caller.region, isLead: isLead) {
                    return problem
                }
                guard let type else { return nil }
                if let clientRole, type.option(clientRole) == nil {
                    return type.roleProblem(clientRole, property: "clientRole")
                }
                if let otherSideRole, type.option(otherSideRole) == nil {
                    return type.roleProblem(otherSideRole, property: "otherSideRole")
                }
                let missing = try Self.missingContacts(connection, account: caller.accountID, clientIDs + otherSideIDs)
                if !missing.isEmpty { return "no such contact: " + missing.joined(separator: ", ") }
                return try Self.staffProblem(connection, account: caller.accountID, fields["personResponsibleStaffId"])
            }
            if let reason = try failure() {
                try Self.recordFailure(
                    connection, account: caller.accountID, id: id, reason: reason, caller: caller)
                return
            }
            let options = type?.options ?? []
            // Unnamed roles default to the type's: the first option for the client, the next for the other side.
            let client = clientRole.flatMap { type?.option($0) } ?? options.first
            let otherSide = otherSideRole.flatMap { type?.option($0) } ?? options.first { $0 != client }
            var doc: [String: Any] = ["clientRole": client ?? NSNull(), "otherSideRole": otherSide ?? NSNull()]
            for key in ["openedDate", "closedDate", "leadOpenedDate", "leadClosedDate"] {
                if case .date(let date)? = fields[key] { doc[key] = Self.iso(date) }
            }
            if doc[isLead ? "leadOpenedDate" : "openedDate"] == nil {
                doc[isLead ? "leadOpenedDate" : "openedDate"] = Self.iso(now)
            }
            if status == "Closed" && doc["closedDate"] == nil { doc["closedDate"] = Self.iso(visibleAt) }
            if let reason = fields.text("leadClosedReason") { doc["leadClosedReason"] = reason }
            if case .id(let staff)? = fields["personResponsibleStaffId"] {
                doc["personResponsibleStaffId"] = staff.uuidString.lowercased()
            }
            let number = fields.text("number")
            let externalSystemID = fields.text("externalSystemId")
            try connection.execute(
                """
                INSERT INTO sb_matters (id, account_id, version_id, number, matter_type_id, client_ids, other_side_ids,
                                        status, is_lead, description, external_system_id, doc, created_at, updated_at,
                                        visible_at)
                VALUES ($1, $2, $3, $4, $5, $6::uuid[], $7::uuid[], $8, $9, $10, $11, $12::jsonb, $13, $14, $14)
                """,
                [
                    id, caller.accountID, UUID(), number, typeID, Self.arrayLiteral(clientIDs),
                    Self.arrayLiteral(otherSideIDs), status, isLead, fields.text("description"), externalSystemID,
                    SQLValue.json(String(decoding: try JSONWriter.encode(doc), as: UTF8.self)), now,
                    // Last updated when Smokeball applies the write, so UpdatedSince never skips it.
                    visibleAt,
                ])
            try Events.record(
                connection, account: caller.accountID, type: "matter.created", caller: caller,
                payload: try Self.payload(connection, id: id, account: caller.accountID))
        }
        return Accepted.link(request, id: id, path: "/matters/" + id.uuidString.lowercased())
    }

    // MARK: Update

    /// Applies a partial update as Smokeball's processor would, in the caller's transaction.
    /// Throws 404 for a matter the account cannot see and 400 for what the spec calls unsupported;
    /// what only processing finds is recorded as an `error` event and changes nothing.
    /// `caller` nil is a firm user working in Smokeball itself (events with source Smokeball and
    /// `firmUser` as their user).
    func apply(
        _ fields: [String: Field], to id: UUID, account: UUID, region: String, lockedContacts: Bool,
        caller: APIServer.Caller?, firmUser: UUID? = nil, connection: Connection
    ) throws {
        guard
            let row = try connection.execute(
                """
                SELECT number, matter_type_id, status, is_lead, description, external_system_id, doc::text AS doc,
                       array_to_string(client_ids, ',') AS client_ids,
                       array_to_string(other_side_ids, ',') AS other_side_ids
                FROM sb_matters WHERE id = $1 AND account_id = $2 AND visible_at <= $3 FOR UPDATE
                """, [id, account, now]
            ).first
        else { throw SandboxFailure.problem(.notFound, "Not Found", "No such matter") }
        let currentType = try row.uuid("matter_type_id")
        let currentStatus = try row.string("status")
        let wasLead = try row.bool("is_lead")
        let currentClients = Self.ids(try row.string("client_ids"))
        let currentOtherSides = Self.ids(try row.string("other_side_ids"))
        var doc = (try? JSONSerialization.jsonObject(with: Data(try row.string("doc").utf8))) as? [String: Any] ?? [:]

        for key in ["matterTypeId", "status", "clientIds"] where fields[key] == .null {
            throw Self.badRequest("\(key) cannot be null")
        }
        var isLead = wasLead
        if case .flag(let flag)? = fields["isLead"] { isLead = flag }
        if isLead && !wasLead { throw Self.badRequest("A matter cannot be converted back to a lead") }
        let converting = wasLead && !isLead
        var typeID = currentType
        if case .id(let given)? = fields["matterTypeId"] { typeID = given }
        let typeChanging = typeID != currentType
        let clientRole = fields.text("clientRole")
        if clientRole != nil && !converting && !typeChanging {
            throw Self.badRequest(
                "clientRole cannot be updated unless converting a lead to a matter or changing the matter type")
        }
        if converting && clientRole == nil {
            throw Self.badRequest("clientRole is required when converting a lead to a matter")
        }
        var clients = currentClients
        if case .ids(let given)? = fields["clientIds"] {
            guard !given.isEmpty else { throw Self.badRequest("clientIds must name at least one client") }
            clients = given
        }
        var otherSides = currentOtherSides
        if case .ids(let given)? = fields["otherSideIds"] { otherSides = given }
        if fields["otherSideIds"] == .null { otherSides = [] }
        if lockedContacts && (clients != currentClients || otherSides != currentOtherSides) {
            throw Self.badRequest("clientIds and otherSideIds cannot be modified with PUT")
        }

        func failure() throws -> String? {
            var type: MatterType?
            if typeChanging || converting || clientRole != nil || fields.text("otherSideRole") != nil {
                type = try MatterType.load(connection, typeID)
                if let problem = MatterType.problem(type, id: typeID, region: region, isLead: isLead) { return problem }
            }
            if let type {
                if let clientRole, type.option(clientRole) == nil {
                    return type.roleProblem(clientRole, property: "clientRole")
                }
                if let role = fields.text("otherSideRole"), type.option(role) == nil {
                    return type.roleProblem(role, property: "otherSideRole")
                }
                // A new type keeps the roles it also has, and takes its defaults for the others.
                let client =
                    clientRole.flatMap(type.option) ?? (doc["clientRole"] as? String).flatMap(type.option)
                    ?? type.options.first
                let kept = (doc["otherSideRole"] as? String).flatMap(type.option).flatMap { $0 == client ? nil : $0 }
                let otherSide: String? =
                    fields.text("otherSideRole").flatMap(type.option) ?? kept ?? type.options.first { $0 != client }
                doc["clientRole"] = client ?? NSNull()
                doc["otherSideRole"] = otherSide ?? NSNull()
            }
            let added = Set(clients + otherSides).subtracting(currentClients + currentOtherSides)
            let missing = try Self.missingContacts(
                connection, account: account, Array(added).sorted { $0.uuidString < $1.uuidString })
            if !missing.isEmpty { return "no such contact: " + missing.joined(separator: ", ") }
            return try Self.staffProblem(connection, account: account, fields["personResponsibleStaffId"])
        }
        if let reason = try failure() {
            try Self.recordFailure(
                connection, account: account, id: id, reason: reason, caller: caller)
            return
        }

        var status = currentStatus
        if case .text(let given)? = fields["status"] { status = given }
        for key in ["openedDate", "closedDate", "leadOpenedDate", "leadClosedDate"] {
            switch fields[key] {
            case .date(let date)?: doc[key] = Self.iso(date)
            case .null?: doc[key] = NSNull()
            default: break
            }
        }
        if fields["closedDate"] == nil {
            // Closing stamps the closed date; reopening clears it.
            if status == "Closed" && currentStatus != "Closed" { doc["closedDate"] = Self.iso(now) }
            if ["Open", "Pending"].contains(status) && currentStatus == "Closed" { doc["closedDate"] = NSNull() }
        }
        if converting && (doc["openedDate"] as? String) == nil && fields["openedDate"] == nil {
            doc["openedDate"] = Self.iso(now)
        }
        switch fields["leadClosedReason"] {
        case .text(let reason)?: doc["leadClosedReason"] = reason
        case .null?: doc["leadClosedReason"] = NSNull()
        default: break
        }
        switch fields["personResponsibleStaffId"] {
        case .id(let staff)?: doc["personResponsibleStaffId"] = staff.uuidString.lowercased()
        case .null?: doc["personResponsibleStaffId"] = NSNull()
        default: break
        }
        let number = fields.replacing("number", try row.optionalString("number"))
        let description = fields.replacing("description", try row.optionalString("description"))
        let externalSystemID = fields.replacing("externalSystemId", try row.optionalString("external_system_id"))
        try connection.execute(
            """
            UPDATE sb_matters SET version_id = $2, number = $3, matter_type_id = $4, client_ids = $5::uuid[],
                other_side_ids = $6::uuid[], status = $7, is_lead = $8, description = $9, external_system_id = $10,
                doc = $11::jsonb,
                -- Strictly later than the last change, so every change has a new versionId (ticks).
                updated_at = greatest($12::timestamptz, updated_at + interval '1 microsecond')
            WHERE id = $1
            """,
            [
                id, UUID(), number, typeID, Self.arrayLiteral(clients), Self.arrayLiteral(otherSides), status, isLead,
                description, externalSystemID,
                SQLValue.json(String(decoding: try JSONWriter.encode(doc), as: UTF8.self)),
                now,
            ])
        let payload = try Self.payload(connection, id: id, account: account)
        try Events.record(
            connection, account: account, type: "matter.updated", caller: caller, firmUser: firmUser, payload: payload)
        // The lifecycle events besides the update itself, once per transition.
        for (transition, type) in [("Closed", "matter.closed"), ("Deleted", "matter.deleted")]
        where status == transition && currentStatus != transition {
            try Events.record(
                connection, account: account, type: type, caller: caller, firmUser: firmUser, payload: payload)
        }
    }
}

extension Dictionary where Key == String, Value == Matters.Field {
    /// A string property's value; nil when absent or null.
    func text(_ key: String) -> String? {
        if case .text(let text)? = self[key] { return text }
        return nil
    }

    /// A nullable string property after a partial update: absent keeps `current`, null clears it.
    func replacing(_ key: String, _ current: String?) -> String? {
        switch self[key] {
        case nil: return current
        case .text(let text)?: return text
        default: return nil
        }
    }
}

/// MatterDto (POST and PUT) and MatterDto2 (PATCH): the same properties but for MatterDto's
/// `otherSideRole` and MatterDto2's `dateOpened` and `items`.
extension BodyShape {
    static let matterCommon = properties(
        [
            "externalSystemId", "number", "matterTypeId", "branchId", "branchProviderId", "clientRole", "description",
            "status", "leadClosedReason", "referralType", "referrerId", "referralAgreementFeeType",
            "referralAgreementFeeComment", "personResponsibleStaffId", "personAssistingStaffId", "originatingStaffId",
            "supervisorStaffId", "clientCode",
        ],
        [
            "clientIds": .list(.string), "otherSideIds": .list(.string), "openedDate": .dateTime,
            "closedDate": .dateTime, "leadOpenedDate": .dateTime, "leadClosedDate": .dateTime,
            "referralAgreementFee": .number, "personAssistingStaffIds": .list(.string),
            "originatingStaffIds": .list(.string), "isLead": .flag,
            "splitOriginatingStaffSettings": object(
                ["splitMethod", "remainderStaffId"],
                [
                    "isEnabled": .flag,
                    "splitMatterStaffs": .list(object(["matterStaffId"], ["matterStaffRatio": .integer])),
                ]),
        ])
    static let matter = matterCommon.merging(["otherSideRole": .string]) { $1 }
    static let matterPatch = matterCommon.merging(["dateOpened": .dateTime, "items": .map(.list(matterItem))]) { $1 }
    static let matterItem: BodyShape = object(
        ["id", "contactId", "roleDescription", "description"],
        ["contact": object(["id"]), "subItems": .map(.list(.recursive { matterItem }))])
}
