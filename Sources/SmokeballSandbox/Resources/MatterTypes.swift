import FastCGI
import Foundation
import PostgreSQL

/// `GET /mattertypes`: the read-only catalogue of the caller's region, filtered by `Name`
/// (partial, case-insensitive), `Location`, `Category` and `Type`, in Smokeball's paging envelope.
struct MatterTypes {
    let database: Database

    func list(_ request: Request, caller: APIServer.Caller, path: String) throws -> Response {
        let page = try Paging(request)
        var type: Int?
        // An empty value is no filter, as for every other parameter.
        if let text = request.queryValue("Type"), !text.isEmpty {
            guard let value = Int(text), value == 0 || value == 1 else {
                throw SandboxFailure.problem(
                    .badRequest, "Bad Request", "Type must be 0 (matter type) or 1 (lead type)")
            }
            type = value
        }
        let filters: [any SQLValueConvertible] = [
            caller.region, request.queryValue("Name").flatMap { $0.isEmpty ? nil : $0 },
            request.queryValue("Location").flatMap { $0.isEmpty ? nil : $0 },
            request.queryValue("Category").flatMap { $0.isEmpty ? nil : $0 }, type,
        ]
        let conditions = """
            region = $1 AND NOT is_deleted
            AND ($2::text IS NULL OR strpos(lower(name), lower($2)) > 0)
            AND ($3::text IS NULL OR lower(location) = lower($3))
            AND ($4::text IS NULL OR lower(category) = lower($4))
            AND ($5::int IS NULL OR type = $5)
            """
        let (size, rows) = try database.withConnection { connection in
            let size = try connection.execute(
                "SELECT count(*) AS size FROM sb_matter_types WHERE \(conditions)", filters
            ).single().int("size")
            let rows = try connection.execute(
                """
                SELECT id, version_id, name, category, location, type, array_to_json(representative_options)::text AS options
                FROM sb_matter_types WHERE \(conditions)
                ORDER BY location, category, name, id OFFSET $6 LIMIT $7
                """, filters + [page.offset, page.limit]
            ).rows
            return (size, rows)
        }
        let base = page.base(request, path: path)
        let items: [[String: Any]] = try rows.map { row in
            let id = try row.uuid("id").uuidString.lowercased()
            return [
                "id": id, "href": base.origin + "/mattertypes/" + id,
                "versionId": try row.uuid("version_id").uuidString.lowercased(),
                "name": try row.string("name"), "category": try row.string("category"),
                "location": try row.string("location"), "type": try row.int("type"),
                "representativeOptions": (try JSONSerialization.jsonObject(with: Data(try row.string("options").utf8)))
                    as? [String] ?? [],
                "isDeleted": false,
            ]
        }
        return Response.json(page.envelope(items: items, size: Int(size), base: base))
    }
}
