import Basics
import FastCGI
import Foundation
import PostgreSQL

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
                    guard let flag = JSONBoolean.value(value) else {
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

    /// The contact as a webhook payload: its GET representation (the spec's `Contact`) at this
    /// moment, whether or not it is readable yet.
    static func payload(_ connection: Connection, id: UUID, account: UUID) throws -> [String: Any] {
        let row = try connection.execute(
            "SELECT \(Contacts.columns) FROM sb_contacts WHERE id = $1 AND account_id = $2", [id, account]
        ).single()
        return Events.payload(try render(row, origin: "", fields: nil))
    }

    static func recordError(
        _ connection: Connection, account: UUID, id: UUID, reason: String, caller: APIServer.Caller?
    ) throws {
        try Events.record(
            connection, account: account, type: "error", caller: caller,
            payload: Events.error(message: reason, resourceName: "contact", resourceID: id))
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
        _ changes: Changes, to id: UUID, account: UUID, region: String, caller: APIServer.Caller?,
        firmUser: UUID? = nil, now: Date, connection: Connection
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
            firmUser: firmUser,
            payload: try payload(connection, id: id, account: account))
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
