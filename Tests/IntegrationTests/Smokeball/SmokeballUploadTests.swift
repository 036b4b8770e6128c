import Basics
import Cryptography
import Foundation
import HTTPClient
import PostgreSQL
import Testing

@testable import Smokeball

@Suite(.serialized) struct SmokeballUploadTests {
    struct AddFile: Encodable { let fileName: String }
    struct AddedFile: Decodable, Sendable {
        let fileId: String
        let uploadUrl: String
        let expiry: String
    }
    struct DownloadInfo: Decodable, Sendable { let downloadUrl: String }

    /// A new file on a new matter of the sandbox's firm: its id and pre-signed upload URL.
    static func addFile(_ sandbox: SmokeballSandbox, _ client: SmokeballClient, _ access: SmokeballAccess) throws
        -> (matter: String, file: AddedFile)
    {
        let matter = try sandbox.store.insertMatter(accountID: sandbox.accountID).uuidString.lowercased()
        let (response, _) = try client.call(
            "POST", "/matters/\(matter)/documents/files",
            body: Array(try JSONEncoder().encode(AddFile(fileName: "scan.pdf"))), access: access)
        return (matter, try JSONDecoder().decode(AddedFile.self, from: Data(response.body)))
    }

    static func scratchFile(_ bytes: [UInt8]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("upload-\(UUID().uuidString)").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// SHA-256 of a file, read in pieces.
    static func sha256(ofFileAt path: String) throws -> [UInt8] {
        try #require(FileHandle(forReadingAtPath: path)).readToEnd().map { SHA256.hash([UInt8]($0)) } ?? []
    }

    @Test("a file streams to the upload URL without a rate-limit token, and its download is byte-identical (SHA-256)")
    func streamedUploadRoundTrips() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let access = try sandbox.userAccess(client)
            let (matter, added) = try Self.addFile(sandbox, client, access)
            var generator = SystemRandomNumberGenerator()
            let original = (0..<(5 << 20) + 11).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            let path = try Self.scratchFile(original)
            defer { try? FileManager.default.removeItem(atPath: path) }

            // Through an emptied bucket that refills too slowly to matter: a call that took a
            // token would give up; the upload does not ask for one.
            let drained = PartnerRateLimit(
                database: Database(url: sandbox.database.appURL), clientID: "drained-upload", ratePerSecond: 0.001,
                burst: 1, maximumWait: 0.1)
            #expect(try drained.tryTake(.interactive) == 0)
            let uploader = try SmokeballClient(configuration: try sandbox.configuration(), rateLimit: drained)
            let expiry = try #require(ISO8601DateFormatter().date(from: added.expiry))
            try uploader.upload(fileAt: path, to: added.uploadUrl, expiry: expiry)

            let info: SmokeballResult<DownloadInfo> = try client.get(
                "/matters/\(matter)/documents/files/\(added.fileId)/download", access: access)
            let downloaded = try Self.scratchFile([])
            defer { try? FileManager.default.removeItem(atPath: downloaded) }
            let target = try #require(FileHandle(forUpdatingAtPath: downloaded))
            let response = try HTTPClient().download(HTTPRequest(url: info.value.downloadUrl), to: target)
            #expect(response.status == 200)
            #expect(try Self.sha256(ofFileAt: downloaded) == SHA256.hash(original))
        }
    }

    @Test("a used or expired upload URL is UploadURLExpiredError, and one past its expiry is not even tried")
    func expiredUploadURL() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let access = try sandbox.userAccess(client)
            let path = try Self.scratchFile(Array("%PDF-1.4 small".utf8))
            defer { try? FileManager.default.removeItem(atPath: path) }

            // Past its expiry by the caller's clock: refused before sending, so the URL still works.
            let (_, fresh) = try Self.addFile(sandbox, client, access)
            let early = #expect(throws: UploadURLExpiredError.self) {
                try client.upload(fileAt: path, to: fresh.uploadUrl, expiry: Date(timeIntervalSinceNow: -1))
            }
            #expect(early?.upstreamStatus == nil)
            try client.upload(fileAt: path, to: fresh.uploadUrl)

            // Used once already: S3's 403.
            let used = #expect(throws: UploadURLExpiredError.self) {
                try client.upload(fileAt: path, to: fresh.uploadUrl)
            }
            #expect(used?.upstreamStatus == 403)
            #expect(used?.code == "upload_url_expired")
            #expect(!(used.map(String.init(describing:)) ?? "").contains("signature"))

            // Expired on the sandbox's side while the caller's `expiry` still looks good.
            let (_, stale) = try Self.addFile(sandbox, client, access)
            try Connection(url: sandbox.store.url).execute(
                "UPDATE sb_files SET upload_expires_at = now() - interval '1 second' WHERE id = $1::uuid",
                [stale.fileId])
            let expired = #expect(throws: UploadURLExpiredError.self) {
                try client.upload(fileAt: path, to: stale.uploadUrl, expiry: Date(timeIntervalSinceNow: 600))
            }
            #expect(expired?.upstreamStatus == 403)
        }
    }

    @Test("S3's 403 SignatureDoesNotMatch is a client fault (rejected), its expired-request 403 an expired URL")
    func s3Refusals() {
        func answer(_ code: String, _ message: String) -> HTTPResponse {
            let xml =
                #"<?xml version="1.0" encoding="UTF-8"?>"#
                + "<Error><Code>\(code)</Code><Message>\(message)</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"
            return HTTPResponse(status: 403, headers: [("Content-Type", "application/xml")], body: Array(xml.utf8))
        }
        let mismatch = #expect(throws: SmokeballError.self) {
            try SmokeballClient.checkUpload(answer("SignatureDoesNotMatch", "The request signature we calculated..."))
        }
        #expect(mismatch?.code == .rejected && mismatch?.upstreamStatus == 403)
        let expired = #expect(throws: UploadURLExpiredError.self) {
            try SmokeballClient.checkUpload(answer("AccessDenied", "Request has expired"))
        }
        #expect(expired?.upstreamStatus == 403)
        #expect(throws: Never.self) {
            try SmokeballClient.checkUpload(HTTPResponse(status: 200, headers: [], body: []))
        }
        let unavailable = #expect(throws: SmokeballError.self) {
            try SmokeballClient.checkUpload(HTTPResponse(status: 503, headers: [], body: []))
        }
        #expect(unavailable?.code == .unavailable)
    }

    @Test("a file that cannot be read is a local failure, not a Smokeball one, and is not retried")
    func unreadableFile() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let access = try sandbox.userAccess(client)
            let (_, added) = try Self.addFile(sandbox, client, access)
            let error = #expect(throws: HTTPClientError.self) {
                try client.upload(fileAt: "/nonexistent/\(UUID().uuidString)", to: added.uploadUrl)
            }
            #expect(error?.code == .localFile)
            let pipe = Pipe()
            #expect(throws: HTTPClientError(code: .localFile, curlCode: 26)) {
                try client.upload(pipe.fileHandleForReading, to: added.uploadUrl)
            }
            // The URL was never used.
            let path = try Self.scratchFile([1, 2, 3])
            defer { try? FileManager.default.removeItem(atPath: path) }
            try client.upload(fileAt: path, to: added.uploadUrl)
        }
    }
}
