import Basics
import FastCGI
import Foundation
import PostgreSQL

/// `GET /firm` (the caller's account) and `GET /staff`, `GET /staff/{id}` (its users). A staff
/// member's `id` is its own, not the user's: `userId` is the user's id, the one an access token's
/// `username` names, as on Smokeball (so `GET /staff/{userId}` finds nothing).
struct FirmAndStaff: APIResource {
    let database: Database
    let now: Date

    func handle(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response? {
        let origin = request.sandboxOrigin
        switch (request.method, path) {
        case ("GET", "/firm"):
            return try firm(caller, origin: origin)
        case ("GET", "/staff"):
            return try staffList(request, caller, origin: origin)
        case ("GET", _) where path.hasPrefix("/staff/"):
            guard let id = UUID(uuidString: String(path.dropFirst("/staff/".count))) else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "The staff id must be a uuid")
            }
            let rows = try staffRows(caller, id: id, offset: 0, limit: 1)
            guard let row = rows.first else {
                throw SandboxFailure.problem(.notFound, "Not Found", "No such staff member")
            }
            return Response.json(try Self.staff(row, origin: origin))
        case (_, "/firm"), (_, "/staff"):
            throw SandboxFailure.problem(
                .methodNotAllowed, "Method Not Allowed", "\(request.method) is not supported here")
        default:
            return nil
        }
    }

    func firm(_ caller: APIServer.Caller, origin: String) throws -> Response {
        let row = try database.withConnection {
            try $0.execute("SELECT id, name, state, created_at FROM sb_accounts WHERE id = $1", [caller.accountID])
                .first
        }
        guard let row else { throw SandboxFailure.problem(.notFound, "Not Found", "The firm no longer exists") }
        let id = try row.uuid("id").uuidString.lowercased()
        return Response.json([
            "href": origin + "/firm", "id": id, "versionId": id, "name": try row.string("name"),
            "status": ["status": "Active"],
            // Only the state: the part of the address the integration reads (its matter types' location).
            "streetAddress": ["state": try row.optionalString("state").map { $0 as Any } ?? NSNull()],
            "createdDate": Timestamp.iso8601(try row.date("created_at"), fractionDigits: 0),
        ])
    }

    func staffList(_ request: Request, _ caller: APIServer.Caller, origin: String) throws -> Response {
        let page = try Paging(request)
        let size = try database.withConnection {
            try $0.execute("SELECT count(*) AS n FROM sb_users WHERE account_id = $1", [caller.accountID]).single()
                .int("n")
        }
        let items = try staffRows(caller, id: nil, offset: page.offset, limit: page.limit).map {
            try Self.staff($0, origin: origin)
        }
        return Response.json(page.envelope(items: items, size: Int(size), base: page.base(request, path: "/staff")))
    }

    func staffRows(_ caller: APIServer.Caller, id: UUID?, offset: Int, limit: Int) throws -> [Row] {
        try database.withConnection {
            try $0.execute(
                """
                SELECT id, staff_id, first_name, last_name, email FROM sb_users
                WHERE account_id = $1 AND ($2::uuid IS NULL OR staff_id = $2)
                ORDER BY last_name, first_name, staff_id OFFSET $3 LIMIT $4
                """, [caller.accountID, id, offset, limit]
            ).rows
        }
    }

    static func staff(_ row: Row, origin: String) throws -> [String: Any] {
        let id = try row.uuid("staff_id").uuidString.lowercased()
        let user = try row.uuid("id").uuidString.lowercased()
        let first = try row.string("first_name")
        let last = try row.string("last_name")
        return [
            "href": origin + "/staff/" + id, "id": id, "versionId": id, "firstName": first, "lastName": last,
            "initials": String(first.prefix(1) + last.prefix(1)).uppercased(), "email": try row.string("email"),
            "role": "Attorney", "former": false, "enabled": true, "userId": user,
        ]
    }
}
