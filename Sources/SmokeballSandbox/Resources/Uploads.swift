import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL

/// `PUT /_uploads/{fileId}?signature=...`: the second step of adding a file. Like a pre-signed
/// S3 URL it takes the bytes with no Smokeball headers and no rate limit, works once, and
/// expires; its secret is in the query, which nginx's and the route's logs leave out.
///
/// Smokeball signs its upload URLs for an empty `Content-Type`, so S3 refuses a PUT that sends
/// one (403 `SignatureDoesNotMatch`, in S3's XML) and stores nothing. libcurl adds
/// `Content-Type: application/x-www-form-urlencoded` to a request body unless told not to, so
/// this is what catches a client that forgot. nginx hands the header over as `CONTENT_TYPE`,
/// where absent and empty look alike: both are what Smokeball signed, and both are accepted.
struct Uploads {
    let database: Database
    let now: Date

    static func url(origin: String, fileID: UUID, signature: String) -> String {
        origin + "/_uploads/" + fileID.uuidString.lowercased() + "?signature=" + signature
    }

    /// The file id and signature of a pre-signed URL (`/{prefix}/{fileId}?signature=...`); a
    /// malformed one is the 403 S3 gives any URL it cannot verify.
    static func signedTarget(_ request: Request, prefix: String) throws -> (fileID: UUID, signatureSHA256: [UInt8]) {
        guard let fileID = UUID(uuidString: String(request.path.dropFirst(prefix.count))),
            let signature = request.queryValue("signature"), !signature.isEmpty
        else {
            throw SandboxFailure.problem(.forbidden, "Forbidden", "The URL is not a valid pre-signed URL")
        }
        return (fileID, SHA256.hash(Array(signature.utf8)))
    }

    func handle(_ request: Request) throws -> Response {
        guard request.method == "PUT" else {
            throw SandboxFailure.problem(.methodNotAllowed, "Method Not Allowed", "Upload with PUT")
        }
        let target = try Self.signedTarget(request, prefix: "/_uploads/")
        if let type = request.header("content-type"), !type.isEmpty { throw SandboxFailure.signatureDoesNotMatch }
        return try database.transaction { connection in
            let row = try connection.execute(
                """
                UPDATE sb_files SET content = $2, size_bytes = $3, uploaded_at = $4, upload_token_sha256 = $6
                WHERE id = $5 AND upload_token_sha256 = $1 AND upload_expires_at > $4
                RETURNING id, account_id, matter_id, client_id, request_id, user_id
                """,
                [
                    target.signatureSHA256, request.body, request.body.count, now, target.fileID,
                    // Single use: the URL's digest gives way to one that no URL has.
                    SHA256.hash(SecureRandom.bytes(32)),
                ]
            ).first
            guard let row else {
                // S3 answers an expired, reused or unknown pre-signed URL with 403.
                throw SandboxFailure.problem(.forbidden, "Forbidden", "The upload URL is invalid, used or expired")
            }
            // A matter-level event (Smokeball: re-read the matter's files), so its payload is the
            // matter, caused by the partner's request that added the file.
            let account = try row.uuid("account_id")
            let caller = try row.optionalString("client_id").map {
                APIServer.Caller(
                    clientID: $0, accountID: account, region: "", requestID: try row.optionalString("request_id"),
                    writeDelayMilliseconds: 0, userID: try row.optionalUUID("user_id"))
            }
            try Events.record(
                connection, account: account, type: "files.updated", caller: caller,
                payload: try Matters.payload(connection, id: try row.uuid("matter_id"), account: account))
            return Response(status: .ok, headers: [("ETag", "\"\(Hex.encode(SHA256.hash(request.body).prefix(16)))\"")])
        }
    }
}
