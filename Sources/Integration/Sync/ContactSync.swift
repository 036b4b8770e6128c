import Foundation
import PostgreSQL
import Smokeball

/// The Smokeball contact a client is linked to, and how it was found.
public struct ContactLink: Sendable, Equatable, Encodable {
    public enum How: String, Sendable, Encodable {
        case email
        case phoneLastName = "phone_last_name"
        case created
        case externalSystemID = "external_system_id"
        /// Made by the import of existing Smokeball matters, for that contact.
        case imported
    }

    /// The CaseHug client.
    public let clientID: UUID
    /// The Smokeball contact.
    public let contactID: String
    public let linkedBy: How

    enum CodingKeys: String, CodingKey {
        case contactID = "id"
        case linkedBy = "linked_by"
    }
}

/// The contact step of a matter's sync: the client's stored link; else an existing contact with
/// the same email (exact, case-insensitive); else one with the same phone and last name; else a
/// new person with `externalSystemId` = the client id, created under a durable intent so that a
/// re-run after a crash finds it (the answered id, else a listing of recently changed contacts
/// matched on `externalSystemId`) instead of creating a second.
public struct ContactSync: Sendable {
    public var recovery: SyncRecovery

    public init(recovery: SyncRecovery = .standard) {
        self.recovery = recovery
    }

    /// The CaseHug client as the step needs it.
    struct Client {
        let id: UUID
        let firstName: String
        let lastName: String
        let email: String?
        let phone: String?
        let contactID: String?
        let linkedBy: ContactLink.How?

        var externalSystemID: String { id.uuidString.lowercased() }
    }

    /// Links the client (`clientID`, of the scope's firm) to a Smokeball contact; `matterID` is
    /// the matter the history rows belong to.
    public func sync(
        clientID: UUID, matterID: UUID?, scope: any TenantScope, database: Database, session: SmokeballSession
    ) throws -> ContactLink {
        let (client, intent, age) = try database.transaction { connection in
            _ = try scope.enter(connection)
            let client = try Self.load(connection, clientID)
            guard client.contactID == nil, let intent = try SyncIntents.open(connection, .contact, localID: clientID)
            else { return (client, SyncIntent?.none, 0.0) }
            return (client, intent, try SyncRecovery.age(connection, intent))
        }
        if let contactID = client.contactID, let how = client.linkedBy {
            // Linked before: no request.
            return ContactLink(clientID: clientID, contactID: contactID, linkedBy: how)
        }
        if let intent {
            if let found = try recover(intent, age: age, client: client, session: session) {
                return try link(
                    client, found.id, found.how, outcome: found.how == .created ? .created : .linked, intent: intent,
                    matterID: matterID, scope: scope, database: database)
            }
            // Proved never made: forget it and carry on as if it had never been.
            try database.transaction { connection in
                _ = try scope.enter(connection)
                try SyncIntents.abandon(connection, intent.id)
            }
        }
        if let email = Self.trimmed(client.email), let id = try findByEmail(email, session: session) {
            return try link(
                client, id, .email, outcome: .linked, intent: nil, matterID: matterID, scope: scope,
                database: database)
        }
        if let phone = Self.trimmed(client.phone), !SmokeballContact.digits(phone).isEmpty,
            let lastName = Self.trimmed(client.lastName),
            let id = try findByPhone(phone, lastName: lastName, session: session)
        {
            return try link(
                client, id, .phoneLastName, outcome: .linked, intent: nil, matterID: matterID, scope: scope,
                database: database)
        }
        return try create(client, matterID: matterID, scope: scope, database: database, session: session)
    }

    // MARK: Finding

    /// An existing contact whose email is exactly `email` (ignoring case). The search narrows;
    /// the match is decided here, so a `*` or an odd character in the address never widens it.
    func findByEmail(_ email: String, session: SmokeballSession) throws -> String? {
        let wanted = email.lowercased()
        return try first(
            query: [("Search", "email:" + email)], session: session
        ) { contact in contact.emails.contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == wanted } }
    }

    /// An existing person with this phone number (its digits) and exactly this last name
    /// (ignoring case).
    func findByPhone(_ phone: String, lastName: String, session: SmokeballSession) throws -> String? {
        let digits = SmokeballContact.digits(phone)
        let wanted = lastName.lowercased()
        var query = [("Search", "phone:" + digits)]
        // `*` is the search's wildcard: a name holding one is matched here only.
        if !lastName.contains("*") { query.append(("Search", "name:*" + lastName)) }
        return try first(query: query, session: session) { contact in
            guard let person = contact.person,
                person.lastName?.trimmingCharacters(in: .whitespaces).lowercased() == wanted
            else { return false }
            return [person.phone, person.cell].compactMap { $0 }.contains {
                $0.digits == digits || SmokeballContact.digits($0.number ?? "") == digits
            }
        }
    }

    /// The first live contact of a search (all pages) that `matches`.
    func first(
        query: [(String, String)], session: SmokeballSession, matches: (SmokeballContact) -> Bool
    ) throws -> String? {
        var found: String?
        try session.client.forEachPage("/contacts", query: query, access: session.access, lane: session.lane) {
            (page: [SmokeballContact]) in
            found = page.first { $0.isDeleted != true && $0.id != nil && matches($0) }?.id
            return found == nil
        }
        return found
    }

    /// What an open intent left: the answered id, else the contact with the client's
    /// `externalSystemId` among those changed since shortly before the intent. nil when the
    /// intent is old enough that Smokeball would show what it made; throws (retryable) while
    /// it is younger.
    func recover(_ intent: SyncIntent, age: Double, client: Client, session: SmokeballSession) throws
        -> (id: String, how: ContactLink.How)?
    {
        if let id = intent.externalID { return (id, .created) }
        let wanted = (intent.externalSystemID ?? client.externalSystemID).lowercased()
        if let id = try first(
            query: [("UpdatedSince", recovery.updatedSince(intent))], session: session,
            matches: { $0.externalSystemId?.lowercased() == wanted })
        {
            return (id, .externalSystemID)
        }
        guard age >= recovery.settle(session.client) else { throw SyncRecovery.waiting }
        return nil
    }

    // MARK: Creating

    func create(
        _ client: Client, matterID: UUID?, scope: any TenantScope, database: Database, session: SmokeballSession
    ) throws -> ContactLink {
        let intent = try database.transaction { connection in
            _ = try scope.enter(connection)
            return try SyncIntents.begin(
                connection, .contact, localID: client.id, externalSystemID: client.externalSystemID)
        }
        let phone = Self.trimmed(client.phone).flatMap { SmokeballContact.digits($0).isEmpty ? nil : $0 }
        let body = NewContact(
            person: NewContact.Person(
                firstName: client.firstName, lastName: client.lastName, email: Self.trimmed(client.email),
                phone: phone.map { NewContact.Phone(number: $0) }),
            externalSystemId: client.externalSystemID)
        let answer = try SyncRecovery.sendCreate(under: intent, database: database, scope: scope) {
            try session.client.write(
                "POST", "/contacts", body: body, access: session.access, lane: session.lane,
                requestID: intent.requestID)
        }
        guard let id = answer.value.id, !id.isEmpty else {
            // Accepted without an id: the re-run finds it by its externalSystemId.
            throw SmokeballError(.invalidResponse, upstreamStatus: answer.status, requestID: answer.requestID)
        }
        return try link(
            client, id, .created, outcome: .created, intent: intent, matterID: matterID, scope: scope,
            database: database, accept: true)
    }

    /// Stores the link on the client, closes the intent, and records the history row, in one
    /// transaction.
    func link(
        _ client: Client, _ contactID: String, _ how: ContactLink.How, outcome: SyncLog.Outcome, intent: SyncIntent?,
        matterID: UUID?, scope: any TenantScope, database: Database, accept: Bool = false
    ) throws -> ContactLink {
        try database.transaction { connection in
            _ = try scope.enter(connection)
            if let intent, accept { try SyncIntents.accept(connection, intent.id, externalID: contactID) }
            try connection.execute(
                """
                UPDATE clients SET smokeball_contact_id = $2, smokeball_contact_linked_by = $3,
                                   smokeball_synced_at = now()
                WHERE firm_id = app_current_firm() AND id = $1::uuid
                """, [client.id, contactID, how.rawValue])
            if let intent { try SyncIntents.finish(connection, intent.id, externalID: contactID) }
            try SyncLog.record(
                connection, step: .contact, outcome: outcome, matterID: matterID, externalID: contactID,
                details: ["client_id": client.externalSystemID, "linked_by": how.rawValue])
        }
        return ContactLink(clientID: client.id, contactID: contactID, linkedBy: how)
    }

    // MARK: Reading

    static func load(_ connection: Connection, _ clientID: UUID) throws -> Client {
        guard
            let row = try connection.execute(
                """
                SELECT id, first_name, last_name, email, phone, smokeball_contact_id, smokeball_contact_linked_by
                FROM clients WHERE firm_id = app_current_firm() AND id = $1::uuid
                """, [clientID]
            ).first
        else { throw JobError(SyncFailure.notFound, "the matter's client was not found", retryable: false) }
        return Client(
            id: try row.uuid("id"), firstName: try row.string("first_name"), lastName: try row.string("last_name"),
            email: try row.optionalString("email"), phone: try row.optionalString("phone"),
            contactID: try row.optionalString("smokeball_contact_id"),
            linkedBy: try row.optionalString("smokeball_contact_linked_by").flatMap(ContactLink.How.init(rawValue:)))
    }

    static func trimmed(_ text: String?) -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
        return text
    }
}
