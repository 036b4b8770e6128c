import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL

/// A matter's documents and memos:
///
///     POST /matters/{id}/documents/files        {fileName, folderId? | folderPath?} → 202 {fileId, uploadUrl, expiry}
///     POST /matters/{id}/documents/files/bulk   [AddFileDto]                        → 202 [UploadFileInfo]
///     GET  /matters/{id}/documents/files[/{fileId}]
///     GET  /matters/{id}/documents/files/{fileId}/download                          → DownloadFileInfo
///     GET  /matters/{id}/documents/files/{fileId}/upload                            → UploadFileInfo (a new URL)
///     POST /matters/{id}/documents/folders      {name, parentFolderId?}              → 202 Link
///     GET  /matters/{id}/documents/folders[/{folderId}]                              (see `Folders`)
///     POST /matters/{id}/memos                  {title, text}                        → 202 Link
///     GET  /matters/{id}/memos/{memoId}
///
/// The bytes go in a second step, a PUT to `uploadUrl` without Smokeball headers (see `Uploads`).
struct Documents: APIResource {
    let database: Database
    let now: Date

    /// How long an upload URL works, as a pre-signed S3 URL would.
    static let uploadLifetime: TimeInterval = 900

    func handle(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response? {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count >= 3, parts[0] == "matters", parts[2] == "documents" || parts[2] == "memos" else {
            return nil
        }
        guard let matterID = UUID(uuidString: parts[1]) else {
            throw SandboxFailure.problem(.notFound, "Not Found", "No such matter")
        }
        let rest = Array(parts.dropFirst(2))
        switch (request.method, rest.count, rest) {
        case ("POST", 2, ["documents", "files"]):
            let item = try BodyShape.check(try request.sandboxJSON(), "AddFileDto", BodyShape.addFile)
            let info = try addFiles([item], matterID: matterID, request: request, caller: caller)
            return Response.json(info[0], status: .accepted)
        case ("POST", 3, ["documents", "files", "bulk"]):
            guard let items = try request.sandboxJSONValue() as? [[String: Any]],
                !items.isEmpty, items.count <= 500
            else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "The body must be an array of 1 to 500 files")
            }
            let checked = try items.enumerated().map { index, item in
                try BodyShape.normalise(item, .object(BodyShape.addFile), at: "[\(index)]") as? [String: Any] ?? [:]
            }
            return Response.json(
                try addFiles(checked, matterID: matterID, request: request, caller: caller), status: .accepted)
        case ("GET", 2, ["documents", "files"]):
            return try listFiles(request, matterID: matterID, caller: caller)
        case ("GET", 3, _) where rest[1] == "files":
            guard let fileID = UUID(uuidString: rest[2]) else {
                throw SandboxFailure.problem(.notFound, "Not Found", "No such file")
            }
            return try file(request, matterID: matterID, fileID: fileID, caller: caller)
        case ("GET", 4, _) where rest[0] == "documents" && rest[1] == "files" && rest[3] == "download":
            guard let fileID = UUID(uuidString: rest[2]) else {
                throw SandboxFailure.problem(.notFound, "Not Found", "No such file")
            }
            return try Downloads(database: database, now: now).info(
                request, matterID: matterID, fileID: fileID, caller: caller)
        case ("GET", 4, _) where rest[0] == "documents" && rest[1] == "files" && rest[3] == "upload":
            guard let fileID = UUID(uuidString: rest[2]) else {
                throw SandboxFailure.problem(.notFound, "Not Found", "No such file")
            }
            return try newUploadURL(request, matterID: matterID, fileID: fileID, caller: caller)
        case ("GET", 2, ["documents", "folders"]):
            return try Folders(database: database, now: now).list(
                request, matterID: matterID, folderID: nil, caller: caller)
        case ("GET", 3, _) where rest[0] == "documents" && rest[1] == "folders":
            guard let folderID = UUID(uuidString: rest[2]) else {
                throw SandboxFailure.problem(.notFound, "Not Found", "No such folder")
            }
            return try Folders(database: database, now: now).list(
                request, matterID: matterID, folderID: folderID, caller: caller)
        case ("POST", 2, ["documents", "folders"]):
            let body = try BodyShape.check(try request.sandboxJSON(), "FolderDto", BodyShape.folder)
            return try addFolder(body, matterID: matterID, request: request, caller: caller)
        case ("POST", 1, ["memos"]):
            let body = try BodyShape.check(try request.sandboxJSON(), "MemoDto", BodyShape.memo)
            return try addMemo(body, matterID: matterID, request: request, caller: caller)
        case ("GET", 2, _) where rest[0] == "memos":
            guard let memoID = UUID(uuidString: rest[1]) else {
                throw SandboxFailure.problem(.notFound, "Not Found", "No such memo")
            }
            return try memo(request, matterID: matterID, memoID: memoID, caller: caller)
        default:
            return nil
        }
    }

    /// The matter must be the caller's and readable already.
    func requireMatter(_ connection: Connection, _ matterID: UUID, _ caller: APIServer.Caller) throws {
        let found =
            try connection.execute(
                "SELECT 1 FROM sb_matters WHERE id = $1 AND account_id = $2 AND visible_at <= $3",
                [matterID, caller.accountID, now]
            ).rowCount == 1
        guard found else { throw SandboxFailure.problem(.notFound, "Not Found", "No such matter") }
    }

    static func text(_ body: [String: Any], _ key: String, required: Bool) throws -> String? {
        guard let value = body[key], !(value is NSNull) else {
            if required { throw SandboxFailure.problem(.badRequest, "Bad Request", "\(key) is required") }
            return nil
        }
        guard let text = value as? String, !text.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "\(key) must be a non-empty string")
        }
        return text
    }

    // MARK: Files

    func addFiles(_ items: [[String: Any]], matterID: UUID, request: Request, caller: APIServer.Caller) throws
        -> [[String: Any]]
    {
        let origin = request.sandboxOrigin
        return try database.transaction { connection in
            try requireMatter(connection, matterID, caller)
            return try items.map { item in
                // The spec's maxLength, counted as JSON Schema counts: in code points.
                guard let name = try Self.text(item, "fileName", required: true),
                    name.unicodeScalars.count <= Self.maximumNameLength
                else {
                    throw SandboxFailure.problem(
                        .badRequest, "Bad Request", "fileName must be at most \(Self.maximumNameLength) characters")
                }
                let folderID = try folder(item, matterID: matterID, caller: caller, connection: connection)
                let fileID = UUID()
                let token = SecureRandom.token(byteCount: 32)
                let expiry = now.addingTimeInterval(Self.uploadLifetime)
                try connection.execute(
                    """
                    INSERT INTO sb_files (id, account_id, matter_id, folder_id, name, upload_token_sha256,
                                          upload_expires_at, created_at, visible_at, client_id, request_id, user_id)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                    """,
                    [
                        fileID, caller.accountID, matterID, folderID, name, SHA256.hash(Array(token.utf8)), expiry, now,
                        caller.visibleAt(now), caller.clientID, caller.requestID, caller.userID,
                    ])
                return [
                    "fileId": fileID.uuidString.lowercased(),
                    "uploadUrl": Uploads.url(origin: origin, fileID: fileID, signature: token),
                    "expiry": Timestamp.iso8601(expiry, fractionDigits: 0),
                ]
            }
        }
    }

    /// `folderId` (must exist in the matter) or `folderPath` (`a/b/c`, created as needed); neither
    /// is the root folder, whose id is null.
    func folder(_ item: [String: Any], matterID: UUID, caller: APIServer.Caller, connection: Connection) throws
        -> UUID?
    {
        if let text = try Self.text(item, "folderId", required: false) {
            guard let id = UUID(uuidString: text),
                try connection.execute(
                    "SELECT 1 FROM sb_folders WHERE id = $1 AND matter_id = $2 AND visible_at <= $3",
                    [id, matterID, now]
                ).rowCount == 1
            else {
                throw SandboxFailure.problem(
                    .badRequest, "Bad Request", "folderId does not name a folder of this matter")
            }
            return id
        }
        guard let path = try Self.text(item, "folderPath", required: false) else { return nil }
        var parent: UUID?
        for segment in path.split(separator: "/").map(String.init) where !segment.isEmpty {
            guard segment.unicodeScalars.count <= Self.maximumNameLength, !segment.contains("\\") else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "folderPath has an invalid segment")
            }
            let existing = try connection.execute(
                """
                SELECT id FROM sb_folders WHERE matter_id = $1 AND parent_id IS NOT DISTINCT FROM $2
                AND lower(name) = lower($3) ORDER BY created_at, id LIMIT 1
                """, [matterID, parent, segment]
            ).first
            if let existing {
                parent = try existing.uuid("id")
            } else {
                let id = UUID()
                try connection.execute(
                    """
                    INSERT INTO sb_folders (id, account_id, matter_id, parent_id, name, created_at, visible_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $6)
                    """, [id, caller.accountID, matterID, parent, segment, now])
                parent = id
            }
        }
        return parent
    }

    func listFiles(_ request: Request, matterID: UUID, caller: APIServer.Caller) throws -> Response {
        let page = try Paging(request)
        let origin = request.sandboxOrigin
        let (size, rows) = try database.withConnection { connection in
            try requireMatter(connection, matterID, caller)
            let size = try connection.execute(
                "SELECT count(*) AS n FROM sb_files WHERE matter_id = $1 AND visible_at <= $2", [matterID, now]
            ).single().int("n")
            let rows = try connection.execute(
                """
                SELECT id, folder_id, name, size_bytes, uploaded_at, created_at FROM sb_files
                WHERE matter_id = $1 AND visible_at <= $2 ORDER BY created_at, id OFFSET $3 LIMIT $4
                """, [matterID, now, page.offset, page.limit]
            ).rows
            return (size, rows)
        }
        let items = try rows.map { try Self.fileJSON($0, matterID: matterID, origin: origin) }
        let path = "/matters/\(matterID.uuidString.lowercased())/documents/files"
        return Response.json(page.envelope(items: items, size: Int(size), base: page.base(request, path: path)))
    }

    func file(_ request: Request, matterID: UUID, fileID: UUID, caller: APIServer.Caller) throws -> Response {
        let row = try database.withConnection { connection in
            try requireMatter(connection, matterID, caller)
            return try connection.execute(
                """
                SELECT id, folder_id, name, size_bytes, uploaded_at, created_at FROM sb_files
                WHERE id = $1 AND matter_id = $2 AND visible_at <= $3
                """, [fileID, matterID, now]
            ).first
        }
        guard let row else { throw SandboxFailure.problem(.notFound, "Not Found", "No such file") }
        return Response.json(
            try Self.fileJSON(row, matterID: matterID, origin: request.sandboxOrigin))
    }

    /// `GET .../files/{fileId}/upload`: a new single-use upload URL for the file (the spec's
    /// `UploadFile`), for a URL that expired or was lost. The file's previous URL stops working.
    /// A PUT to it stores the bytes, replacing any uploaded before (a new version, as Smokeball
    /// would make). Another account's matter is 403, an unknown matter or file 404.
    func newUploadURL(_ request: Request, matterID: UUID, fileID: UUID, caller: APIServer.Caller) throws -> Response {
        let token = SecureRandom.token(byteCount: 32)
        let expiry = now.addingTimeInterval(Self.uploadLifetime)
        let updated = try database.transaction { connection in
            try Folders.requireOwnMatter(connection, matterID, caller, now: now)
            return try connection.execute(
                """
                UPDATE sb_files SET upload_token_sha256 = $1, upload_expires_at = $2
                WHERE id = $3 AND matter_id = $4 AND visible_at <= $5
                """, [SHA256.hash(Array(token.utf8)), expiry, fileID, matterID, now]
            ).affectedRows
        }
        guard updated == 1 else { throw SandboxFailure.problem(.notFound, "Not Found", "No such file") }
        return Response.json([
            "fileId": fileID.uuidString.lowercased(),
            "uploadUrl": Uploads.url(origin: request.sandboxOrigin, fileID: fileID, signature: token),
            "expiry": Timestamp.iso8601(expiry, fractionDigits: 0),
        ])
    }

    /// A file name's extension with its dot ("report.final.pdf" → ".pdf"); none for a name with
    /// no dot, only a leading one (".env") or a trailing one ("draft.").
    static func fileExtension(of name: String) -> String {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex, name.index(after: dot) != name.endIndex
        else { return "" }
        return String(name[dot...])
    }

    /// `AddFileDto.fileName` and `FolderDto.name`: the only lengths the spec sets.
    static let maximumNameLength = 256

    /// A `File` as the spec shapes it.
    static func fileJSON(_ row: Row, matterID: UUID, origin: String) throws -> [String: Any] {
        let id = try row.uuid("id").uuidString.lowercased()
        let matter = matterID.uuidString.lowercased()
        let fullName = try row.string("name")
        let fileExtension = Self.fileExtension(of: fullName)
        // The spec's name excludes the extension, which comes separately (with its dot).
        let name = String(fullName.dropLast(fileExtension.count))
        let created = Timestamp.iso8601(try row.date("created_at"), fractionDigits: 0)
        let modified = try row.optionalDate("uploaded_at").map { Timestamp.iso8601($0, fractionDigits: 0) } ?? created
        var file: [String: Any] = [
            "href": "\(origin)/matters/\(matter)/documents/files/\(id)", "id": id, "versionId": id, "name": name,
            "fileExtension": fileExtension,
            "matter": ["id": matter, "href": "\(origin)/matters/\(matter)"], "dateCreated": created,
            "dateModified": modified, "sizeBytes": try row.int("size_bytes"),
            "isUploaded": try row.optionalDate("uploaded_at") != nil, "isFavorite": false, "isCancelled": false,
            "isDuplicate": false, "isDeleted": false,
        ]
        if let folder = try row.optionalUUID("folder_id") {
            file["folder"] = [
                "id": folder.uuidString.lowercased(),
                "href": "\(origin)/matters/\(matter)/documents/folders/\(folder.uuidString.lowercased())",
            ]
        }
        return file
    }

    // MARK: Folders and memos

    func addFolder(_ body: [String: Any], matterID: UUID, request: Request, caller: APIServer.Caller) throws
        -> Response
    {
        guard let name = try Self.text(body, "name", required: true), !name.isEmpty,
            name.unicodeScalars.count <= Self.maximumNameLength, !name.contains("/")
        else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request",
                "name must be a folder name of 1 to \(Self.maximumNameLength) characters without /")
        }
        let id = UUID()
        try database.transaction { connection in
            try requireMatter(connection, matterID, caller)
            var parent: UUID?
            if let text = try Self.text(body, "parentFolderId", required: false) {
                guard let parentID = UUID(uuidString: text),
                    try connection.execute(
                        "SELECT 1 FROM sb_folders WHERE id = $1 AND matter_id = $2", [parentID, matterID]
                    ).rowCount == 1
                else {
                    throw SandboxFailure.problem(.badRequest, "Bad Request", "parentFolderId does not name a folder")
                }
                parent = parentID
            }
            // Same-named folders may coexist, as in Smokeball (FACTS.md): a second POST makes a second.
            try connection.execute(
                """
                INSERT INTO sb_folders (id, account_id, matter_id, parent_id, name, created_at, visible_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                """, [id, caller.accountID, matterID, parent, name, now, caller.visibleAt(now)])
        }
        return Accepted.link(
            request, id: id,
            path: "/matters/\(matterID.uuidString.lowercased())/documents/folders/\(id.uuidString.lowercased())")
    }

    func addMemo(_ body: [String: Any], matterID: UUID, request: Request, caller: APIServer.Caller) throws -> Response {
        guard let title = try Self.text(body, "title", required: true),
            let text = try Self.text(body, "text", required: true)
        else { throw SandboxFailure.problem(.badRequest, "Bad Request", "title and text are required") }
        let id = UUID()
        try database.transaction { connection in
            try requireMatter(connection, matterID, caller)
            try connection.execute(
                """
                INSERT INTO sb_memos (id, account_id, matter_id, title, text, created_at, visible_at, created_by)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """, [id, caller.accountID, matterID, title, text, now, caller.visibleAt(now), caller.userID])
            try Events.record(
                connection, account: caller.accountID, type: "memo.created", caller: caller,
                payload: Events.payload(
                    Self.memo(
                        id: id, matterID: matterID, title: title, text: text, created: now, userID: caller.userID,
                        origin: "")))
        }
        return Accepted.link(
            request, id: id, path: "/matters/\(matterID.uuidString.lowercased())/memos/\(id.uuidString.lowercased())")
    }

    func memo(_ request: Request, matterID: UUID, memoID: UUID, caller: APIServer.Caller) throws -> Response {
        let row = try database.withConnection { connection in
            try requireMatter(connection, matterID, caller)
            return try connection.execute(
                """
                SELECT title, text, created_at, created_by FROM sb_memos
                WHERE id = $1 AND matter_id = $2 AND visible_at <= $3
                """,
                [memoID, matterID, now]
            ).first
        }
        guard let row else { throw SandboxFailure.problem(.notFound, "Not Found", "No such memo") }
        return Response.json(
            Self.memo(
                id: memoID, matterID: matterID, title: try row.string("title"), text: try row.string("text"),
                created: try row.date("created_at"), userID: try row.optionalUUID("created_by"),
                origin: request.sandboxOrigin))
    }

    /// A memo as the spec's `Memo` (GET and the `memo.created` payload alike).
    static func memo(
        id: UUID, matterID: UUID, title: String, text: String, created: Date, userID: UUID?, origin: String
    ) -> [String: Any] {
        let memo = id.uuidString.lowercased()
        let matter = matterID.uuidString.lowercased()
        let date = Timestamp.iso8601(created, fractionDigits: 0)
        return [
            "href": "\(origin)/matters/\(matter)/memos/\(memo)", "id": memo, "matterId": matter, "title": title,
            "text": text, "plainText": text, "createdDate": date, "lastUpdated": date,
            "createdByUserId": userID.map { $0.uuidString.lowercased() } ?? NSNull(), "isDeleted": false,
        ]
    }
}

/// The bodies of document and memo writes.
extension BodyShape {
    static let addFile = properties(
        ["fileName", "folderId", "userId", "folderPath"],
        ["fileAdditionalData": .map(.any), "dateCreated": .dateTime, "dateModified": .dateTime])
    static let folder = properties(["name", "parentFolderId", "userId"])
    static let memo = properties(["title", "text", "userId"], ["createdDateUtc": .dateTime])
}
