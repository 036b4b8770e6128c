import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// Files in two steps (metadata, then bytes to an expiring upload URL), folders and memos.
@Suite struct DocumentsTests {
    typealias F = SandboxFixture

    @Test(arguments: [
        ("report.pdf", ".pdf"), ("report.final.PDF", ".PDF"), ("README", ""), (".env", ""), ("draft.", ""),
        ("archive.tar.gz", ".gz"),
    ])
    func aFileExtensionIsTheLastDotOnwards(name: String, expected: String) {
        #expect(Documents.fileExtension(of: name) == expected)
    }

    /// A matter in the fixture's account, inserted directly (the matters API is tested elsewhere).
    static func matter(_ fixture: F, account: UUID? = nil, visibleAt: Date? = nil) throws -> String {
        let id = UUID()
        let connection = try Connection(url: fixture.databaseURL)
        try connection.execute(
            """
            INSERT INTO sb_matters (id, account_id, version_id, matter_type_id, status, doc, created_at, updated_at, visible_at)
            SELECT $1, $2, $1, (SELECT id FROM sb_matter_types WHERE region = 'US' AND NOT is_deleted ORDER BY id LIMIT 1),
                   'Open', '{}'::jsonb, $3, $3, $4
            """, [id, account ?? fixture.accountID, fixture.now, visibleAt ?? fixture.now])
        return id.uuidString.lowercased()
    }

    static func json(_ object: Any) -> [UInt8] { F.jsonBytes(object) }

    static func post(_ fixture: F, _ path: String, _ token: String, _ body: Any, requestID: String = "doc-req")
        -> Response
    {
        fixture.write("POST", path, token: token, body: json(body), requestID: requestID)
    }

    static func uploadURL(_ info: [String: Any]) -> String { (info["uploadUrl"] as? String) ?? "" }

    static func events(_ fixture: F, type: String) throws -> [Row] {
        try Connection(url: fixture.databaseURL).execute(
            "SELECT request_id, payload::text AS payload FROM sb_events WHERE type = $1 ORDER BY id", [type]
        ).rows
    }

    @Test func aFileIsAddedThenUploadedOnceToItsURL() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let files = "/matters/\(matter)/documents/files"
        let added = Self.post(fixture, files, access, ["fileName": "signed-retainer.pdf"], requestID: "add-1")
        #expect(added.status == .accepted)
        let info = F.json(added)
        let spec = OpenAPIValidator.smokeball
        #expect(spec.problems(info, path: "/matters/{matterId}/documents/files", method: "post", status: 202) == [])
        let fileID = try #require(info["fileId"] as? String)

        let pending = F.json(fixture.api("GET", "\(files)/\(fileID)", token: access))
        #expect(pending["isUploaded"] as? Bool == false)

        let bytes = Array("%PDF-1.7 retainer".utf8)
        // The secret is in the query (logs leave it out), bound to this file: another file's id
        // with it, or the bare path, is refused and takes nothing.
        let uploadURL = Self.uploadURL(info)
        #expect(URLComponents(string: uploadURL)?.path == "/_uploads/\(fileID)")
        let otherFile = uploadURL.replacingOccurrences(of: fileID, with: UUID().uuidString.lowercased())
        #expect(fixture.call("PUT", url: otherFile, body: bytes).status == .forbidden)
        #expect(fixture.call("PUT", "/_uploads/\(fileID)", body: bytes).status == .forbidden)
        // The upload carries no Smokeball headers at all.
        let uploaded = fixture.call("PUT", url: uploadURL, body: bytes)
        #expect(uploaded.status == .ok)
        #expect(uploaded.header("ETag") != nil)
        #expect(fixture.call("PUT", url: Self.uploadURL(info), body: [1, 2, 3]).status == .forbidden)

        let file = fixture.api("GET", "\(files)/\(fileID)", token: access)
        let body = try JSONSerialization.jsonObject(with: Data(file.body))
        #expect(
            spec.problems(body, path: "/matters/{matterId}/documents/files/{fileId}", method: "get", status: 200) == [])
        let fields = body as? [String: Any] ?? [:]
        #expect(fields["isUploaded"] as? Bool == true)
        #expect(fields["sizeBytes"] as? Int == bytes.count)
        // The spec's `File.name` excludes the extension (FACTS.md), which comes on its own.
        #expect(fields["name"] as? String == "signed-retainer")
        #expect(fields["fileExtension"] as? String == ".pdf")
        let stored = try Connection(url: fixture.databaseURL).execute(
            "SELECT content FROM sb_files WHERE id = $1", [UUID(uuidString: fileID)]
        ).single().bytes("content")
        #expect(stored == bytes)
        let events = try Self.events(fixture, type: "files.updated")
        #expect(events.count == 1)
        #expect(try events.first?.optionalString("request_id") == "add-1")

        let list = fixture.api("GET", files, token: access)
        let listBody = try JSONSerialization.jsonObject(with: Data(list.body))
        #expect(spec.problems(listBody, path: "/matters/{matterId}/documents/files", method: "get", status: 200) == [])
        #expect(((listBody as? [String: Any])?["value"] as? [Any])?.count == 1)
    }

    @Test func anUploadURLExpires() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let info = F.json(Self.post(fixture, "/matters/\(matter)/documents/files", access, ["fileName": "late.pdf"]))
        fixture.advance(by: Documents.uploadLifetime + 1)
        #expect(fixture.call("PUT", url: Self.uploadURL(info), body: [1]).status == .forbidden)
        #expect(try Self.events(fixture, type: "files.updated").isEmpty)
    }

    /// `GET .../files/{fileId}/upload` (the spec's `UploadFile`): a new single-use URL for a file
    /// whose URL expired; the old one stops working. Another account's matter is 403, an unknown
    /// file 404, as the spec says.
    @Test func anExpiredUploadURLIsReplacedByANewSingleUseOne() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let files = "/matters/\(matter)/documents/files"
        let info = F.json(Self.post(fixture, files, access, ["fileName": "late.pdf"]))
        let fileID = try #require(info["fileId"] as? String)
        let replaced = fixture.api("GET", "\(files)/\(fileID)/upload", token: access)
        #expect(replaced.status == .ok)
        let body = try JSONSerialization.jsonObject(with: Data(replaced.body))
        #expect(
            OpenAPIValidator.smokeball.problems(
                body, path: "/matters/{matterId}/documents/files/{fileId}/upload", method: "get", status: 200) == [])
        let fresh = body as? [String: Any] ?? [:]
        #expect(fresh["fileId"] as? String == fileID)
        #expect(Self.uploadURL(fresh) != Self.uploadURL(info))
        // The first URL no longer works; the new one does, once.
        #expect(fixture.call("PUT", url: Self.uploadURL(info), body: [1]).status == .forbidden)
        fixture.advance(by: Documents.uploadLifetime - 1)
        #expect(fixture.call("PUT", url: Self.uploadURL(fresh), body: [1, 2]).status == .ok)
        #expect(fixture.call("PUT", url: Self.uploadURL(fresh), body: [3]).status == .forbidden)
        let stored = F.json(fixture.api("GET", "\(files)/\(fileID)", token: access))
        #expect(stored["isUploaded"] as? Bool == true)
        #expect(stored["sizeBytes"] as? Int == 2)

        let other = F.json(fixture.admin("POST", "/_sandbox/accounts", ["name": "Other Firm"]))
        let foreign = try Self.matter(fixture, account: UUID(uuidString: (other["id"] as? String) ?? ""))
        for (path, status) in [
            ("/matters/\(foreign)/documents/files/\(fileID)/upload", 403),
            ("\(files)/\(UUID().uuidString)/upload", 404), ("\(files)/not-a-uuid/upload", 404),
        ] {
            let refused = fixture.api("GET", path, token: access)
            #expect(refused.status.code == status, "\(path)")
            #expect(OpenAPIValidator.smokeball.problems(F.json(refused), schema: "ProblemDetails") == [])
        }
    }

    /// Folders of the same name coexist, as in Smokeball (FACTS.md): a second POST makes a second.
    @Test func aSecondFolderOfTheSameNameIsASecondFolder() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let folders = "/matters/\(matter)/documents/folders"
        #expect(Self.post(fixture, folders, access, ["name": "CaseHug"]).status == .accepted)
        #expect(Self.post(fixture, folders, access, ["name": "CaseHug"]).status == .accepted)
        let count = try Connection(url: fixture.databaseURL).execute(
            "SELECT count(*)::int AS n FROM sb_folders WHERE name = 'CaseHug'")
        #expect(try count.single().int("n") == 2)
    }

    /// Smokeball's upload URLs are S3 pre-signed PUTs signed for an empty Content-Type: a PUT
    /// that sends one is refused as S3 refuses it and stores nothing; the same URL then works,
    /// once, without the header (an empty one, as nginx passes an absent one, is fine).
    @Test(arguments: ["application/octet-stream", "application/x-www-form-urlencoded", "application/pdf"])
    func anUploadWithAContentTypeIsRefusedAsS3DoesAndStoresNothing(contentType: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let info = F.json(Self.post(fixture, "/matters/\(matter)/documents/files", access, ["fileName": "scan.pdf"]))
        let fileID = try #require(UUID(uuidString: info["fileId"] as? String ?? ""))
        let bytes = Array("%PDF-1.7 scan".utf8)

        let refused = fixture.call(
            "PUT", url: Self.uploadURL(info), headers: ["content-type": contentType], body: bytes)
        #expect(refused.status == .forbidden)
        #expect(refused.header("Content-Type") == "application/xml")
        let xml = F.text(refused)
        #expect(xml.hasPrefix(#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>"#))
        #expect(
            xml.contains(
                "<Message>The request signature we calculated does not match the signature you provided. "
                    + "Check your key and signing method.</Message>"))
        #expect(xml.hasSuffix("</Error>"))
        let stored = try Connection(url: fixture.databaseURL).execute(
            """
            SELECT count(*) FILTER (WHERE content IS NOT NULL OR uploaded_at IS NOT NULL) AS uploaded,
                   coalesce(sum(octet_length(content)), 0) AS bytes FROM sb_files
            """
        ).single()
        #expect(try stored.int("uploaded") == 0)
        #expect(try stored.int("bytes") == 0)
        #expect(try Self.events(fixture, type: "files.updated").isEmpty)

        // Retried without the header (here: empty, as nginx passes an absent one): once.
        let uploaded = fixture.call("PUT", url: Self.uploadURL(info), headers: ["content-type": ""], body: bytes)
        #expect(uploaded.status == .ok)
        #expect(fixture.call("PUT", url: Self.uploadURL(info), body: bytes).status == .forbidden)
        let content = try Connection(url: fixture.databaseURL).execute(
            "SELECT content FROM sb_files WHERE id = $1", [fileID]
        ).single().bytes("content")
        #expect(content == bytes)
        #expect(try Self.events(fixture, type: "files.updated").count == 1)
    }

    /// The spec's maxLength of 256 for file and folder names, in code points: 256 (even of
    /// multi-byte characters) is accepted, 257 is a 400 that stores nothing.
    @Test(arguments: ["a", "é", "🙂"])
    func namesMayHaveUpToTheSpecsLength(character: String) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let longest = String(repeating: character, count: Documents.maximumNameLength)
        let files = "/matters/\(matter)/documents/files"
        let folders = "/matters/\(matter)/documents/folders"
        #expect(Self.post(fixture, files, access, ["fileName": longest]).status == .accepted)
        #expect(Self.post(fixture, folders, access, ["name": longest]).status == .accepted)
        for (path, field) in [(files, "fileName"), (folders, "name")] {
            let refused = Self.post(fixture, path, access, [field: longest + character])
            #expect(refused.status == .badRequest, "\(path)")
            #expect(OpenAPIValidator.smokeball.problems(F.json(refused), schema: "ProblemDetails") == [])
        }
        #expect(Self.post(fixture, folders, access, ["name": ""]).status == .badRequest)
        let counts = try Connection(url: fixture.databaseURL).execute(
            "SELECT (SELECT count(*) FROM sb_files)::int AS files, (SELECT count(*) FROM sb_folders)::int AS folders"
        ).single()
        #expect(try counts.int("files") == 1)
        #expect(try counts.int("folders") == 1)
    }

    @Test func folderPathsAreCreatedOnceAndBulkAddsMany() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let bulk = Self.post(
            fixture, "/matters/\(matter)/documents/files/bulk", access,
            [
                ["fileName": "a.pdf", "folderPath": "Intake/Identity"],
                ["fileName": "b.pdf", "folderPath": "intake/identity"], ["fileName": "c.pdf"],
            ])
        #expect(bulk.status == .accepted)
        let infos = try JSONSerialization.jsonObject(with: Data(bulk.body))
        #expect(
            OpenAPIValidator.smokeball.problems(
                infos, path: "/matters/{matterId}/documents/files/bulk", method: "post", status: 202) == [])
        #expect((infos as? [Any])?.count == 3)
        let folders = try Connection(url: fixture.databaseURL).execute(
            "SELECT name FROM sb_folders ORDER BY parent_id NULLS FIRST"
        ).rows.map { try $0.string("name") }
        #expect(folders == ["Intake", "Identity"])
        let files = try Connection(url: fixture.databaseURL).execute(
            "SELECT count(DISTINCT folder_id)::int AS folders, count(*)::int AS files FROM sb_files WHERE folder_id IS NOT NULL"
        ).single()
        #expect(try files.int("folders") == 1)
        #expect(try files.int("files") == 2)
    }

    @Test(
        arguments: [
            ["fileName": ""], ["folderId": "not-a-folder", "fileName": "x.pdf"], ["fileName": 42],
            ["folderId": UUID().uuidString, "fileName": "x.pdf"],
        ] as [[String: any Sendable]])
    func badFilesAreRefusedAndNothingIsStored(body: [String: any Sendable]) throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let refused = Self.post(fixture, "/matters/\(matter)/documents/files", access, body)
        #expect(refused.status == .badRequest)
        let count = try Connection(url: fixture.databaseURL).execute("SELECT count(*)::int AS n FROM sb_files")
        #expect(try count.single().int("n") == 0)
    }

    @Test func otherAccountsAndInvisibleMattersAreNotFound() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let other = F.json(fixture.admin("POST", "/_sandbox/accounts", ["name": "Other Firm"]))
        let foreign = try Self.matter(fixture, account: UUID(uuidString: (other["id"] as? String) ?? ""))
        let later = try Self.matter(fixture, visibleAt: fixture.now.addingTimeInterval(60))
        for matter in [foreign, later, UUID().uuidString] {
            let response = Self.post(fixture, "/matters/\(matter)/documents/files", access, ["fileName": "x.pdf"])
            #expect(response.status == .notFound)
        }
    }

    @Test func memosAreAcceptedRecordedAndReadable() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try Self.matter(fixture)
        let created = Self.post(
            fixture, "/matters/\(matter)/memos", access, ["title": "Intake summary", "text": "Client called."],
            requestID: "memo-1")
        #expect(created.status == .accepted)
        let link = F.json(created)
        #expect(OpenAPIValidator.smokeball.problems(link, schema: "Link") == [])
        let memoID = try #require(link["id"] as? String)
        let memo = fixture.api("GET", "/matters/\(matter)/memos/\(memoID)", token: access)
        let body = try JSONSerialization.jsonObject(with: Data(memo.body))
        #expect(
            OpenAPIValidator.smokeball.problems(
                body, path: "/matters/{matterId}/memos/{id}", method: "get", status: 200) == [])
        #expect((body as? [String: Any])?["title"] as? String == "Intake summary")
        let events = try Self.events(fixture, type: "memo.created")
        #expect(try events.map { try $0.optionalString("request_id") } == ["memo-1"])
        #expect(Self.post(fixture, "/matters/\(matter)/memos", access, ["text": "no title"]).status == .badRequest)
    }
}
