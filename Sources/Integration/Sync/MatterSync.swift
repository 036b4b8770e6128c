import Basics
import Foundation
import PostgreSQL
import Smokeball

/// A CaseHug matter as its sync needs it (the matter, its client and its case type).
public struct MatterRecord: Sendable, Equatable {
    public let id: UUID
    public let clientID: UUID?
    public let title: String
    public let caseNumber: String?
    /// `active` or `closed`.
    public let status: String
    public let caseType: MatterTypeRequest
    public let smokeballMatterID: String?
    /// `pending`, `confirmed` or `failed`.
    public let linkStatus: String?
    let sentJSON: String?

    var externalSystemID: String { id.uuidString.lowercased() }

    /// What was last sent to Smokeball for it.
    var sent: [String: SentValue] {
        guard let sentJSON else { return [:] }
        return (try? JSONDecoder().decode([String: SentValue].self, from: Data(sentJSON.utf8))) ?? [:]
    }
}

/// What the matter step did.
public struct MatterLink: Sendable, Equatable {
    public enum Change: String, Sendable, Encodable {
        case created, updated, unchanged
    }

    public let smokeballMatterID: String
    /// `pending` or `confirmed`.
    public let linkStatus: String
    public let change: Change
}

/// The matter step of a sync. A matter not linked yet is created (`POST /matters`) under a
/// durable intent: its Link id is stored at once as *pending*, then confirmed by reading the
/// matter back. A linked matter gets a PATCH of only the fields that differ from what was last
/// sent (`smokeball_sent`), or no request at all. A re-run after a crash finds an earlier create
/// through the intent's answered id, else a listing of recently changed matters matched on
/// `externalSystemId`.
public struct MatterSync: Sendable {
    public var recovery: SyncRecovery
    /// Reads of a just-created matter while Smokeball has not processed it (404): the first
    /// pause, doubled each time, and how many reads in all.
    public var confirmFirstDelay: Double
    public var confirmAttempts: Int

    public init(recovery: SyncRecovery = .standard, confirmFirstDelay: Double = 0.25, confirmAttempts: Int = 6) {
        self.recovery = recovery
        self.confirmFirstDelay = confirmFirstDelay
        self.confirmAttempts = max(1, confirmAttempts)
    }

    // MARK: Reading

    /// The matter, of the scope's firm (another firm's is not found: row-level security).
    public static func load(matterID: UUID, scope: any TenantScope, database: Database) throws -> MatterRecord {
        try database.transaction { connection in
            _ = try scope.enter(connection)
            return try load(connection, matterID)
        }
    }

    static func load(_ connection: Connection, _ matterID: UUID) throws -> MatterRecord {
        guard
            let row = try connection.execute(
                """
                SELECT m.id, m.client_id, m.title, m.case_number, m.status, m.smokeball_matter_id,
                       m.smokeball_link_status, m.smokeball_sent::text AS sent, t.key, t.display_name,
                       t.smokeball_category, t.smokeball_matter_type
                FROM matters m JOIN case_types t ON t.key = m.case_type
                WHERE m.firm_id = app_current_firm() AND m.id = $1::uuid
                """, [matterID]
            ).first
        else { throw JobError(SyncFailure.notFound, "the matter was not found", retryable: false) }
        return MatterRecord(
            id: try row.uuid("id"), clientID: try row.optionalUUID("client_id"), title: try row.string("title"),
            caseNumber: try row.optionalString("case_number"), status: try row.string("status"),
            caseType: MatterTypeRequest(
                caseType: try row.string("key"), displayName: try row.string("display_name"),
                category: try row.string("smokeball_category"), builtInName: try row.string("smokeball_matter_type")),
            smokeballMatterID: try row.optionalString("smokeball_matter_id"),
            linkStatus: try row.optionalString("smokeball_link_status"), sentJSON: try row.optionalString("sent"))
    }

    /// The `MatterDto` fields CaseHug owns, as they should be in Smokeball now. Absent keys are
    /// not sent (a create omits a missing case number).
    static func desired(_ matter: MatterRecord, contactID: String, type: ResolvedMatterType) -> [String: SentValue] {
        var fields: [String: SentValue] = [
            "description": .text(matter.title), "matterTypeId": .text(type.id), "clientIds": .list([contactID]),
            "status": .text(matter.status == "closed" ? "Closed" : "Open"),
            "externalSystemId": .text(matter.externalSystemID),
        ]
        if let number = matter.caseNumber, !number.isEmpty { fields["number"] = .text(number) }
        if let role = type.clientRole { fields["clientRole"] = .text(role) }
        return fields
    }

    /// The PATCH (`MatterDto2`) that takes Smokeball from `sent` to `desired`: the fields that
    /// differ, a removed one as null. `clientRole` can change only with the matter type (Smokeball
    /// refuses it otherwise), so it goes only then.
    static func patch(from sent: [String: SentValue], to desired: [String: SentValue]) -> [String: SentValue] {
        var body: [String: SentValue] = [:]
        for key in Set(sent.keys).union(desired.keys) where sent[key] != desired[key] {
            body[key] = desired[key] ?? .null
        }
        if body["matterTypeId"] == nil {
            body["clientRole"] = nil
        } else if body["clientRole"] == nil, let role = desired["clientRole"] {
            body["clientRole"] = role
        }
        return body
    }

    // MARK: Syncing

    public func sync(
        _ matter: MatterRecord, contactID: String, type: ResolvedMatterType, scope: any TenantScope,
        database: Database, session: SmokeballSession
    ) throws -> MatterLink {
        let desired = Self.desired(matter, contactID: contactID, type: type)
        if let linked = matter.smokeballMatterID, matter.linkStatus != "failed" {
            var change = MatterLink.Change.unchanged
            if matter.linkStatus == "pending" {
                // Made by an earlier run that did not see it read back.
                try confirm(matter.id, linked, scope: scope, database: database, session: session)
                change = .created
            }
            let body = Self.patch(from: matter.sent, to: desired)
            if body.isEmpty {
                if change == .unchanged {
                    try database.transaction { connection in
                        _ = try scope.enter(connection)
                        try SyncLog.record(
                            connection, step: .matter, outcome: .skipped, matterID: matter.id, externalID: linked)
                    }
                }
                return MatterLink(smokeballMatterID: linked, linkStatus: "confirmed", change: change)
            }
            // Recorded first, so that the update's echo is recognised (docs/inbound.md).
            let requestID = UUID().uuidString.lowercased()
            try WebhookEventJob.recordSent(
                requestID: requestID, resource: "matter", resourceID: linked, scope: scope, database: database)
            _ = try session.client.write(
                "PATCH", "/matters/" + PercentEncoding.encode(linked), body: body, access: session.access,
                lane: session.lane, requestID: requestID)
            try database.transaction { connection in
                _ = try scope.enter(connection)
                try connection.execute(
                    """
                    UPDATE matters SET smokeball_sent = $2::jsonb, smokeball_synced_at = now()
                    WHERE firm_id = app_current_firm() AND id = $1::uuid
                    """, [matter.id, try Self.json(desired)])
                try SyncLog.record(
                    connection, step: .matter, outcome: .updated, matterID: matter.id, externalID: linked,
                    details: ["fields": body.keys.sorted().joined(separator: ",")])
            }
            return MatterLink(
                smokeballMatterID: linked, linkStatus: "confirmed", change: change == .created ? .created : .updated)
        }
        let id = try create(matter, desired, scope: scope, database: database, session: session)
        try confirm(matter.id, id, scope: scope, database: database, session: session)
        return MatterLink(smokeballMatterID: id, linkStatus: "confirmed", change: .created)
    }

    /// Creates the matter (or finds the one an earlier run created) and stores its id as pending.
    func create(
        _ matter: MatterRecord, _ desired: [String: SentValue], scope: any TenantScope, database: Database,
        session: SmokeballSession
    ) throws -> String {
        let (open, age) = try database.transaction { connection in
            _ = try scope.enter(connection)
            guard let intent = try SyncIntents.open(connection, .matter, localID: matter.id) else {
                return (SyncIntent?.none, 0.0)
            }
            return (intent, try SyncRecovery.age(connection, intent))
        }
        if let open {
            if let found = try recover(open, age: age, matter: matter, session: session) {
                try store(
                    matter, found.id, sent: desired, requestID: open.requestID, intent: open, accept: false,
                    outcome: found.answered ? .created : .linked, scope: scope, database: database)
                return found.id
            }
            try database.transaction { connection in
                _ = try scope.enter(connection)
                try SyncIntents.abandon(connection, open.id)
            }
        }
        let intent = try database.transaction { connection in
            _ = try scope.enter(connection)
            return try SyncIntents.begin(
                connection, .matter, localID: matter.id, externalSystemID: matter.externalSystemID)
        }
        let answer = try SyncRecovery.sendCreate(under: intent, database: database, scope: scope) {
            try session.client.write(
                "POST", "/matters", body: desired, access: session.access, lane: session.lane,
                requestID: intent.requestID)
        }
        guard let id = answer.value.id, !id.isEmpty else {
            throw SmokeballError(.invalidResponse, upstreamStatus: answer.status, requestID: answer.requestID)
        }
        try store(
            matter, id, sent: desired, requestID: intent.requestID, intent: intent, accept: true, outcome: .created,
            scope: scope, database: database)
        return id
    }

    /// The answered id of an open intent, else the matter with this `externalSystemId` among
    /// those changed since shortly before it; nil once the intent is old enough that Smokeball
    /// would show it; throws (retryable) while it is younger.
    func recover(_ intent: SyncIntent, age: Double, matter: MatterRecord, session: SmokeballSession) throws
        -> (id: String, answered: Bool)?
    {
        if let id = intent.externalID { return (id, true) }
        let wanted = (intent.externalSystemID ?? matter.externalSystemID).lowercased()
        var found: String?
        try session.client.forEachPage(
            "/matters", query: [("UpdatedSince", recovery.updatedSince(intent))], access: session.access,
            lane: session.lane
        ) { (page: [SmokeballMatter]) in
            found = page.first { $0.externalSystemId?.lowercased() == wanted && $0.id != nil }?.id
            return found == nil
        }
        if let found { return (found, false) }
        guard age >= recovery.settle(session.client) else { throw SyncRecovery.waiting }
        return nil
    }

    /// In one transaction: the intent accepted, the link stored as pending with what was sent
    /// and the create's RequestId, the intent done, the history row.
    func store(
        _ matter: MatterRecord, _ id: String, sent: [String: SentValue], requestID: String, intent: SyncIntent,
        accept: Bool, outcome: SyncLog.Outcome, scope: any TenantScope, database: Database
    ) throws {
        try database.transaction { connection in
            _ = try scope.enter(connection)
            if accept { try SyncIntents.accept(connection, intent.id, externalID: id) }
            try connection.execute(
                """
                UPDATE matters SET smokeball_matter_id = $2, smokeball_link_status = 'pending',
                                   smokeball_request_id = $3, smokeball_sent = $4::jsonb
                WHERE firm_id = app_current_firm() AND id = $1::uuid
                """, [matter.id, id, requestID, try Self.json(sent)])
            try SyncIntents.finish(connection, intent.id, externalID: id)
            try SyncLog.record(
                connection, step: .matter, outcome: outcome, matterID: matter.id, externalID: id,
                details: ["request_id": requestID])
        }
    }

    /// Reads the matter back (Smokeball processes a create later: a 404 meanwhile), then marks
    /// the link confirmed.
    func confirm(
        _ matterID: UUID, _ id: String, scope: any TenantScope, database: Database, session: SmokeballSession
    ) throws {
        var pause = confirmFirstDelay
        var attempt = 1
        while true {
            do {
                let _: SmokeballResult<SmokeballMatter> = try session.client.get(
                    "/matters/" + PercentEncoding.encode(id), access: session.access, lane: session.lane)
                break
            } catch let error as SmokeballError where error.code == .notFound {
                guard attempt < confirmAttempts else {
                    throw JobError(
                        JobError.Code(rawValue: "awaiting_smokeball"), "Smokeball has not processed the matter yet",
                        retryable: true)
                }
                Thread.sleep(forTimeInterval: pause)
                pause *= 2
                attempt += 1
            }
        }
        try database.transaction { connection in
            _ = try scope.enter(connection)
            try connection.execute(
                """
                UPDATE matters SET smokeball_link_status = 'confirmed', smokeball_synced_at = now()
                WHERE firm_id = app_current_firm() AND id = $1::uuid AND smokeball_matter_id = $2
                """, [matterID, id])
        }
    }

    static func json(_ fields: [String: SentValue]) throws -> SQLValue {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return .json(String(decoding: try encoder.encode(fields), as: UTF8.self))
    }
}
