import Basics
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
                    connection, account: caller.accountID, id: id, reason: reason, caller: caller)
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
                payload: try ContactDocument.payload(connection, id: id, account: caller.accountID))
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
