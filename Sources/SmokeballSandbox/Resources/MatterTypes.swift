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

/// `offset`/`limit` (limit 1–500, default 500) and the envelope's first/previous/next/last links.
struct Paging {
    let offset: Int
    let limit: Int

    static let maximum = 500

    init(_ request: Request) throws {
        offset = try Self.integer(request.queryValue("Offset"), name: "Offset", default: 0, range: 0...Int(Int32.max))
        limit = try Self.integer(
            request.queryValue("Limit"), name: "Limit", default: Self.maximum, range: 1...Self.maximum)
    }

    static func integer(_ text: String?, name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text, !text.isEmpty else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)"
            )
        }
        return number
    }

    struct Base {
        let origin: String
        let path: String
        /// The request's other query parameters, kept on every link.
        let query: [(String, String)]
    }

    func base(_ request: Request, path: String) -> Base {
        // From the raw query string, so repeated parameters (`Search=a&Search=b`) all survive.
        let kept = Request.parseQueryItems(request.queryString).filter {
            !["offset", "limit"].contains($0.0.lowercased())
        }
        return Base(origin: request.sandboxOrigin, path: path, query: kept)
    }

    func link(_ base: Base, offset: Int) -> [String: Any] {
        let query = (base.query + [("offset", String(offset)), ("limit", String(limit))])
            .map { "\(URLComponent.encode($0.0))=\(URLComponent.encode($0.1))" }.joined(separator: "&")
        return ["href": base.origin + base.path + "?" + query, "method": "GET"]
    }

    func envelope(items: [[String: Any]], size: Int, base: Base) -> [String: Any] {
        let lastOffset = size == 0 ? 0 : ((size - 1) / limit) * limit
        var envelope: [String: Any] = [
            "href": link(base, offset: offset)["href"] ?? "", "offset": offset, "limit": limit, "size": size,
            "value": items, "first": link(base, offset: 0), "last": link(base, offset: lastOffset),
            "self": link(base, offset: offset),
        ]
        envelope["next"] = offset + limit < size ? link(base, offset: offset + limit) : NSNull()
        envelope["previous"] = offset > 0 ? link(base, offset: max(0, offset - limit)) : NSNull()
        return envelope
    }
}
