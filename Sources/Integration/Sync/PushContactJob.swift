import Basics
import FastCGI
import Foundation
import PostgreSQL
import Smokeball

/// `push_contact`: sends a linked client's name, email and phone to its Smokeball contact. The
/// clients trigger (migration 033) enqueues it when one of them changes in CaseHug, 2 s later so
/// a burst of edits is one job.
///
/// Smokeball documents `PUT /contacts/{id}` as "update a contact" with a whole `ContactDto`, and
/// a PUT may replace what it is given: so the job reads the contact, puts CaseHug's four fields
/// into the `person` it read (every other field the firm entered in Smokeball, addresses
/// included, goes back as it was), and PUTs that, only when something differs. A blank email or
/// phone in CaseHug leaves Smokeball's as it is: the firm may have entered one there that CaseHug
/// never had.
public struct PushContactJob: JobHandler {
    public static let kind = SyncJobs.pushContact
    public var kind: String { Self.kind }

    let tokens: SmokeballTokenProvider

    public init(tokens: SmokeballTokenProvider) {
        self.tokens = tokens
    }

    /// What the job leaves as its result.
    struct Result: Encodable, Sendable {
        enum Outcome: String, Encodable, Sendable {
            case updated, skipped
        }

        let outcome: Outcome
        let contactID: String?
        /// The `person` fields sent (names only, no values), or why nothing was sent.
        let fields: [String]
        let reason: String?

        enum CodingKeys: String, CodingKey {
            case outcome
            case contactID = "contact_id"
            case fields, reason
        }
    }

    /// The client as CaseHug holds it.
    struct Client: Sendable, Equatable {
        var firstName: String
        var lastName: String
        var email: String?
        var phone: String?
        var contactID: String?
    }

    public func run(_ job: Job, _ context: JobContext) throws -> (any Encodable & Sendable)? {
        let payload = try job.payload(PushContactPayload.self)
        let client = try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            return try Self.client(connection, payload.clientID)
        }
        guard let client, let contactID = client.contactID else {
            // Deleted or unlinked since the change: there is nothing to push to.
            return Result(outcome: .skipped, contactID: nil, fields: [], reason: "client_not_linked")
        }
        let pushed: Pushed
        do {
            pushed = try tokens.withAccess(context.scope) { smokeball, access in
                try Self.push(client, contactID: contactID, smokeball: smokeball, access: access) { requestID in
                    try WebhookEventJob.recordSent(
                        requestID: requestID, resource: "contact", resourceID: contactID, scope: context.scope,
                        database: context.database)
                }
            }
        } catch let error as SmokeballTokenError where error.code != .unavailable {
            // Another attempt cannot help until the firm reconnects.
            let message = error.httpError.message
            try record(context, .failed, clientID: payload.clientID, contactID: contactID, error: message)
            throw JobError(JobError.Code(rawValue: error.code.rawValue), message, retryable: false)
        } catch let failure as Failure {
            try record(context, .failed, clientID: payload.clientID, contactID: contactID, error: failure.message)
            throw JobError(failure.code, failure.message, retryable: false)
        } catch let error as SmokeballError {
            if job.attempts >= job.maxAttempts {
                try record(
                    context, .failed, clientID: payload.clientID, contactID: contactID,
                    error: "Smokeball could not be reached: \(error)")
            }
            throw error
        }
        switch pushed {
        case .updated(let fields, let requestID):
            try record(
                context, .updated, clientID: payload.clientID, contactID: contactID,
                details: ["fields": fields.joined(separator: ","), "request_id": requestID], synced: true)
            return Result(outcome: .updated, contactID: contactID, fields: fields, reason: nil)
        case .unchanged:
            try record(
                context, .skipped, clientID: payload.clientID, contactID: contactID, details: ["reason": "unchanged"],
                synced: true)
            return Result(outcome: .skipped, contactID: contactID, fields: [], reason: "unchanged")
        case .notAPerson:
            try record(
                context, .skipped, clientID: payload.clientID, contactID: contactID, details: ["reason": "not_a_person"]
            )
            return Result(outcome: .skipped, contactID: contactID, fields: [], reason: "not_a_person")
        }
    }

    /// A failure another attempt cannot cure, with its readable message (no PHI).
    struct Failure: Error, Sendable, CustomStringConvertible {
        let code: JobError.Code
        let message: String
        var description: String { "\(code): \(message)" }

        static let contactDeleted = JobError.Code(rawValue: "contact_deleted")
        static let refused = JobError.Code(rawValue: "contact_update_refused")
    }

    enum Pushed: Equatable {
        case updated(fields: [String], requestID: String)
        case unchanged
        case notAPerson
    }

    static func client(_ connection: Connection, _ id: UUID) throws -> Client? {
        try connection.execute(
            """
            SELECT first_name, last_name, email, phone, smokeball_contact_id FROM clients
            WHERE firm_id = app_current_firm() AND id = $1::uuid
            """, [id]
        ).first.map { row in
            Client(
                firstName: try row.string("first_name"), lastName: try row.string("last_name"),
                email: try row.optionalString("email"), phone: try row.optionalString("phone"),
                contactID: try row.optionalString("smokeball_contact_id"))
        }
    }

    /// GET the contact, merge, PUT when something differs (background lane: nobody is waiting).
    /// `willSend` is told the PUT's RequestId before it is sent (to record it: its echo).
    static func push(
        _ client: Client, contactID: String, smokeball: SmokeballClient, access: SmokeballAccess,
        willSend: (String) throws -> Void = { _ in }
    ) throws -> Pushed {
        let path = "/contacts/" + PercentEncoding.encode(contactID)
        let contact: [String: Any]
        do {
            let read = try smokeball.call("GET", path, access: access, lane: .background)
            guard let object = try? JSONSerialization.jsonObject(with: Data(read.response.body)) as? [String: Any]
            else { throw SmokeballError(.invalidResponse, upstreamStatus: read.response.status) }
            contact = object
        } catch let error as SmokeballError where error.code == .notFound {
            throw Failure(code: Failure.contactDeleted, message: deletedMessage)
        }
        if let flag = contact["isDeleted"], JSONBoolean.value(flag) == true {
            throw Failure(code: Failure.contactDeleted, message: deletedMessage)
        }
        guard let person = contact["person"] as? [String: Any] else { return .notAPerson }
        guard let change = merged(person, with: client) else { return .unchanged }
        var body: [String: Any] = ["person": change.person]
        // A replacing PUT must not drop the link back to CaseHug.
        if let external = contact["externalSystemId"] as? String { body["externalSystemId"] = external }
        let requestID = UUID().uuidString.lowercased()
        try willSend(requestID)
        do {
            let sent = try smokeball.call(
                "PUT", path, body: try JSONWriter.encode(body), access: access, lane: .background,
                requestID: requestID)
            return .updated(fields: change.fields, requestID: sent.requestID)
        } catch let error as SmokeballError where error.code == .notFound {
            throw Failure(code: Failure.contactDeleted, message: deletedMessage)
        } catch let error as SmokeballError where error.code == .rejected {
            throw Failure(
                code: Failure.refused,
                message: "Smokeball refused the contact update (HTTP \(error.upstreamStatus ?? 400))")
        }
    }

    static let deletedMessage =
        "the client's Smokeball contact was deleted in Smokeball; link the client again by syncing one of its matters"

    /// Fields of the spec's `Person` that `PersonDto` does not take (read-only): left out of the PUT.
    static let readOnlyPersonFields: Set<String> = ["voiDetails"]
    static let readOnlyExecutionOptionsFields: Set<String> = ["poaVoiDetails"]

    /// `person` (as read) with CaseHug's fields in, and the names of the fields that changed; nil
    /// when nothing differs. Nulls and read-only fields are left out, so what goes back is
    /// exactly what the firm has, as `PersonDto` takes it.
    static func merged(_ person: [String: Any], with client: Client) -> (person: [String: Any], fields: [String])? {
        var out = (withoutNulls(person) as? [String: Any]) ?? [:]
        for field in readOnlyPersonFields { out[field] = nil }
        if var options = out["executionOptions"] as? [String: Any] {
            for field in readOnlyExecutionOptionsFields { options[field] = nil }
            out["executionOptions"] = options
        }
        var fields: [String] = []
        if out["firstName"] as? String != client.firstName {
            out["firstName"] = client.firstName
            fields.append("firstName")
        }
        if out["lastName"] as? String != client.lastName {
            out["lastName"] = client.lastName
            fields.append("lastName")
        }
        if let email = nonBlank(client.email),
            (out["email"] as? String)?.trimmingCharacters(in: .whitespaces).lowercased() != email.lowercased()
        {
            out["email"] = email
            fields.append("email")
        }
        if let phone = nonBlank(client.phone) {
            let current = out["phone"] as? [String: Any] ?? [:]
            let digits = SmokeballContact.digits(
                (current["areaCode"] as? String ?? "") + (current["number"] as? String ?? ""))
            if digits != SmokeballContact.digits(phone) {
                // The whole number goes in `number`; an area code kept beside it would prefix it
                // (a PUT that merges keeps what it is not told to clear).
                var number: [String: Any] = ["number": phone]
                if current["areaCode"] != nil { number["areaCode"] = NSNull() }
                out["phone"] = number
                fields.append("phone")
            }
        }
        return fields.isEmpty ? nil : (out, fields)
    }

    static func nonBlank(_ text: String?) -> String? {
        guard let trimmed = text?.trimmingCharacters(in: .whitespacesAndNewlines), !trimmed.isEmpty else { return nil }
        return trimmed
    }

    static func withoutNulls(_ value: Any) -> Any {
        if let object = value as? [String: Any] {
            return object.filter { !($0.value is NSNull) }.mapValues(withoutNulls)
        }
        if let array = value as? [Any] {
            return array.filter { !($0 is NSNull) }.map(withoutNulls)
        }
        return value
    }

    /// The history row (matter: none, a contact belongs to the firm), and the client's
    /// `smokeball_synced_at` when Smokeball now has what CaseHug has. Neither column fires the
    /// clients trigger again.
    func record(
        _ context: JobContext, _ outcome: SyncLog.Outcome, clientID: UUID, contactID: String,
        details: [String: String] = [:], error: String? = nil, synced: Bool = false
    ) throws {
        try context.database.transaction { connection in
            _ = try context.scope.enter(connection)
            try SyncLog.record(
                connection, step: .contact, outcome: outcome, matterID: nil, externalID: contactID, details: details,
                error: error)
            if synced {
                try connection.execute(
                    "UPDATE clients SET smokeball_synced_at = now() WHERE firm_id = app_current_firm() AND id = $1::uuid",
                    [clientID])
            }
        }
    }
}
