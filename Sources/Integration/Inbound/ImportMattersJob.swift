import Foundation
import PostgreSQL
import Smokeball

/// `import_matters`: fills CaseHug with the firm's existing Smokeball matters (docs/inbound.md,
/// "Importing existing matters"). Pages through `GET /matters` and, for each page, reads the
/// clients it names that CaseHug does not know yet in one `POST /contacts/batch`; then, in one
/// transaction per page, creates the clients and matters, linked. What is already linked, what
/// CaseHug created itself, deleted matters, leads and matters outside the four practice areas
/// are skipped and counted. A re-run (after a crash, or asked again) creates nothing twice: the
/// links are the record of what was imported.
public struct ImportMattersJob: JobHandler {
    public static let kind = "import_matters"
    public static let key = "firm"
    public var kind: String { Self.kind }

    /// Smokeball's limit for `POST /contacts/batch`.
    static let batchLimit = 500

    let tokens: SmokeballTokenProvider
    let matterTypes: MatterTypeResolver

    public init(tokens: SmokeballTokenProvider, matterTypes: MatterTypeResolver) {
        self.tokens = tokens
        self.matterTypes = matterTypes
    }

    /// Enqueues the import for the firm `connection`'s transaction is bound to (one pending per
    /// firm: a second request joins it).
    public static func enqueue(_ connection: Connection) throws -> UUID {
        try JobQueue.enqueue(connection, kind: kind, key: key, payload: [String: String](), priority: .bulk)
    }

    /// The job's result: counts of this run.
    struct Counts: Encodable, Sendable, Equatable {
        var total = 0
        var imported = 0
        var skippedLinked = 0
        var skippedOurs = 0
        var skippedOtherArea = 0
        var skippedDeleted = 0
        var skippedLeads = 0
        var clientsCreated = 0
        var clientsLinked = 0

        var done: Int { imported + skippedLinked + skippedOurs + skippedOtherArea + skippedDeleted + skippedLeads }

        enum CodingKeys: String, CodingKey {
            case total, imported
            case skippedLinked = "skipped_linked"
            case skippedOurs = "skipped_ours"
            case skippedOtherArea = "skipped_other_area"
            case skippedDeleted = "skipped_deleted"
            case skippedLeads = "skipped_leads"
            case clientsCreated = "clients_created"
            case clientsLinked = "clients_linked"
        }
    }

    static let stopped = JobError(
        JobError.Code(rawValue: "stopped"), "the worker stopped before the end; the next attempt goes on",
        retryable: true)

    public func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        do {
            return try tokens.withAccess(context.scope) { client, access in
                try importAll(
                    context, SmokeballSession(client: client, access: access, lane: .background))
            }
        } catch {
            throw SyncFailure.jobError(error, doing: "importing the firm's Smokeball matters")
        }
    }

    func importAll(_ context: JobContext, _ session: SmokeballSession) throws -> Counts {
        let mapping = try reverseMapping(context, session)
        var counts = Counts()
        var offset = 0
        while true {
            if context.isStopping { throw Self.stopped }
            let page: SmokeballResult<PagedCollection<SmokeballMatter>> = try session.client.get(
                "/matters", query: [("Offset", String(offset)), ("Limit", String(session.client.pageSize))],
                access: session.access, lane: session.lane)
            let items = page.value.value ?? []
            counts.total = max(page.value.size ?? 0, offset + items.count)
            try importPage(items, mapping: mapping, counts: &counts, context: context, session: session)
            offset += items.count
            // The end: as forEachPage decides it.
            if items.isEmpty || items.count < session.client.pageSize { break }
            if let size = page.value.size, offset >= size { break }
        }
        return counts
    }

    /// The firm's Smokeball matter type → case type mapping (also `MatterCreatedImport`'s).
    func reverseMapping(_ context: JobContext, _ session: SmokeballSession) throws -> ReverseMapping {
        let (settings, catalogue) = try matterTypes.types(scope: context.scope, session: session)
        return try context.database.transaction(readOnly: true) { connection in
            _ = try context.scope.enter(connection)
            return ReverseMapping(
                caseTypes: try Self.caseTypes(connection), mappings: settings.caseTypeMappings, catalogue: catalogue)
        }
    }

    // MARK: One page

    /// What CaseHug already knows about a page's matters and their clients.
    struct Known {
        var linkedMatters: Set<String> = []
        var ourMatters: Set<String> = []
        /// Smokeball contact id → the CaseHug client linked to it (the oldest, when several are).
        var clients: [String: UUID] = [:]
    }

    static func known(_ connection: Connection, _ matters: [SmokeballMatter]) throws -> Known {
        var known = Known()
        let ids = matters.compactMap(\.id)
        for row in try connection.execute(
            """
            SELECT smokeball_matter_id FROM matters
            WHERE firm_id = app_current_firm() AND smokeball_matter_id IN (SELECT jsonb_array_elements_text($1::jsonb))
            """, [try json(ids)]
        ).rows {
            known.linkedMatters.insert(try row.string("smokeball_matter_id"))
        }
        let external = matters.compactMap { $0.externalSystemId.flatMap(UUID.init(uuidString:)) }
        if !external.isEmpty {
            for row in try connection.execute(
                """
                SELECT id FROM matters
                WHERE firm_id = app_current_firm() AND id IN (SELECT x::uuid FROM jsonb_array_elements_text($1::jsonb) x)
                """, [try json(external.map { $0.uuidString.lowercased() })]
            ).rows {
                known.ourMatters.insert(try row.uuid("id").uuidString.lowercased())
            }
        }
        let contactIDs = Set(matters.compactMap { $0.clients?.first?.id })
        if !contactIDs.isEmpty {
            for row in try connection.execute(
                """
                SELECT id, smokeball_contact_id FROM clients
                WHERE firm_id = app_current_firm()
                  AND smokeball_contact_id IN (SELECT jsonb_array_elements_text($1::jsonb))
                ORDER BY created_at DESC, id DESC
                """, [try json(contactIDs.sorted())]
            ).rows {
                // Newest first, so the oldest is left standing.
                known.clients[try row.string("smokeball_contact_id")] = try row.uuid("id")
            }
        }
        return known
    }

    /// Why a matter is not imported, or nil when it is.
    enum Skip {
        case linked, ours, deleted, lead, otherArea
    }

    static func skip(_ matter: SmokeballMatter, _ known: Known, _ mapping: ReverseMapping) -> Skip? {
        guard let id = matter.id else { return .otherArea }
        if known.linkedMatters.contains(id) { return .linked }
        if let external = matter.externalSystemId.flatMap(UUID.init(uuidString:)),
            known.ourMatters.contains(external.uuidString.lowercased())
        {
            return .ours
        }
        if matter.status?.lowercased() == "deleted" { return .deleted }
        if matter.isLead == true { return .lead }
        guard let typeID = matter.matterType?.id, mapping.caseType(typeID) != nil else { return .otherArea }
        return nil
    }

    func importPage(
        _ matters: [SmokeballMatter], mapping: ReverseMapping, counts: inout Counts, context: JobContext,
        session: SmokeballSession
    ) throws {
        guard !matters.isEmpty else {
            context.report(JobProgress(done: counts.done, total: counts.total))
            return
        }
        // Which clients must be read: those of matters to import that no CaseHug client is linked to.
        let before = try context.database.transaction(readOnly: true) { connection in
            _ = try context.scope.enter(connection)
            return try Self.known(connection, matters)
        }
        var wanted: [String] = []
        var seen = Set<String>()
        for matter in matters where Self.skip(matter, before, mapping) == nil {
            if let contact = matter.clients?.first?.id, before.clients[contact] == nil, seen.insert(contact).inserted {
                wanted.append(contact)
            }
        }
        var contacts: [String: SmokeballContact] = [:]
        var start = 0
        while start < wanted.count {
            let ids = Array(wanted[start..<min(start + Self.batchLimit, wanted.count)])
            let answer = try session.client.write(
                "POST", "/contacts/batch", body: ["ids": ids], access: session.access, lane: session.lane,
                as: PagedCollection<SmokeballContact>.self)
            for contact in answer.value.value ?? [] where contact.isDeleted != true {
                if let id = contact.id { contacts[id] = contact }
            }
            start += Self.batchLimit
        }
        try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            // Smokeball already holds what is written here: migration 033's triggers send nothing back.
            try connection.execute("SELECT set_config('app.sync_origin', 'smokeball', true)")
            // One import at a time per firm (a second job asked while one runs waits here, then
            // finds this page linked), so a contact never gets two clients.
            try connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext('import_matters'), hashtext(app_current_firm()::text))")
            var known = try Self.known(connection, matters)
            var writer = try PageWriter(connection, candidatesFor: Array(contacts.values))
            for matter in matters {
                if let skip = Self.skip(matter, known, mapping) {
                    switch skip {
                    case .linked: counts.skippedLinked += 1
                    case .ours: counts.skippedOurs += 1
                    case .deleted: counts.skippedDeleted += 1
                    case .lead: counts.skippedLeads += 1
                    case .otherArea: counts.skippedOtherArea += 1
                    }
                    continue
                }
                guard let id = matter.id, let typeID = matter.matterType?.id, let caseType = mapping.caseType(typeID)
                else { continue }
                var clientID: UUID?
                let contactID = matter.clients?.first?.id
                if let contactID {
                    if let linked = known.clients[contactID] {
                        clientID = linked
                    } else if let contact = contacts[contactID] {
                        let client = writer.client(for: contact, contactID: contactID, counts: &counts)
                        known.clients[contactID] = client
                        clientID = client
                    }
                }
                let status = Self.status(matter.status)
                let record = MatterRecord(
                    id: UUID(), clientID: clientID,
                    title: Self.title(matter), caseNumber: ContactSync.trimmed(matter.number),
                    status: status, caseType: caseType.request, smokeballMatterID: id, linkStatus: "confirmed",
                    sentJSON: nil)
                // What a sync of the unchanged matter would send: it then sends nothing.
                var sent = MatterSync.desired(
                    record, contactID: contactID ?? "", type: mapping.forward(caseType, actual: typeID))
                if contactID == nil { sent["clientIds"] = .list([]) }
                writer.matters.append(
                    PageWriter.NewMatter(
                        id: record.id, clientID: clientID, title: record.title, caseNumber: record.caseNumber,
                        caseType: caseType.key, status: status, smokeballMatterID: id, sent: sent))
                known.linkedMatters.insert(id)
                counts.imported += 1
            }
            try writer.write(connection)
            // With the page's writes: `GET sync?job_id=` moves page by page, and never counts
            // more than is committed.
            try context.report(JobProgress(done: counts.done, total: counts.total), in: connection)
        }
    }

    /// Open and Pending are active; Closed and Cancelled closed (Deleted is not imported).
    static func status(_ smokeball: String?) -> String {
        switch smokeball?.lowercased() {
        case "closed", "cancelled", "deleted": "closed"
        default: "active"
        }
    }

    /// Smokeball's computed title; a matter without one (none is documented) by its description or number.
    static func title(_ matter: SmokeballMatter) -> String {
        for candidate in [matter.title, matter.description, matter.number] {
            if let text = ContactSync.trimmed(candidate) { return text }
        }
        return "Smokeball matter"
    }

    static func json(_ value: some Encodable) throws -> SQLValue {
        .json(String(decoding: try JSONEncoder().encode(value), as: UTF8.self))
    }

    // MARK: Case types

    struct CaseType: Sendable, Equatable {
        let key: String
        let practiceArea: String
        let request: MatterTypeRequest
    }

    static func caseTypes(_ connection: Connection) throws -> [CaseType] {
        try connection.execute(
            """
            SELECT key, practice_area, display_name, smokeball_category, smokeball_matter_type
            FROM case_types ORDER BY sort_order, key
            """
        ).rows.map {
            CaseType(
                key: try $0.string("key"), practiceArea: try $0.string("practice_area"),
                request: MatterTypeRequest(
                    caseType: try $0.string("key"), displayName: try $0.string("display_name"),
                    category: try $0.string("smokeball_category"),
                    builtInName: try $0.string("smokeball_matter_type")))
        }
    }
}

/// Smokeball matter type → CaseHug case type, the sync's mapping read backwards: the firm's
/// custom mappings first, then each case type's built-in (category, name), then the catch-all
/// case type (`<area>_other`, migration 037) of the area whose category the type is in. Case
/// types earlier in `sort_order` win when several map to one type (Motor Vehicle Accident is
/// `auto_accident`).
struct ReverseMapping: Sendable {
    private var byType: [String: ImportMattersJob.CaseType] = [:]
    private var byCategory: [String: ImportMattersJob.CaseType] = [:]
    private var types: [String: MatterTypeResolver.CachedType] = [:]
    /// Each case type's forward type, as the sync would choose it now (nil: none found).
    private var forwardTypes: [String: ResolvedMatterType] = [:]
    private let location: String

    init(
        caseTypes: [ImportMattersJob.CaseType], mappings: [String: String], catalogue: MatterTypeResolver.Catalogue
    ) {
        location = catalogue.location
        for type in catalogue.types { types[type.id] = type }
        for caseType in caseTypes {
            if let mapping = mappings[caseType.key],
                let type = catalogue.custom(mapping, preferring: caseType.request.category), byType[type.id] == nil
            {
                byType[type.id] = caseType
            }
        }
        for caseType in caseTypes where mappings[caseType.key] == nil {
            if let type = catalogue.named(caseType.request.builtInName, in: caseType.request.category),
                byType[type.id] == nil
            {
                byType[type.id] = caseType
            }
        }
        let catchAll = Set(caseTypes.map { $0.practiceArea + "_other" })
        for caseType in caseTypes where catchAll.contains(caseType.key) {
            byCategory[caseType.request.category.lowercased()] = caseType
        }
        for caseType in caseTypes {
            forwardTypes[caseType.key] = try? MatterTypeResolver.choose(
                caseType.request, mapping: mappings[caseType.key], in: catalogue)
        }
    }

    /// The case type a matter of this Smokeball type is imported as; nil outside the four areas
    /// (and for a type the location's catalogue does not list: its category is unknown).
    func caseType(_ typeID: String) -> ImportMattersJob.CaseType? {
        if let mapped = byType[typeID] { return mapped }
        guard let type = types[typeID], !type.isLead, let category = type.category else { return nil }
        return byCategory[category.lowercased()]
    }

    /// The type a sync of the imported matter would send: its case type's forward type, else
    /// (none found now) the matter's own, so the baseline never invents a change.
    func forward(_ caseType: ImportMattersJob.CaseType, actual typeID: String) -> ResolvedMatterType {
        if let type = forwardTypes[caseType.key] { return type }
        let type = types[typeID]
        return ResolvedMatterType(
            id: typeID, name: type?.name ?? "", category: type?.category, location: location,
            clientRole: type?.representativeOptions.first, source: .custom)
    }
}

/// One page's writes, set-based: the new clients, the existing clients newly linked, the new
/// matters, each in one statement.
struct PageWriter {
    struct NewClient: Encodable {
        let id: UUID
        let firstName: String
        let lastName: String
        let email: String?
        let phone: String?
        let contactID: String

        enum CodingKeys: String, CodingKey {
            case id, email, phone
            case firstName = "first_name"
            case lastName = "last_name"
            case contactID = "contact_id"
        }
    }

    struct Link: Encodable {
        let id: UUID
        let contactID: String
        let how: String

        enum CodingKeys: String, CodingKey {
            case id, how
            case contactID = "contact_id"
        }
    }

    struct NewMatter: Encodable {
        let id: UUID
        let clientID: UUID?
        let title: String
        let caseNumber: String?
        let caseType: String
        let status: String
        let smokeballMatterID: String
        let sent: [String: SentValue]

        enum CodingKeys: String, CodingKey {
            case id, title, status, sent
            case clientID = "client_id"
            case caseNumber = "case_number"
            case caseType = "case_type"
            case smokeballMatterID = "smokeball_matter_id"
        }
    }

    var clients: [NewClient] = []
    var links: [Link] = []
    var matters: [NewMatter] = []
    /// Existing clients linked in this page already (not candidates for another contact).
    var taken = Set<UUID>()
    /// The firm's unlinked clients a page's contacts may be: by id (a contact's
    /// `externalSystemId`), and by lowercased email, oldest first. Read in two queries per page,
    /// not one per contact.
    let unlinkedByID: Set<UUID>
    let unlinkedByEmail: [String: [UUID]]

    init(_ connection: Connection, candidatesFor contacts: [SmokeballContact]) throws {
        let ids = Set(contacts.compactMap { $0.externalSystemId.flatMap(UUID.init(uuidString:)) })
        var byID = Set<UUID>()
        if !ids.isEmpty {
            for row in try connection.execute(
                """
                SELECT id FROM clients
                WHERE firm_id = app_current_firm() AND smokeball_contact_id IS NULL
                  AND id IN (SELECT x::uuid FROM jsonb_array_elements_text($1::jsonb) x)
                """, [try ImportMattersJob.json(ids.map { $0.uuidString.lowercased() })]
            ).rows {
                byID.insert(try row.uuid("id"))
            }
        }
        let emails = Set(contacts.compactMap(Self.email))
        var byEmail: [String: [UUID]] = [:]
        if !emails.isEmpty {
            for row in try connection.execute(
                """
                SELECT id, lower(email) AS email FROM clients
                WHERE firm_id = app_current_firm() AND smokeball_contact_id IS NULL
                  AND lower(email) IN (SELECT jsonb_array_elements_text($1::jsonb))
                ORDER BY created_at, id
                """, [try ImportMattersJob.json(emails.sorted())]
            ).rows {
                byEmail[try row.string("email"), default: []].append(try row.uuid("id"))
            }
        }
        unlinkedByID = byID
        unlinkedByEmail = byEmail
    }

    static func email(_ contact: SmokeballContact) -> String? {
        ContactSync.trimmed(contact.person?.email ?? contact.company?.email)?.lowercased()
    }

    /// The CaseHug client for a contact no client is linked to: the firm's client whose id is the
    /// contact's `externalSystemId` (a contact CaseHug created), else the oldest unlinked client
    /// with the same email (ignoring case), else a new one.
    mutating func client(
        for contact: SmokeballContact, contactID: String, counts: inout ImportMattersJob.Counts
    ) -> UUID {
        if let external = contact.externalSystemId.flatMap(UUID.init(uuidString:)), !taken.contains(external),
            unlinkedByID.contains(external)
        {
            return link(external, contactID, .externalSystemID, counts: &counts)
        }
        if let email = Self.email(contact),
            let id = unlinkedByEmail[email]?.first(where: { !taken.contains($0) })
        {
            return link(id, contactID, .email, counts: &counts)
        }
        let (first, last, email, phone) = Self.fields(contact)
        let id = UUID()
        clients.append(
            NewClient(id: id, firstName: first, lastName: last, email: email, phone: phone, contactID: contactID))
        counts.clientsCreated += 1
        return id
    }

    mutating func link(_ id: UUID, _ contactID: String, _ how: ContactLink.How, counts: inout ImportMattersJob.Counts)
        -> UUID
    {
        taken.insert(id)
        links.append(Link(id: id, contactID: contactID, how: how.rawValue))
        counts.clientsLinked += 1
        return id
    }

    /// A person's names, email and phone (area code and number as Smokeball holds them); an
    /// organisation's name as the first name.
    static func fields(_ contact: SmokeballContact) -> (String, String, String?, String?) {
        if let person = contact.person {
            let phone = [person.phone, person.cell].compactMap { $0 }.first { !$0.digits.isEmpty }.map {
                [$0.areaCode, $0.number].compactMap { ContactSync.trimmed($0) }.joined(separator: " ")
            }
            return (
                ContactSync.trimmed(person.firstName) ?? "", ContactSync.trimmed(person.lastName) ?? "",
                ContactSync.trimmed(person.email), phone
            )
        }
        return (ContactSync.trimmed(contact.company?.name) ?? "", "", ContactSync.trimmed(contact.company?.email), nil)
    }

    func write(_ connection: Connection) throws {
        if !clients.isEmpty {
            try connection.execute(
                """
                INSERT INTO clients (id, firm_id, first_name, last_name, email, phone, smokeball_contact_id,
                                     smokeball_contact_linked_by, smokeball_synced_at)
                SELECT r.id, app_current_firm(), r.first_name, r.last_name, r.email, r.phone, r.contact_id,
                       'imported', now()
                FROM jsonb_to_recordset($1::jsonb)
                    AS r (id uuid, first_name text, last_name text, email text, phone text, contact_id text)
                """, [try ImportMattersJob.json(clients)])
        }
        if !links.isEmpty {
            try connection.execute(
                """
                UPDATE clients c
                SET smokeball_contact_id = r.contact_id, smokeball_contact_linked_by = r.how, smokeball_synced_at = now()
                FROM jsonb_to_recordset($1::jsonb) AS r (id uuid, contact_id text, how text)
                WHERE c.firm_id = app_current_firm() AND c.id = r.id
                """, [try ImportMattersJob.json(links)])
        }
        if !matters.isEmpty {
            try connection.execute(
                """
                INSERT INTO matters (id, firm_id, client_id, title, case_number, case_type, status,
                                     smokeball_matter_id, smokeball_link_status, smokeball_sent, smokeball_synced_at)
                SELECT r.id, app_current_firm(), r.client_id, r.title, r.case_number, r.case_type, r.status,
                       r.smokeball_matter_id, 'confirmed', r.sent, now()
                FROM jsonb_to_recordset($1::jsonb)
                    AS r (id uuid, client_id uuid, title text, case_number text, case_type text, status text,
                          smokeball_matter_id text, sent jsonb)
                """, [try ImportMattersJob.json(matters)])
        }
    }
}
