import FastCGI
import Foundation
import PostgreSQL

/// Reading a matter's folder tree:
///
///     GET /matters/{id}/documents/folders             Offset, Limit → FolderListingPagedCollection (root)
///     GET /matters/{id}/documents/folders/{folderId}  Offset, Limit → FolderListingPagedCollection
///
/// The spec's collection carries the listed folder itself (`id`, `name`, `parentId`; all null
/// for the root, whose id is null in Smokeball) and, in `value`, one `FolderListing` with that
/// folder's subfolders and files. Paging runs over those children, subfolders first, each
/// group by name, so `size` is the number of children.
struct Folders {
    let database: Database
    let now: Date

    /// A matter of another account is a 403 here, as the spec says; an unknown one a 404.
    static func requireOwnMatter(_ connection: Connection, _ matterID: UUID, _ caller: APIServer.Caller, now: Date)
        throws
    {
        let owner = try connection.execute(
            "SELECT account_id FROM sb_matters WHERE id = $1 AND visible_at <= $2", [matterID, now]
        ).first
        guard let owner else { throw SandboxFailure.problem(.notFound, "Not Found", "No such matter") }
        guard try owner.uuid("account_id") == caller.accountID else {
            throw SandboxFailure.problem(.forbidden, "Forbidden", "The matter belongs to another account")
        }
    }

    func list(_ request: Request, matterID: UUID, folderID: UUID?, caller: APIServer.Caller) throws -> Response {
        let page = try Paging(request)
        let (folder, size, rows) = try database.withConnection { connection in
            try Self.requireOwnMatter(connection, matterID, caller, now: now)
            var folder: Row?
            if let folderID {
                folder = try connection.execute(
                    "SELECT name, parent_id FROM sb_folders WHERE id = $1 AND matter_id = $2 AND visible_at <= $3",
                    [folderID, matterID, now]
                ).first
                guard folder != nil else { throw SandboxFailure.problem(.notFound, "Not Found", "No such folder") }
            }
            let parameters: [any SQLValueConvertible] = [matterID, folderID, now]
            // $2 is null for the root, so both are typed: an untyped null has no type to infer.
            let children = """
                FROM sb_folders WHERE matter_id = $1 AND parent_id IS NOT DISTINCT FROM $2::uuid
                AND visible_at <= $3::timestamptz
                """
            let files = """
                FROM sb_files WHERE matter_id = $1 AND folder_id IS NOT DISTINCT FROM $2::uuid
                AND visible_at <= $3::timestamptz
                """
            let size = try connection.execute(
                "SELECT (SELECT count(*) \(children)) + (SELECT count(*) \(files)) AS n", parameters
            ).single().int("n")
            let rows = try connection.execute(
                """
                SELECT 0 AS kind, id, parent_id AS folder_id, name, 0::bigint AS size_bytes,
                       NULL::timestamptz AS uploaded_at, created_at, lower(name) AS sort_name \(children)
                UNION ALL
                SELECT 1, id, folder_id, name, size_bytes, uploaded_at, created_at, lower(name) \(files)
                ORDER BY kind, sort_name, id OFFSET $4 LIMIT $5
                """, parameters + [page.offset, page.limit]
            ).rows
            return (folder, size, rows)
        }
        let origin = request.sandboxOrigin
        let matter = matterID.uuidString.lowercased()
        let folders = try rows.filter { try $0.int("kind") == 0 }.map { row in
            try Self.folderJSON(
                id: row.uuid("id"), parentID: row.optionalUUID("folder_id"), name: row.string("name"),
                matter: matter, origin: origin)
        }
        let files = try rows.filter { try $0.int("kind") == 1 }.map {
            try Documents.fileJSON($0, matterID: matterID, origin: origin)
        }
        var path = "/matters/\(matter)/documents/folders"
        if let folderID { path += "/" + folderID.uuidString.lowercased() }
        let listing: [String: Any] = [
            "id": folderID?.uuidString.lowercased() ?? NSNull(), "href": origin + path, "folders": folders,
            "files": files,
        ]
        var envelope = page.envelope(items: [listing], size: Int(size), base: page.base(request, path: path))
        envelope["id"] = folderID?.uuidString.lowercased() ?? NSNull()
        envelope["name"] = (try folder?.string("name")) ?? NSNull()
        envelope["parentId"] = (try folder?.optionalUUID("parent_id")?.uuidString.lowercased()) ?? NSNull()
        return Response.json(envelope)
    }

    /// A `Folder` as the spec shapes it.
    static func folderJSON(id: UUID, parentID: UUID?, name: String, matter: String, origin: String) -> [String: Any] {
        let folder = id.uuidString.lowercased()
        return [
            "href": "\(origin)/matters/\(matter)/documents/folders/\(folder)", "id": folder,
            "parentId": parentID?.uuidString.lowercased() ?? NSNull(), "name": name,
        ]
    }
}
