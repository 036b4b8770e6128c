import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// Reading a matter's folder tree (root and one folder, paged) and downloading a file's bytes
/// through the short-lived URL `.../download` answers.
@Suite struct FoldersTests {
    typealias F = SandboxFixture
    typealias D = DocumentsTests

    static let listing = "/matters/{matterId}/documents/folders"
    static let folderListing = "/matters/{matterId}/documents/folders/{folderId}"

    /// A matter with Intake/ (holding a.pdf, b.pdf and Identity/), Billing/ and root.pdf.
    static func tree(_ fixture: F, _ access: String) throws -> (matter: String, intake: String) {
        let matter = try D.matter(fixture)
        let bulk = D.post(
            fixture, "/matters/\(matter)/documents/files/bulk", access,
            [
                ["fileName": "b.pdf", "folderPath": "Intake"], ["fileName": "a.pdf", "folderPath": "Intake"],
                ["fileName": "id.png", "folderPath": "Intake/Identity"], ["fileName": "root.pdf"],
            ])
        #expect(bulk.status == .accepted)
        #expect(
            D.post(fixture, "/matters/\(matter)/documents/folders", access, ["name": "Billing"]).status == .accepted)
        let intake = try Connection(url: fixture.databaseURL).execute(
            "SELECT id FROM sb_folders WHERE name = 'Intake'"
        ).single().uuid("id")
        return (matter, intake.uuidString.lowercased())
    }

    static func names(_ body: [String: Any], _ key: String) -> [String] {
        let listing = (body["value"] as? [[String: Any]])?.first ?? [:]
        return (listing[key] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    }

    @Test func theRootAndAFolderListTheirChildren() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let (matter, intake) = try Self.tree(fixture, access)
        let spec = OpenAPIValidator.smokeball

        let root = fixture.api("GET", "/matters/\(matter)/documents/folders", token: access)
        #expect(root.status == .ok)
        let rootBody = try JSONSerialization.jsonObject(with: Data(root.body))
        #expect(spec.problems(rootBody, path: Self.listing, method: "get", status: 200) == [])
        let rootFields = rootBody as? [String: Any] ?? [:]
        #expect(Self.names(rootFields, "folders") == ["Billing", "Intake"])
        // A File's name excludes its extension (FACTS.md).
        #expect(Self.names(rootFields, "files") == ["root"])
        #expect(rootFields["size"] as? Int == 3)
        #expect(rootFields["id"] is NSNull)

        let folder = fixture.api("GET", "/matters/\(matter)/documents/folders/\(intake)", token: access)
        let folderBody = try JSONSerialization.jsonObject(with: Data(folder.body))
        #expect(spec.problems(folderBody, path: Self.folderListing, method: "get", status: 200) == [])
        let fields = folderBody as? [String: Any] ?? [:]
        #expect(fields["name"] as? String == "Intake")
        #expect(fields["id"] as? String == intake)
        #expect(Self.names(fields, "folders") == ["Identity"])
        #expect(Self.names(fields, "files") == ["a", "b"])
    }

    @Test func childrenArePagedSubfoldersFirst() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let (matter, intake) = try Self.tree(fixture, access)
        let path = "/matters/\(matter)/documents/folders/\(intake)"
        var seen: [String] = []
        for offset in 0..<3 {
            let page = fixture.api("GET", path, token: access, query: ["Offset": String(offset), "Limit": "1"])
            let body = F.json(page)
            #expect(body["size"] as? Int == 3)
            #expect((body["next"] is NSNull) == (offset == 2))
            seen += Self.names(body, "folders") + Self.names(body, "files")
        }
        #expect(seen == ["Identity", "a", "b"])
        #expect(fixture.api("GET", path, token: access, query: ["Limit": "501"]).status == .badRequest)
    }

    @Test func anotherAccountsMatterIsForbiddenAndUnknownIdsAreNotFound() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let (matter, _) = try Self.tree(fixture, access)
        let other = F.json(fixture.admin("POST", "/_sandbox/accounts", ["name": "Other Firm"]))
        let foreign = try D.matter(fixture, account: UUID(uuidString: (other["id"] as? String) ?? ""))
        let spec = OpenAPIValidator.smokeball
        let forbidden = fixture.api("GET", "/matters/\(foreign)/documents/folders", token: access)
        #expect(forbidden.status == .forbidden)
        #expect(spec.problems(F.json(forbidden), path: Self.listing, method: "get", status: 403) == [])
        let cases: [(String, Int)] = [
            ("/matters/\(UUID().uuidString)/documents/folders", 404),
            ("/matters/\(matter)/documents/folders/\(UUID().uuidString)", 404),
            ("/matters/\(matter)/documents/folders/not-a-uuid", 404),
            ("/matters/\(foreign)/documents/folders/\(UUID().uuidString)", 403),
        ]
        for (path, status) in cases {
            let response = fixture.api("GET", path, token: access)
            #expect(response.status.code == status, "\(path)")
            #expect(spec.problems(F.json(response), schema: "ProblemDetails") == [])
        }
    }

    @Test func aDownloadURLServesTheUploadedBytesUntilItExpires() throws {
        let fixture = try F(rate: 1000, burst: 1000)
        let (access, _) = fixture.connect()
        let matter = try D.matter(fixture)
        let files = "/matters/\(matter)/documents/files"
        let info = F.json(D.post(fixture, files, access, ["fileName": "court filing.pdf"]))
        let fileID = try #require(info["fileId"] as? String)
        let download = "\(files)/\(fileID)/download"
        // Nothing to download before the bytes are uploaded.
        #expect(fixture.api("GET", download, token: access).status == .badRequest)
        let bytes = Array("%PDF-1.7 filing".utf8)
        #expect(fixture.call("PUT", url: D.uploadURL(info), body: bytes).status == .ok)

        let answer = fixture.api("GET", download, token: access)
        #expect(answer.status == .ok)
        let body = try JSONSerialization.jsonObject(with: Data(answer.body))
        #expect(
            OpenAPIValidator.smokeball.problems(
                body, path: "/matters/{matterId}/documents/files/{fileId}/download", method: "get", status: 200) == [])
        let fields = body as? [String: Any] ?? [:]
        #expect(fields["name"] as? String == "court filing")
        #expect(fields["fileExtension"] as? String == ".pdf")
        #expect(fields["sizeBytes"] as? Int == bytes.count)
        let url = try #require(fields["downloadUrl"] as? String)
        let components = try #require(URLComponents(string: url))
        // The secret is in the query, which the access logs leave out.
        #expect(components.path == "/_downloads/\(fileID)")
        #expect(components.queryItems?.map(\.name) == ["signature"])
        // No Smokeball headers, any number of times while it lasts.
        for _ in 0..<2 {
            let fetched = fixture.call("GET", url: url)
            #expect(fetched.status == .ok)
            #expect(fetched.body == bytes)
        }
        #expect(fixture.call("GET", url: url + "x").status == .forbidden)
        #expect(
            fixture.call("GET", url: url.replacingOccurrences(of: fileID, with: UUID().uuidString)).status == .forbidden
        )
        #expect(fixture.call("GET", components.path).status == .forbidden)
        fixture.advance(by: Downloads.lifetime + 1)
        #expect(fixture.call("GET", url: url).status == .forbidden)

        let unknown = fixture.api("GET", "\(files)/\(UUID().uuidString)/download", token: access)
        #expect(unknown.status == .notFound)
        let wrongVersion = fixture.api(
            "GET", download, token: access, query: ["versionId": UUID().uuidString])
        #expect(wrongVersion.status == .notFound)
    }
}
