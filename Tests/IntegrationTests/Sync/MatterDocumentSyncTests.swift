import Basics
import Cryptography
import Foundation
import HTTPClient
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

#if canImport(Glibc)
    import Glibc
#endif

/// A connected firm (the connection flow against the sandbox behind nginx), a Smokeball matter
/// made through the sandbox's API and linked to a CaseHug matter, and a document store in a
/// temporary `STORAGE_ROOT` whose files the uploads name.
struct DocumentsFixture {
    var flow: ConnectionFlow
    let storageRoot: String
    let matterID: UUID
    let smokeballMatterID: String

    static func with(_ body: (DocumentsFixture) throws -> Void) throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("docsync-\(UUID().uuidString)")
                .path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: root) }
            let smokeballMatter = try Self.smokeballMatter(flow)
            let matter = try flow.seed.matter(firm: flow.firm.id, title: "Documents matter")
            try flow.seed.asFirm(flow.firm.id) { connection in
                try connection.execute(
                    """
                    UPDATE matters SET smokeball_matter_id = $2, smokeball_link_status = 'confirmed' WHERE id = $1
                    """, [matter, smokeballMatter])
            }
            try body(
                DocumentsFixture(flow: flow, storageRoot: root, matterID: matter, smokeballMatterID: smokeballMatter))
        }
    }

    /// A contact and a matter of a type from `GET /mattertypes`, made through the API.
    static func smokeballMatter(_ flow: ConnectionFlow) throws -> String {
        try flow.tokens.withAccess(UserScope(userID: flow.firm.admin)) { client, access in
            let type = try #require(try client.matterTypes(access: access).first { $0.type == 0 })
            struct Person: Encodable {
                struct Name: Encodable {
                    let firstName: String
                    let lastName: String
                }
                let person: Name
            }
            let contact = try client.write(
                "POST", "/contacts", body: Person(person: .init(firstName: "Dana", lastName: "Docs")), access: access)
            struct NewMatter: Encodable {
                let matterTypeId: String
                let clientIds: [String]
                let clientRole: String?
                let status: String
            }
            let matter = try client.write(
                "POST", "/matters",
                body: NewMatter(
                    matterTypeId: try #require(type.id), clientIds: [try #require(contact.value.id)],
                    clientRole: type.representativeOptions?.first, status: "Open"), access: access)
            return try #require(matter.value.id)
        }
    }

    var scope: UserScope { UserScope(userID: flow.firm.admin) }

    /// An upload of the matter whose bytes are in the store (none written when `bytes` is nil).
    @discardableResult
    func upload(_ name: String, _ bytes: [UInt8]?, status: String = "approved") throws -> UUID {
        let id = UUID()
        let path = "\(flow.firm.id.uuidString.lowercased())/\(id.uuidString.lowercased())/\(name)"
        if let bytes {
            let directory = storageRoot + "/" + path.split(separator: "/").dropLast().joined(separator: "/")
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: storageRoot + "/" + path))
        }
        try flow.seed.asFirm(flow.firm.id) { connection in
            try connection.execute(
                """
                INSERT INTO uploads (id, firm_id, matter_id, status, file_name, storage_path, size_bytes, content_type)
                VALUES ($1, $2, $3, $4, $5, $6, $7, 'application/pdf')
                """, [id, flow.firm.id, matterID, status, name, path, Int64(bytes?.count ?? 0)])
        }
        return id
    }

    func documents(settleTime: TimeInterval? = 3) -> MatterDocumentSync {
        MatterDocumentSync(
            database: flow.database, store: DocumentStoreConfiguration(location: .directory(storageRoot)),
            settleTime: settleTime)
    }

    func sync(settleTime: TimeInterval? = 3) throws -> DocumentsSyncSummary {
        try flow.tokens.withAccess(scope) { client, access in
            try documents(settleTime: settleTime).sync(
                matterID: matterID, smokeballMatterID: smokeballMatterID, scope: scope,
                session: SmokeballSession(client: client, access: access, lane: .interactive))
        }
    }

    /// The partner's API requests so far: "METHOD path", oldest first.
    func requests() throws -> [String] {
        try flow.sandbox.requestLog().compactMap { entry in
            guard let method = entry["method"] as? String, let path = entry["path"] as? String else { return nil }
            return method + " " + path
        }
    }

    /// The requests made since `before` (a `requests()` answer), about this matter's documents.
    func documentRequests(since before: [String]) throws -> [String] {
        Array(try requests().dropFirst(before.count)).map {
            $0.replacingOccurrences(of: "/matters/\(smokeballMatterID)", with: "")
        }
    }

    var sandboxStore: Connection { get throws { try Connection(url: flow.sandbox.store.url) } }

    /// The matter's folders named `name` at the sandbox, oldest first.
    func folders(named name: String = "CaseHug") throws -> [String] {
        try sandboxStore.execute(
            "SELECT id::text AS id FROM sb_folders WHERE matter_id = $1::uuid AND name = $2 ORDER BY created_at, id",
            [smokeballMatterID, name]
        ).rows.map { try $0.string("id") }
    }

    /// The matter's files at the sandbox: id, name, folder, uploaded bytes (nil before the PUT).
    func files() throws -> [(id: String, name: String, folder: String?, content: [UInt8]?)] {
        try sandboxStore.execute(
            """
            SELECT id::text AS id, name, folder_id::text AS folder, content FROM sb_files
            WHERE matter_id = $1::uuid ORDER BY created_at, name
            """, [smokeballMatterID]
        ).rows.map {
            (
                try $0.string("id"), try $0.string("name"), try $0.optionalString("folder"),
                try $0.optionalBytes("content")
            )
        }
    }

    /// What CaseHug stored: each upload's Smokeball file id.
    func fileID(_ upload: UUID) throws -> String? {
        try flow.seed.asFirm(flow.firm.id) {
            try $0.execute("SELECT smokeball_file_id FROM uploads WHERE id = $1", [upload]).single()
                .optionalString("smokeball_file_id")
        }
    }

    /// The bytes Smokeball serves for a file (its download URL, as a firm user would fetch it).
    func download(_ fileID: String) throws -> [UInt8] {
        struct Info: Decodable, Sendable { let downloadUrl: String }
        let info: SmokeballResult<Info> = try flow.tokens.withAccess(scope) { client, access in
            try client.get("/matters/\(smokeballMatterID)/documents/files/\(fileID)/download", access: access)
        }
        let response = try HTTPClient(maxResponseBytes: 256 << 20).send(HTTPRequest(url: info.value.downloadUrl))
        try #require(response.status == 200)
        return response.body
    }

    /// The matter's history: action, status, error, details' file name.
    func history() throws -> [(action: String, error: String?, fileName: String?)] {
        try flow.seed.asFirm(flow.firm.id) {
            try $0.execute(
                """
                SELECT action, error_message, details->>'file_name' AS file_name FROM integration_sync_logs
                WHERE matter_id = $1 ORDER BY created_at, id
                """, [matterID]
            ).rows.map {
                (try $0.string("action"), try $0.optionalString("error_message"), try $0.optionalString("file_name"))
            }
        }
    }

    func addFault(_ fault: [String: Any]) throws {
        let added = try flow.sandbox.service.send(
            "POST", "/_sandbox/faults", body: SmokeballSandbox.json(fault), contentType: "application/json",
            base: flow.sandbox.url)
        try #require(added.status == 201)
    }

    static func bytes(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }
}

@Suite(.serialized) struct MatterDocumentSyncTests {
    @Test(
        "several approved uploads go into one CaseHug folder through ONE bulk request, byte-identical; a second run asks nothing and creates nothing"
    )
    func severalFilesThroughOneBulkRequest() throws {
        try DocumentsFixture.with { fixture in
            let originals = [
                ("retainer.pdf", DocumentsFixture.bytes(70_001, seed: 1)),
                ("id scan.jpeg", DocumentsFixture.bytes(3, seed: 2)), ("notes", DocumentsFixture.bytes(1, seed: 3)),
            ]
            let uploads = try originals.map { try fixture.upload($0.0, $0.1) }
            try fixture.upload("draft.pdf", DocumentsFixture.bytes(10, seed: 4), status: "pending")
            let before = try fixture.requests()

            let summary = try fixture.sync()
            let folders = try fixture.folders()
            #expect(folders.count == 1)
            #expect(summary == DocumentsSyncSummary(folderID: folders.first, uploaded: 3, skipped: 0, failed: 0))
            // The floor for a new matter: the root's listing, the folder, one create for every file.
            #expect(
                try fixture.documentRequests(since: before) == [
                    "GET /documents/folders", "POST /documents/folders", "POST /documents/files/bulk",
                ])
            let files = try fixture.files()
            #expect(files.count == 3)
            for (upload, original) in zip(uploads, originals) {
                let fileID = try #require(try fixture.fileID(upload))
                #expect(files.first { $0.id == fileID }?.name == original.0)
                #expect(files.first { $0.id == fileID }?.folder == folders.first)
                #expect(try fixture.download(fileID) == original.1)
            }
            #expect(
                try fixture.history().map(\.action) == [
                    "folder.created", "document.created", "document.created", "document.created",
                ])
            let matterFolder = try fixture.flow.seed.asFirm(fixture.flow.firm.id) {
                try $0.execute("SELECT smokeball_folder_id FROM matters WHERE id = $1", [fixture.matterID]).single()
                    .optionalString("smokeball_folder_id")
            }
            #expect(matterFolder == folders.first)

            let second = try fixture.requests()
            let again = try fixture.sync()
            #expect(again == DocumentsSyncSummary(folderID: folders.first, uploaded: 0, skipped: 3, failed: 0))
            #expect(try fixture.documentRequests(since: second) == [])
            #expect(try fixture.files().count == 3)
            #expect(try fixture.folders().count == 1)
        }
    }

    @Test("one upload goes through the single-file endpoint")
    func singleFileThroughTheSingleEndpoint() throws {
        try DocumentsFixture.with { fixture in
            let bytes = DocumentsFixture.bytes(12_345, seed: 9)
            let upload = try fixture.upload("engagement letter.docx", bytes)
            let before = try fixture.requests()
            #expect(try fixture.sync().uploaded == 1)
            #expect(
                try fixture.documentRequests(since: before) == [
                    "GET /documents/folders", "POST /documents/folders", "POST /documents/files",
                ])
            #expect(try fixture.download(try #require(try fixture.fileID(upload))) == bytes)
        }
    }

    @Test(
        "a missing file fails that document only, with a readable message that names no path, and nothing is made for it"
    )
    func missingFileFailsOnlyItself() throws {
        try DocumentsFixture.with { fixture in
            let kept = try fixture.upload("kept.pdf", DocumentsFixture.bytes(100, seed: 5))
            let lost = try fixture.upload("lost.pdf", nil)
            let summary = try fixture.sync()
            #expect(summary.uploaded == 1)
            #expect(summary.failed == 1)
            #expect(try fixture.fileID(kept) != nil)
            #expect(try fixture.fileID(lost) == nil)
            #expect(try fixture.files().map(\.name) == ["kept.pdf"])
            let failed = try #require(try fixture.history().first { $0.action == "document.failed" })
            #expect(failed.error == "the document's file is missing from the document store")
            #expect(failed.fileName == "lost.pdf")
            // Still missing next time: failed again, nothing made.
            #expect(
                try fixture.sync()
                    == DocumentsSyncSummary(folderID: summary.folderID, uploaded: 0, skipped: 1, failed: 1))
            #expect(try fixture.files().count == 1)
        }
    }

    @Test("an upload URL that expired gets a new one (GET .../files/{id}/upload) and the bytes arrive")
    func expiredUploadURLGetsANewOne() throws {
        try DocumentsFixture.with { fixture in
            // Every URL the sandbox hands out with a new file has expired on its side already
            // (while the answer's `expiry` looks good); a new URL for the file is a fresh one.
            try fixture.sandboxStore.executeScript(
                """
                CREATE FUNCTION test_expire_upload() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN NEW.upload_expires_at := now() - interval '1 second'; RETURN NEW; END $$;
                CREATE TRIGGER test_expire_upload BEFORE INSERT ON sb_files
                    FOR EACH ROW EXECUTE FUNCTION test_expire_upload();
                """)
            let bytes = DocumentsFixture.bytes(4096, seed: 7)
            let upload = try fixture.upload("late.pdf", bytes)
            let before = try fixture.requests()
            #expect(try fixture.sync().uploaded == 1)
            let fileID = try #require(try fixture.fileID(upload))
            #expect(
                try fixture.documentRequests(since: before).suffix(3) == [
                    "POST /documents/files", "GET /documents/files/\(fileID)", "GET /documents/files/\(fileID)/upload",
                ])
            #expect(try fixture.download(fileID) == bytes)
        }
    }

    @Test("a folder named CaseHug that already exists is used (the first of two), and no second one is made")
    func existingFolderIsReused() throws {
        try DocumentsFixture.with { fixture in
            try fixture.flow.tokens.withAccess(fixture.scope) { client, access in
                for _ in 0..<2 {
                    _ = try client.write(
                        "POST", "/matters/\(fixture.smokeballMatterID)/documents/folders",
                        body: FolderDto(name: "CaseHug"), access: access)
                }
            }
            let existing = try fixture.folders()
            try #require(existing.count == 2)
            let listed = try fixture.flow.tokens.withAccess(fixture.scope) { client, access in
                let page: SmokeballResult<FolderListingPage> = try client.get(
                    "/matters/\(fixture.smokeballMatterID)/documents/folders", access: access)
                return page.value.value?.first?.folders?.first?.id
            }
            try fixture.upload("a.pdf", [1])
            try fixture.upload("b.pdf", [2])
            let before = try fixture.requests()
            let summary = try fixture.sync()
            #expect(summary.folderID == listed)
            #expect(!(try fixture.documentRequests(since: before).contains("POST /documents/folders")))
            #expect(try fixture.folders() == existing)
            #expect(try fixture.files().allSatisfy { $0.folder == listed })
            #expect(try fixture.history().first?.action == "folder.linked")
        }
    }

    @Test("a large file moves intact (the memory bound is measured by scripts/bench transfer)")
    func largeFileMovesIntact() throws {
        try DocumentsFixture.with { fixture in
            let bytes = SecureRandom.bytes(40 << 20)
            try fixture.upload("large.bin", bytes)
            #expect(try fixture.sync().uploaded == 1)
            let stored = try #require(try fixture.files().first?.content)
            #expect(SHA256.hash(stored) == SHA256.hash(bytes))
        }
    }
}

extension KillableWorker {
    /// `job-test-worker` running `test_documents` (MatterDocumentSync inside the real worker
    /// runtime) for the fixture's firm, so a test can SIGKILL it mid-request.
    static func documents(_ fixture: DocumentsFixture, settleSeconds: Int) throws -> KillableWorker {
        try KillableWorker(
            executable: "job-test-worker",
            arguments: ["--workers", "1", "--lease-seconds", "2", "--backoff-seconds", "1"],
            environment: fixture.flow.sandbox.environment([
                "DATABASE_URL": fixture.flow.sandbox.database.workerURL, "PATH": "/usr/bin:/bin",
                "TOKEN_ENCRYPTION_KEY": Data(ConnectionFlow.key).base64EncodedString(),
                "STORAGE_ROOT": fixture.storageRoot, "SYNC_SETTLE_SECONDS": String(settleSeconds),
            ]))
    }
}

/// SIGKILL while each create is in flight (a sandbox latency fault holds it there), then a new
/// worker: the sandbox ends with exactly one folder and one file per upload, with the right bytes.
@Suite(.serialized) struct MatterDocumentSyncCrashTests {
    enum InFlight: String, CaseIterable, CustomTestStringConvertible {
        case folderCreate = "POST .../documents/folders"
        case fileCreate = "POST .../documents/files/bulk"
        case upload = "PUT to the upload URL"

        var testDescription: String { rawValue }
    }

    static let latencyMilliseconds = 4000

    @Test(
        "a worker killed while a create is in flight leaves, after a restart, one folder and one file per upload",
        arguments: InFlight.allCases)
    func killedMidRequest(_ step: InFlight) throws {
        try DocumentsFixture.with { fixture in
            let originals = [
                ("retainer.pdf", DocumentsFixture.bytes(5000, seed: 11)),
                ("photo.png", DocumentsFixture.bytes(7, seed: 12)),
            ]
            let uploads = try originals.map { try fixture.upload($0.0, $0.1) }
            let matter = "/matters/\(fixture.smokeballMatterID)/documents"
            switch step {
            case .folderCreate:
                try fixture.addFault([
                    "path_prefix": matter + "/folders", "latency_ms": Self.latencyMilliseconds,
                    "client_id": SmokeballSandbox.clientID,
                ])
            case .fileCreate:
                try fixture.addFault([
                    "path_prefix": matter + "/files/bulk", "latency_ms": Self.latencyMilliseconds,
                    "client_id": SmokeballSandbox.clientID,
                ])
            case .upload:
                // Upload URLs name no partner: a fault for every caller.
                try fixture.addFault(["path_prefix": "/_uploads/", "latency_ms": Self.latencyMilliseconds])
            }
            let job = try fixture.flow.database.transaction { connection in
                _ = try Tenancy.enter(connection, userID: fixture.flow.firm.admin)
                return try JobQueue.enqueue(
                    connection, kind: "test_documents", key: "documents",
                    payload: [
                        "matter_id": fixture.matterID.uuidString.lowercased(),
                        "smokeball_matter_id": fixture.smokeballMatterID,
                    ], priority: .interactive, maxAttempts: 20)
            }
            let first = try KillableWorker.documents(fixture, settleSeconds: 4)
            let condition =
                switch step {
                case .folderCreate: "resource = 'folder'"
                case .fileCreate: "resource = 'file'"
                case .upload: "resource = 'file' AND external_id IS NOT NULL"
                }
            try Processes.waitFor("the create to be on its way", timeout: 60) {
                try fixture.flow.seed.connection.execute(
                    "SELECT 1 FROM smokeball_sync_intents WHERE \(condition) AND state IN ('intended', 'accepted')"
                ).rowCount > 0
            }
            // The request has left (the intent is committed just before it) and is held by the latency.
            usleep(1_000_000)
            first.kill9()
            #expect(try Self.jobStatus(fixture, job) == "running")
            _ = try fixture.flow.sandbox.service.send("DELETE", "/_sandbox/faults", base: fixture.flow.sandbox.url)
            // The held request completes at the sandbox, as Smokeball would complete it.
            usleep(UInt32(Self.latencyMilliseconds) * 1000)

            let second = try KillableWorker.documents(fixture, settleSeconds: 4)
            try Processes.waitFor("the rescued job to finish", timeout: 120) {
                ["succeeded", "dead"].contains(try Self.jobStatus(fixture, job))
            }
            #expect(try Self.jobStatus(fixture, job) == "succeeded", "\(second.logText)")
            try second.stop()

            #expect(try fixture.folders().count == 1)
            let files = try fixture.files()
            #expect(files.count == uploads.count)
            for (upload, original) in zip(uploads, originals) {
                let fileID = try #require(try fixture.fileID(upload))
                let file = try #require(files.first { $0.id == fileID })
                #expect(file.name == original.0)
                #expect(file.content == original.1)
            }
            let open = try fixture.flow.seed.connection.execute(
                "SELECT count(*) AS n FROM smokeball_sync_intents WHERE state IN ('intended', 'accepted')"
            ).single().int("n")
            #expect(open == 0)
            // What the killed request did was found, not made again: the folder by the root's
            // listing, the files by the folder's (one bulk create in all), an upload by its file.
            let actions = try fixture.history().map(\.action)
            let creates = try fixture.requests().filter { $0.hasSuffix("/documents/files/bulk") }
            switch step {
            case .folderCreate: #expect(actions.first == "folder.linked")
            case .fileCreate: #expect(creates.count == 1)
            case .upload: #expect(actions.contains("document.linked"))
            }
            #expect(creates.count == 1)
            // The workers' logs name no file.
            #expect(!first.logText.contains("retainer") && !second.logText.contains("retainer"))
        }
    }

    static func jobStatus(_ fixture: DocumentsFixture, _ job: UUID) throws -> String {
        try fixture.flow.seed.connection.execute("SELECT status FROM jobs WHERE id = $1", [job]).single()
            .string("status")
    }
}
