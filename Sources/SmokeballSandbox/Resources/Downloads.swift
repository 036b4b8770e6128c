import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL

/// `GET /matters/{id}/documents/files/{fileId}/download` answers `DownloadFileInfo`: where to
/// fetch the bytes, a short-lived URL on the sandbox (`/_downloads/{fileId}?signature=...`)
/// that, like a pre-signed S3 URL, needs no Smokeball headers and is not rate limited.
struct Downloads {
    let database: Database
    let now: Date

    /// How long a download URL works.
    static let lifetime: TimeInterval = 300

    func info(_ request: Request, matterID: UUID, fileID: UUID, caller: APIServer.Caller) throws -> Response {
        // versionId is the file's id: the sandbox keeps one version of a file.
        if let version = request.queryValue("versionId"), !version.isEmpty,
            UUID(uuidString: version) != fileID
        {
            throw SandboxFailure.problem(.notFound, "Not Found", "No such file version")
        }
        let token = SecureRandom.token(byteCount: 32)
        let expiry = now.addingTimeInterval(Self.lifetime)
        let row = try database.transaction { connection in
            try Folders.requireOwnMatter(connection, matterID, caller, now: now)
            let row = try connection.execute(
                """
                SELECT name, size_bytes, uploaded_at FROM sb_files
                WHERE id = $1 AND matter_id = $2 AND visible_at <= $3
                """, [fileID, matterID, now]
            ).first
            guard let row else { throw SandboxFailure.problem(.notFound, "Not Found", "No such file") }
            guard try row.optionalDate("uploaded_at") != nil else {
                throw SandboxFailure.problem(.badRequest, "Bad Request", "The file's content has not been uploaded")
            }
            // Expired links are of no use to anyone: each new one clears them away.
            try connection.execute("DELETE FROM sb_downloads WHERE expires_at <= $1", [now])
            try connection.execute(
                "INSERT INTO sb_downloads (token_sha256, file_id, expires_at) VALUES ($1, $2, $3)",
                [SHA256.hash(Array(token.utf8)), fileID, expiry])
            return row
        }
        let name = try row.string("name")
        // The spec's name excludes the extension, which comes separately (with its dot).
        let fileExtension = Documents.fileExtension(of: name)
        return Response.json([
            "fileId": fileID.uuidString.lowercased(), "name": String(name.dropLast(fileExtension.count)),
            "fileExtension": fileExtension,
            "downloadUrl": request.sandboxOrigin + "/_downloads/" + fileID.uuidString.lowercased() + "?signature="
                + token,
            "expiry": Timestamp.iso8601(expiry, fractionDigits: 0), "sizeBytes": try row.int("size_bytes"),
        ])
    }

    /// `GET /_downloads/{fileId}?signature=...`: the stored bytes, or 403 as S3 answers an
    /// expired or unknown URL.
    func serve(_ request: Request) throws -> Response {
        guard request.method == "GET" else {
            throw SandboxFailure.problem(.methodNotAllowed, "Method Not Allowed", "Download with GET")
        }
        let target = try Uploads.signedTarget(request, prefix: "/_downloads/")
        let row = try database.withConnection {
            try $0.execute(
                """
                SELECT f.content FROM sb_downloads d JOIN sb_files f ON f.id = d.file_id
                WHERE d.token_sha256 = $1 AND d.file_id = $3 AND d.expires_at > $2 AND f.content IS NOT NULL
                """, [target.signatureSHA256, now, target.fileID]
            ).first
        }
        guard let row else {
            throw SandboxFailure.problem(.forbidden, "Forbidden", "The download URL is invalid or expired")
        }
        return Response(
            status: .ok, headers: [("Content-Type", "application/octet-stream")], body: try row.bytes("content"))
    }
}
