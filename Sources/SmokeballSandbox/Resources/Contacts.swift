import FastCGI
import Foundation
import PostgreSQL

/// The contacts of the caller's firm account:
///
///     GET    /contacts         Offset, Limit, Search[], UpdatedSince, Type[], ExcludeDeletedContacts, Sort, Fields
///     POST   /contacts         ContactDto → 202 Link
///     GET    /contacts/{id}    → Contact
///     PUT    /contacts/{id}    ContactDto (the fields given) → 202 Link
///     DELETE /contacts/{id}    → 202 Link
///     POST   /contacts/batch   {ids} → ContactCollection, in request order
///
/// A body of the wrong shape is refused at once (400). What Smokeball only rejects while
/// processing the write (an email that is not an address, a person without a name) is answered
/// 202 and arrives as an `error` event naming the contact, with nothing stored.
struct Contacts: APIResource {
    let database: Database
    let now: Date

    func handle(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response? {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.first == "contacts", parts.count <= 2 else { return nil }
        switch (request.method, parts.count) {
        case ("GET", 1): return try list(request, path: path, caller: caller)
        case ("POST", 1): return try create(request, caller: caller)
        case ("POST", 2) where parts[1] == "batch": return try batch(request, caller: caller)
        case (_, 2) where parts[1] == "batch": throw Self.methodNotAllowed(request)
        case ("GET", 2), ("PUT", 2), ("DELETE", 2):
            guard let id = UUID(uuidString: parts[1]) else { throw Self.notFound }
            switch request.method {
            case "GET": return try contact(request, id: id, caller: caller)
            default: return try update(request, id: id, caller: caller)
            }
        default: throw Self.methodNotAllowed(request)
        }
    }

    static let notFound = SandboxFailure.problem(.notFound, "Not Found", "No such contact")

    static func methodNotAllowed(_ request: Request) -> SandboxFailure {
        .problem(.methodNotAllowed, "Method Not Allowed", "\(request.method) is not supported here")
    }

    static func badRequest(_ detail: String) -> SandboxFailure { .problem(.badRequest, "Bad Request", detail) }

    static func origin(_ request: Request) -> String { request.sandboxOrigin }

    /// The columns every read renders a contact from; `ticks` is `updated_at` as exact .NET ticks.
    static let columns = """
        id, version_id, type, doc, external_system_id, is_deleted,
        floor(extract(epoch FROM updated_at) * 1000000)::bigint * 10 + 621355968000000000 AS ticks
        """

    // MARK: Reads

    func list(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response {
        let page = try Paging(request)
        var parameters: [any SQLValueConvertible] = [caller.accountID, now]
        var conditions = ["account_id = $1", "visible_at <= $2"]
        func bind(_ value: any SQLValueConvertible) -> String {
            parameters.append(value)
            return "$\(parameters.count)"
        }
        for text in request.queryValues("Search") where !text.isEmpty {
            let term = try SearchTerm(text)
            conditions.append(term.condition(bind(term.value)))
        }
        if let ticks = try DotNetTicks.parameter(request, "UpdatedSince") {
            // Microseconds since 1970, rounded down: a row's ticks exceed `ticks` exactly when its
            // microseconds exceed this.
            let offset = ticks - DotNetTicks.unixEpoch
            let micros = offset / 10 - (offset % 10 < 0 ? 1 : 0)
            conditions.append("updated_at > 'epoch'::timestamptz + \(bind(micros))::bigint * interval '1 microsecond'")
        }
        let types = try request.queryValues("Type").flatMap { $0.split(separator: ",") }.map { name in
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let type = ContactDocument.types.first(where: { $0.caseInsensitiveCompare(trimmed) == .orderedSame })
            else {
                throw Self.badRequest("Type must be one of \(ContactDocument.types.joined(separator: ", "))")
            }
            return type
        }
        if !types.isEmpty {
            // A Postgres array literal of the validated names, bound as one parameter.
            conditions.append("type = ANY(\(bind("{" + types.joined(separator: ",") + "}"))::text[])")
        }
        if let text = request.queryValue("ExcludeDeletedContacts"), !text.isEmpty {
            guard let exclude = Bool(text.lowercased()) else {
                throw Self.badRequest("ExcludeDeletedContacts must be true or false")
            }
            if exclude { conditions.append("NOT is_deleted") }
        }
        // The spec offers lastUpdated only.
        let order = try SortOrder.sql(
            request.queryValue("Sort"), columns: ["lastupdated": "updated_at"], id: "id", fallback: "updated_at")
        let fields = Set(
            request.queryValues("Fields").flatMap { $0.split(separator: ",") }
                .map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
        let filter = conditions.joined(separator: " AND ")
        let counted = parameters
        let offset = bind(page.offset)
        let limit = bind(page.limit)
        let (size, rows) = try database.withConnection { connection in
            let size = try connection.execute("SELECT count(*) AS size FROM sb_contacts WHERE \(filter)", counted)
                .single().int("size")
            let rows = try connection.execute(
                """
                SELECT \(Self.columns) FROM sb_contacts WHERE \(filter)
                ORDER BY \(order) OFFSET \(offset) LIMIT \(limit)
                """,
                parameters
            ).rows
            return (size, rows)
        }
        let origin = Self.origin(request)
        let items = try rows.map { try ContactDocument.render($0, origin: origin, fields: fields) }
        let base = page.base(request, path: path)
        return Response.json(page.envelope(items: items, size: Int(size), base: base))
    }

    func contact(_ request: Request, id: UUID, caller: APIServer.Caller) throws -> Response {
        let row = try database.withConnection { connection in
            try connection.execute(
                "SELECT \(Self.columns) FROM sb_contacts WHERE id = $1 AND account_id = $2 AND visible_at <= $3",
                [id, caller.accountID, now]
            ).first
        }
        guard let row else { throw Self.notFound }
        return Response.json(try ContactDocument.render(row, origin: Self.origin(request), fields: nil))
    }

    static let batchRequest: [String: BodyShape] = ["ids": .list(.string)]

    func batch(_ request: Request, caller: APIServer.Caller) throws -> Response {
        let body = try BodyShape.check(try request.sandboxJSON(), "ContactsBatchRequest", Self.batchRequest)
        let given = body["ids"] as? [String] ?? []
        guard given.count <= 500 else { throw Self.badRequest("At most 500 ids may be supplied per request") }
        // Ids that are not uuids resolve to nothing, like ids of other accounts.
        var ids: [UUID] = []
        for text in given {
            if let id = UUID(uuidString: text), !ids.contains(id) { ids.append(id) }
        }
        let rows =
            ids.isEmpty
            ? []
            : try database.withConnection { connection in
                try connection.execute(
                    """
                    SELECT \(Self.columns) FROM sb_contacts
                    WHERE account_id = $1 AND visible_at <= $2 AND id = ANY($3::uuid[])
                    """,
                    [caller.accountID, now, "{" + ids.map { $0.uuidString.lowercased() }.joined(separator: ",") + "}"]
                ).rows
            }
        var byID: [UUID: Row] = [:]
        for row in rows { byID[try row.uuid("id")] = row }
        let origin = Self.origin(request)
        let items = try ids.compactMap { id in
            try byID[id].map { try ContactDocument.render($0, origin: origin, fields: nil) }
        }
        return Response.json(["value": items])
    }

    // MARK: Writes

    func create(_ request: Request, caller: APIServer.Caller) throws -> Response {
        let changes = try ContactDocument.Changes(try request.sandboxJSON())
        guard let kind = changes.kind, let details = changes.details else {
            throw Self.badRequest("Give one of person, company, trust or groupOfPeople")
        }
        let id = UUID()
        let contact = ContactDocument.Contact(
            kind: kind, details: ContactDocument.withoutNulls(details) as? [String: Any] ?? [:],
            externalSystemID: changes.externalSystemID ?? nil, isDeleted: changes.isDeleted ?? false)
        try database.transaction { connection in
            if let reason = contact.laterFailure(region: caller.region) {
                try ContactDocument.recordError(
                    connection, account: caller.accountID, id: id, action: "create",
                    reason: reason, caller: caller)
                return
            }
            let versionID = UUID()
            // Readable, and updated as far as incremental reads are concerned, once Smokeball applies it.
            let applied = caller.visibleAt(now)
            try connection.execute(
                """
                INSERT INTO sb_contacts (id, account_id, version_id, type, name, email, phone, external_system_id,
                                         is_deleted, doc, created_at, updated_at, visible_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $12)
                """,
                [
                    id, caller.accountID, versionID, kind.type, contact.name, contact.email, contact.phone,
                    contact.externalSystemID, contact.isDeleted, try contact.docJSON(), now, applied,
                ])
            try Events.record(
                connection, account: caller.accountID, type: "contact.created", caller: caller,
                payload: ContactDocument.eventPayload(id: id, versionID: versionID, contact: contact))
        }
        return Accepted.link(request, id: id, path: "/contacts/\(id.uuidString.lowercased())")
    }

    func update(_ request: Request, id: UUID, caller: APIServer.Caller) throws -> Response {
        let body = request.method == "DELETE" ? [:] : try request.sandboxJSON()
        try PendingUpdate(resource: .contact, id: id, method: request.method, body: body).accept(
            database, caller: caller, now: now)
        return Accepted.link(request, id: id, path: "/contacts/\(id.uuidString.lowercased())")
    }
}

/// One `Search` term, `field<op>value`: fields email, phone, name; ops `:` `:!` `:>` `:>=` `:<`
/// `:<=`; `*` is a wildcard for `:` and `:!`; comparisons ignore case.
struct SearchTerm {
    let column: String
    let op: String
    let value: String
    let wildcard: Bool

    static let columns = ["email": "email", "phone": "phone", "name": "name"]

    init(_ text: String) throws {
        guard let colon = text.firstIndex(of: ":") else {
            throw Contacts.badRequest("Search term '\(text)' must look like field:value (fields: email, phone, name)")
        }
        let field = text[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        guard let column = Self.columns[field] else {
            throw Contacts.badRequest("Search field '\(field)' is not one of email, phone, name")
        }
        var rest = text[text.index(after: colon)...]
        var op = ":"
        for candidate in ["!", ">=", "<=", ">", "<"] where rest.hasPrefix(candidate) {
            op += candidate
            rest = rest.dropFirst(candidate.count)
            break
        }
        var value = String(rest)
        // Stored phone numbers are digits only, so formatting in the term does not matter.
        if column == "phone" { value = value.filter { $0.isASCII && ($0.isNumber || $0 == "*") } }
        guard !value.isEmpty else { throw Contacts.badRequest("Search term '\(text)' has no value") }
        wildcard = value.contains("*")
        guard !wildcard || op == ":" || op == ":!" else {
            throw Contacts.badRequest("Search term '\(text)': * is only allowed with : and :!")
        }
        self.column = column
        self.op = op
        // LIKE's own wildcards and escape are literal in a Smokeball term.
        self.value =
            wildcard
            ? value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
                .replacingOccurrences(of: "_", with: "\\_").replacingOccurrences(of: "*", with: "%")
            : value
    }

    /// The SQL condition, from fixed fragments, comparing the column with `parameter` (`$n`).
    func condition(_ parameter: String) -> String {
        let left = "lower(coalesce(\(column), ''))"
        let right = "lower(\(parameter)::text)"
        switch (op, wildcard) {
        case (":", true): return "\(left) LIKE \(right)"
        case (":!", true): return "\(left) NOT LIKE \(right)"
        case (":", false): return "\(left) = \(right)"
        case (":!", false): return "\(left) <> \(right)"
        case (":>", _): return "\(left) > \(right)"
        case (":>=", _): return "\(left) >= \(right)"
        case (":<", _): return "\(left) < \(right)"
        default: return "\(left) <= \(right)"
        }
    }
}

/// A contact's body: the shape ContactDto allows (checked as strictly as the spec's
/// `additionalProperties: false`), the stored document, and its rendering as the spec's `Contact`.
enum ContactDocument {
    static let types = ["Person", "Organisation", "Staff", "GroupOfPeople", "Trust"]

    enum Kind: String, CaseIterable {
        case person, company, trust, groupOfPeople

        var type: String {
            switch self {
            case .person: return "Person"
            case .company: return "Organisation"
            case .trust: return "Trust"
            case .groupOfPeople: return "GroupOfPeople"
            }
        }

        var shape: BodyShape {
            switch self {
            case .person: return BodyShape.person
            case .company: return BodyShape.company
            case .trust: return BodyShape.trust
            case .groupOfPeople: return BodyShape.groupOfPeople
            }
        }
    }

    /// JSON with every null removed (a create stores only what was given).
    static func withoutNulls(_ value: Any) -> Any {
        if let object = value as? [String: Any] {
            return object.filter { !($0.value is NSNull) }.mapValues(withoutNulls)
        }
        if let array = value as? [Any] {
            return array.filter { !($0 is NSNull) }.map(withoutNulls)
        }
        return value
    }

    /// `changes` applied to `base`: a null removes a field, an object merges into the object it
    /// replaces, anything else replaces.
    static func merge(_ base: [String: Any], _ changes: [String: Any]) -> [String: Any] {
        var out = base
        for (key, value) in changes {
            if value is NSNull {
                out[key] = nil
            } else if let object = value as? [String: Any], let old = out[key] as? [String: Any] {
                out[key] = merge(old, object)
            } else {
                out[key] = withoutNulls(value)
            }
        }
        return out
    }

    /// A ContactDto as given: at most one of person, company, trust, groupOfPeople.
    struct Changes {
        var kind: Kind?
        var details: [String: Any]?
        /// nil: not given; .some(nil): cleared.
        var externalSystemID: String??
        var isDeleted: Bool?

        init() {}

        init(_ body: [String: Any]) throws {
            for (key, value) in body {
                if key.caseInsensitiveCompare("externalSystemId") == .orderedSame {
                    if value is NSNull {
                        externalSystemID = .some(nil)
                    } else {
                        guard let text = BodyShape.isString(value) else {
                            throw Contacts.badRequest("externalSystemId must be a string")
                        }
                        externalSystemID = text
                    }
                } else if key.caseInsensitiveCompare("isDeleted") == .orderedSame {
                    guard let flag = BodyShape.isBoolean(value) else {
                        throw Contacts.badRequest("isDeleted must be true or false")
                    }
                    isDeleted = flag
                } else if let kind = Kind.allCases.first(where: {
                    $0.rawValue.caseInsensitiveCompare(key) == .orderedSame
                }) {
                    if value is NSNull { continue }
                    guard self.kind == nil else {
                        throw Contacts.badRequest("Give only one of person, company, trust or groupOfPeople")
                    }
                    self.kind = kind
                    details = try BodyShape.normalise(value, kind.shape, at: kind.rawValue) as? [String: Any]
                } else {
                    throw Contacts.badRequest("\(key) is not a property of ContactDto")
                }
            }
        }
    }

    /// A contact as stored: its kind's details under the kind's key in `doc`.
    struct Contact {
        var kind: Kind
        var details: [String: Any]
        var externalSystemID: String?
        var isDeleted: Bool

        var name: String {
            switch kind {
            case .person:
                return ["firstName", "lastName"].compactMap { details[$0] as? String }.filter { !$0.isEmpty }
                    .joined(separator: " ")
            case .company, .trust: return details["name"] as? String ?? ""
            case .groupOfPeople: return ""
            }
        }

        var email: String? { (details["email"] as? String).flatMap { $0.isEmpty ? nil : $0 } }

        /// Digits only, so a Search on phone ignores formatting.
        var phone: String? {
            for key in ["phone", "cell"] {
                guard let number = details[key] as? [String: Any] else { continue }
                let digits = ((number["areaCode"] as? String ?? "") + (number["number"] as? String ?? ""))
                    .filter { $0.isASCII && $0.isNumber }
                if !digits.isEmpty { return digits }
            }
            return nil
        }

        /// Canonical JSON (sorted keys) of what an update can change.
        func fingerprint() throws -> [UInt8] {
            var all: [String: Any] = ["details": details, "isDeleted": isDeleted]
            if let externalSystemID { all["externalSystemId"] = externalSystemID }
            return try JSONWriter.encode(all)
        }

        func docJSON() throws -> SQLValue {
            .json(String(decoding: try JSONWriter.encode([kind.rawValue: details]), as: UTF8.self))
        }

        /// Why Smokeball's processing would reject this contact, if it would.
        func laterFailure(region: String) -> String? {
            if let email = details["email"] as? String, !email.isEmpty,
                email.range(of: #"^[^@\s]+@[^@\s]+\.[^@\s.]+$"#, options: .regularExpression) == nil
            {
                return "\(kind.rawValue).email '\(email)' is not a valid email address"
            }
            switch kind {
            case .person where name.isEmpty: return "person needs a firstName or lastName"
            case .company where name.isEmpty: return "company.name is required"
            case .trust where name.isEmpty: return "trust.name is required"
            case .trust where region != "US": return "Trust contacts are only supported in the US"
            case .groupOfPeople where region == "UK": return "GroupOfPeople contacts are not supported in the UK"
            default: break
            }
            for key in ["staffIds", "directorIds", "peopleIds"] {
                for id in details[key] as? [String] ?? [] where UUID(uuidString: id) == nil {
                    return "\(kind.rawValue).\(key) contains '\(id)', which is not a contact id"
                }
            }
            return nil
        }
    }

    /// What a contact event carries: enough to fetch the contact and to recognise one's own write.
    static func eventPayload(id: UUID, versionID: UUID, contact: Contact) -> [String: Any] {
        var payload: [String: Any] = [
            "id": id.uuidString.lowercased(), "versionId": versionID.uuidString.lowercased(), "type": contact.kind.type,
        ]
        if let external = contact.externalSystemID { payload["externalSystemId"] = external }
        return payload
    }

    static func recordError(
        _ connection: Connection, account: UUID, id: UUID, action: String, reason: String, caller: APIServer.Caller?
    ) throws {
        try Events.record(
            connection, account: account, type: "error", caller: caller,
            payload: ["resource": "contact", "id": id.uuidString.lowercased(), "action": action, "message": reason])
    }

    enum Outcome {
        case applied(Contact)
        case unchanged
        case failed(String)
    }

    /// Applies `changes` to a readable contact of the account (404 otherwise) and records the
    /// event: `contact.deleted` when it becomes deleted, else `contact.updated`. With a write
    /// delay this runs when the update is due (see `PendingUpdate`).
    static func apply(
        _ changes: Changes, to id: UUID, account: UUID, region: String, caller: APIServer.Caller?, now: Date,
        connection: Connection
    ) throws -> Outcome {
        let row = try connection.execute(
            """
            SELECT type, doc, external_system_id, is_deleted FROM sb_contacts
            WHERE id = $1 AND account_id = $2 AND visible_at <= $3 FOR UPDATE
            """, [id, account, now]
        ).first
        guard let row else { throw Contacts.notFound }
        let current = try contact(row)
        if let kind = changes.kind, kind != current.kind {
            throw Contacts.badRequest("This contact is a \(current.kind.type); \(kind.rawValue) cannot be given")
        }
        var updated = current
        if let details = changes.details { updated.details = merge(current.details, details) }
        if let external = changes.externalSystemID { updated.externalSystemID = external }
        if let deleted = changes.isDeleted { updated.isDeleted = deleted }
        if let reason = updated.laterFailure(region: region) { return .failed(reason) }
        // An update that changes nothing gets no new version and no event.
        guard try current.fingerprint() != updated.fingerprint() else { return .unchanged }
        let versionID = UUID()
        try connection.execute(
            """
            UPDATE sb_contacts SET version_id = $2, name = $3, email = $4, phone = $5, external_system_id = $6,
                is_deleted = $7, doc = $8::jsonb, updated_at = $9
            WHERE id = $1
            """,
            [
                id, versionID, updated.name, updated.email, updated.phone, updated.externalSystemID, updated.isDeleted,
                try updated.docJSON(), now,
            ])
        try Events.record(
            connection, account: account,
            type: updated.isDeleted && !current.isDeleted ? "contact.deleted" : "contact.updated", caller: caller,
            payload: eventPayload(id: id, versionID: versionID, contact: updated))
        return .applied(updated)
    }

    static func contact(_ row: Row) throws -> Contact {
        let doc = try row.json("doc") as? [String: Any] ?? [:]
        let kind = Kind.allCases.first { doc[$0.rawValue] != nil } ?? .person
        return Contact(
            kind: kind, details: doc[kind.rawValue] as? [String: Any] ?? [:],
            externalSystemID: try row.optionalString("external_system_id"), isDeleted: try row.bool("is_deleted"))
    }

    // MARK: Rendering

    /// Details a list leaves out unless `Fields` names them (the spec's "Available fields").
    static let optionalFields = [
        "passportDetails", "deathDetails", "citizenshipDetails", "utbmsDetails", "executionOptions",
    ]

    static func link(_ id: String, origin: String) -> [String: Any] {
        ["id": id, "href": origin + "/contacts/" + id, "method": "GET"]
    }

    /// A row as the spec's `Contact`. `fields` is nil for a single contact (everything) and the
    /// lower-cased `Fields` names for a list.
    static func render(_ row: Row, origin: String, fields: Set<String>?) throws -> [String: Any] {
        let stored = try contact(row)
        let id = try row.uuid("id").uuidString.lowercased()
        var details = stored.details
        switch stored.kind {
        case .person:
            // PersonDto takes identificationDetails; Person does not report it.
            details["identificationDetails"] = nil
        case .company:
            if let staff = details["staffIds"] as? [String] {
                details["staff"] = staff.map { link($0, origin: origin) }
            }
            if let directors = details.removeValue(forKey: "directorIds") as? [String] {
                details["directors"] = directors.map { link($0, origin: origin) }
            }
        case .groupOfPeople:
            if let people = details.removeValue(forKey: "peopleIds") as? [String] {
                details["people"] = people.map { link($0, origin: origin) }
            }
        case .trust: break
        }
        if let fields {
            for name in optionalFields where !fields.contains(name.lowercased()) { details[name] = nil }
        }
        var item: [String: Any] = [
            "id": id, "href": origin + "/contacts/" + id,
            "versionId": try row.uuid("version_id").uuidString.lowercased(),
            "isDeleted": stored.isDeleted, "lastUpdated": try row.int("ticks"), stored.kind.rawValue: details,
        ]
        if let external = stored.externalSystemID { item["externalSystemId"] = external }
        return item
    }
}

/// ContactDto's kinds (PersonDto, CompanyDto, TrustDto, GroupOfPeopleDto) and what they contain.
extension BodyShape {
    static let phone = object(["areaCode", "number"])
    static let addressFields = [
        "careOf", "buildingLevel", "unitNumber", "unitType", "streetNumber", "streetName", "streetType", "addressLine1",
        "addressLine2", "city", "state", "zipCode", "locality", "county", "country",
    ]
    static let poBox = object(["careOf", "poBoxType", "poBoxNumber", "city", "state", "zipCode"])
    static let address = object(addressFields, ["poBox": poBox])
    static let executionPerson = object(["name", "personType", "selectedOfficeHeld"], ["address": address])

    static let person = object(
        [
            "title", "firstName", "middleName", "lastName", "nameSuffix", "customName", "otherNames", "email", "notes",
            "occupation", "birthPlace", "birthState", "birthCountry", "identificationNumberType",
            "identificationNumber", "gender", "maritalStatus", "specialNeeds", "birthFirstName", "birthMiddleName",
            "birthLastName", "previousNames", "correctionsReferenceNumber", "centrelinkReferenceNumber",
        ],
        [
            "residentialAddress": address, "mailingAddress": address, "phone": phone,
            "phone2": object(["areaCode", "number", "extension"]), "fax": phone, "cell": phone, "birthDate": .dateTime,
            "passportDetails": object(
                ["passportNumber", "passportIssueCountry", "passportIssueAuthority"],
                ["passportIssueDate": .dateTime, "passportExpireDate": .dateTime]),
            "deathDetails": object(
                ["deathPlace", "deathState", "deathCountry", "deathCounty"],
                [
                    "deathDate": .dateTime, "isDeathDateUnknown": .flag, "deathDateFrom": .dateTime,
                    "deathDateTo": .dateTime,
                ]),
            "identificationDetails": object([
                "alienNumber", "registrationAuthority", "registrationNumber", "driversLicenseNumber",
                "driversLicenseState", "medicareNumber",
            ]),
            "citizenshipDetails": object(["countryOfCitizenship", "nationality", "languageOfInterpreter"]),
            "utbmsDetails": object(["ledesClientId"]),
            "executionOptions": object(
                ["poaType", "attorneyName", "poaRegisteredBook", "poaRegisteredNumber", "executionType"],
                ["poaDate": .dateTime, "address": address]),
        ])

    static let company = object(
        [
            "name", "type", "email", "website", "notes", "abn", "ein", "stateId", "stateRegisteredIn",
            "countryRegisteredIn", "branch", "companyNumberType", "companyNumber", "doingBusinessAsName", "tradingAs",
            "tradingName",
        ],
        [
            "phone": phone, "fax": phone,
            "businessAddress": .object(
                strings(addressFields).merging(["poBox": poBox, "dxAddress": object(["number", "exchange", "state"])]) {
                    $1
                }),
            "mailingAddress": address, "registeredAddress": address, "registeredDate": .dateTime,
            "firmIsRegisteredAgent": .boolean, "companyManagedBy": .managedBy, "staffIds": .list(.string),
            "directorIds": .list(.string),
            "executionOptions": object(
                ["executingAuthority", "sealType", "poaRegistrationNumber", "executionType"],
                [
                    "person1": executionPerson, "person2": executionPerson, "executingUnder127": .boolean,
                    "authorisedDepositTakingInstitution": .boolean, "attorneyNames": .list(.string),
                ]),
        ])

    static let trust = object(
        ["name", "status", "trustNumber"],
        [
            "executedDate": .dateTime, "phone": phone, "fax": phone, "address": address,
            "trustees": .list(object(["name", "type"])),
        ])

    static let groupOfPeople = BodyShape.object([
        "peopleIds": .list(.string), "residentialAddress": address, "mailingAddress": address,
    ])
}
