import Basics
import Foundation
import HTTPClient
import PostgreSQL
import Smokeball

/// Puts a linked matter's approved uploads into its one Smokeball documents folder (see
/// `docs/sync.md`, "Documents"):
///
/// 1. the folder: the stored `matters.smokeball_folder_id`, else one of that name already in the
///    matter's root folder (the first listed), else a new one, behind a `folder` intent;
/// 2. every upload's bytes are opened from the document store first, so a missing file fails
///    that document before anything is made for it in Smokeball;
/// 3. uploads whose `file` intent a crashed run left open are found again (the answered file
///    id, else the folder's listing matched on name) and finished;
/// 4. the rest are created in ONE request (`.../files/bulk` for several, `.../files` for one)
///    behind intents that share its RequestId, then streamed to their upload URLs.
///
/// Writes nothing to stderr: its history rows (`SyncLog`) are the firm's own record.
public struct MatterDocumentSync: MatterDocumentsSyncing {
    public let database: Database
    public let store: DocumentStoreConfiguration
    /// How long a create whose answer was lost (an intent without an id) may take to show up in
    /// a listing before it is taken as never made and made again. nil: twice the client's
    /// request timeout (a request still in flight has given up by then).
    public var settleTime: TimeInterval?

    public init(database: Database, store: DocumentStoreConfiguration, settleTime: TimeInterval? = nil) {
        self.database = database
        self.store = store
        self.settleTime = settleTime
    }

    /// The document store from the environment (`STORAGE_ROOT` or `STORAGE_BASE_URL`), else
    /// `.data/storage` under the current directory, as `scripts/run` lays it out.
    public static func storeConfiguration(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> DocumentStoreConfiguration
    {
        try DocumentStoreConfiguration.fromEnvironment(environment)
            ?? DocumentStoreConfiguration(
                location: .directory(FileManager.default.currentDirectoryPath + "/.data/storage"))
    }

    public func sync(matterID: UUID, smokeballMatterID: String, scope: any TenantScope, session: SmokeballSession)
        throws -> DocumentsSyncSummary
    {
        var run = DocumentSyncRun(
            sync: self, matterID: matterID, smokeballMatterID: smokeballMatterID, scope: scope, session: session,
            store: DocumentStore(store), settleTime: settleTime ?? 2 * session.client.requestTimeout)
        return try run.perform()
    }
}

/// An approved upload not yet in Smokeball, and what a previous run left of it.
struct PendingUpload {
    let id: UUID
    let fileName: String
    let storagePath: String
    var intent: SyncIntent?
}

/// A document that is ready to go: its bytes, open, and (once known) its Smokeball file.
struct ReadyDocument {
    let upload: PendingUpload
    let bytes: StoredDocument
    var intent: SyncIntent?
}

/// One run of `MatterDocumentSync` for one matter.
struct DocumentSyncRun {
    let sync: MatterDocumentSync
    let matterID: UUID
    let smokeballMatterID: String
    let scope: any TenantScope
    let session: SmokeballSession
    let store: DocumentStore
    let settleTime: TimeInterval

    var summary = DocumentsSyncSummary(folderID: nil, uploaded: 0, skipped: 0, failed: 0)
    /// The first failure another attempt may cure (Smokeball or the store unavailable, a create
    /// still settling): thrown, retryable, once every other document has had its turn.
    var retryLater: JobError?

    init(
        sync: MatterDocumentSync, matterID: UUID, smokeballMatterID: String, scope: any TenantScope,
        session: SmokeballSession, store: DocumentStore, settleTime: TimeInterval
    ) {
        self.sync = sync
        self.matterID = matterID
        self.smokeballMatterID = smokeballMatterID
        self.scope = scope
        self.session = session
        self.store = store
        self.settleTime = settleTime
    }

    /// The most files one bulk create takes (the sandbox's limit; Smokeball publishes none).
    static let maximumBulkFiles = 500

    var client: SmokeballClient { session.client }
    var matterPath: String { "/matters/" + PercentEncoding.encode(smokeballMatterID) }

    mutating func perform() throws -> DocumentsSyncSummary {
        let (folderID, folderName, skipped, pending) = try transaction { connection in
            let folder = try connection.execute(
                "SELECT smokeball_folder_id FROM matters WHERE firm_id = app_current_firm() AND id = $1::uuid",
                [matterID]
            ).first?.optionalString("smokeball_folder_id")
            let skipped = Int(
                try connection.execute(
                    """
                    SELECT count(*) AS n FROM uploads WHERE firm_id = app_current_firm() AND matter_id = $1::uuid
                    AND status = 'approved' AND smokeball_file_id IS NOT NULL
                    """, [matterID]
                ).single().int("n"))
            let pending = try connection.execute(
                """
                SELECT id, file_name, storage_path FROM uploads
                WHERE firm_id = app_current_firm() AND matter_id = $1::uuid AND status = 'approved'
                  AND smokeball_file_id IS NULL
                ORDER BY created_at, id
                """, [matterID]
            ).rows.map { row in
                let id = try row.uuid("id")
                return PendingUpload(
                    id: id, fileName: try row.string("file_name"), storagePath: try row.string("storage_path"),
                    intent: try SyncIntents.open(connection, .file, localID: id))
            }
            return (folder, try IntegrationSettings.current(connection).documentsFolder, skipped, pending)
        }
        summary.folderID = folderID
        summary.skipped = skipped
        // Nothing to put in it: no request at all (and no empty folder made ahead of need).
        guard !pending.isEmpty else { return summary }

        var ready: [ReadyDocument] = []
        for upload in pending {
            if let bytes = try open(upload) { ready.append(ReadyDocument(upload: upload, bytes: bytes)) }
        }
        guard !ready.isEmpty else { return try finish() }
        let folder = try folderID ?? ensureFolder(named: folderName)
        summary.folderID = folder

        var fresh: [ReadyDocument] = []
        var unanswered: [ReadyDocument] = []
        for var document in ready {
            document.intent = document.upload.intent
            if document.intent?.externalID != nil {
                try recover(document, file: nil)
            } else if document.intent != nil {
                unanswered.append(document)
            } else {
                fresh.append(document)
            }
        }
        if !unanswered.isEmpty { fresh += try recoverUnanswered(unanswered, folderID: folder) }
        // One create request for all of them (the bulk endpoint takes up to 500 files at a time).
        for start in stride(from: 0, to: fresh.count, by: Self.maximumBulkFiles) {
            try create(Array(fresh[start..<min(start + Self.maximumBulkFiles, fresh.count)]), folderID: folder)
        }
        return try finish()
    }

    func finish() throws -> DocumentsSyncSummary {
        if let retryLater { throw retryLater }
        return summary
    }

    // MARK: Database

    func transaction<T>(_ body: (Connection) throws -> T) throws -> T {
        try sync.database.transaction { connection in
            _ = try scope.enter(connection)
            return try body(connection)
        }
    }

    // MARK: The folder

    /// The matter's one documents folder: one named so in the root already (a previous run's
    /// create whose answer was lost, or the firm's own), else a new one. A new matter costs two
    /// requests: the root's listing and the create, whose 202 names the folder in its href.
    mutating func ensureFolder(named name: String) throws -> String {
        let open = try transaction { try SyncIntents.open($0, .folder, localID: matterID) }
        if let open, let answered = open.externalID {
            try linkFolder(answered, intent: open, outcome: .created, name: name)
            return answered
        }
        if let existing = try rootFolder(named: name) {
            try linkFolder(existing, intent: open, outcome: .linked, name: name)
            return existing
        }
        if let open {
            // Not listed: its create never arrived, or has not settled yet.
            guard Date().timeIntervalSince(open.createdAt) >= settleTime else {
                throw JobError(
                    .syncSettling, "the documents folder's create may still be in progress; trying again later")
            }
            try transaction { try SyncIntents.abandon($0, open.id) }
        }
        let intent = try transaction {
            try SyncIntents.begin(
                $0, .folder, localID: matterID, externalSystemID: nil,
                details: ["name": name, "matter_id": smokeballMatterID])
        }
        let answer: SmokeballResult<Accepted>
        do {
            answer = try client.write(
                "POST", matterPath + "/documents/folders", body: FolderDto(name: name), access: session.access,
                lane: session.lane, requestID: intent.requestID)
        } catch let error as SmokeballError where Self.refused(error) {
            try transaction { try SyncIntents.abandon($0, intent.id) }
            throw JobError(
                .folderRefused, "Smokeball refused the documents folder (\(error.description))", retryable: false)
        }
        // A 202 without an id in its href: the listing names it (once it is readable).
        guard let folderID = try answer.value.id ?? rootFolder(named: name) else {
            throw JobError(.syncSettling, "the documents folder is not readable yet; trying again later")
        }
        try linkFolder(folderID, intent: intent, outcome: .created, name: name)
        return folderID
    }

    func linkFolder(_ folderID: String, intent: SyncIntent?, outcome: SyncLog.Outcome, name: String) throws {
        try transaction { connection in
            if let intent { try SyncIntents.finish(connection, intent.id, externalID: folderID) }
            try connection.execute(
                "UPDATE matters SET smokeball_folder_id = $2 WHERE firm_id = app_current_firm() AND id = $1::uuid",
                [matterID, folderID])
            try SyncLog.record(
                connection, step: .folder, outcome: outcome, matterID: matterID, externalID: folderID,
                details: ["name": name])
        }
    }

    /// The first folder of the matter's root named `name` (case-insensitively, as Smokeball
    /// treats names), following the listing's pages while they hold folders.
    func rootFolder(named name: String) throws -> String? {
        let wanted = name.lowercased()
        var offset = 0
        while true {
            let page: SmokeballResult<FolderListingPage> = try client.get(
                matterPath + "/documents/folders",
                query: [("Offset", String(offset)), ("Limit", String(client.pageSize))], access: session.access,
                lane: session.lane)
            let listing = page.value.value?.first
            let folders = listing?.folders ?? []
            if let found = folders.first(where: { $0.name?.lowercased() == wanted })?.id { return found }
            let children = folders.count + (listing?.files?.count ?? 0)
            offset += children
            // Subfolders come first: a page with files, or the last page, ends them.
            if children == 0 || !(listing?.files ?? []).isEmpty || offset >= (page.value.size ?? 0) { return nil }
        }
    }

    // MARK: Documents

    /// The upload's bytes, or nil when they cannot be had: a missing file, a bad path or a
    /// refusal fails this document (its history row says why, without the path); a store that
    /// is unavailable is tried again later.
    mutating func open(_ upload: PendingUpload) throws -> StoredDocument? {
        do {
            return try store.open(upload.storagePath)
        } catch {
            if error.isRetryable {
                retryLater = retryLater ?? JobError(.documentStore, "the document store is unavailable (\(error.code))")
                return nil
            }
            let message =
                switch error.code {
                case .missing: "the document's file is missing from the document store"
                case .invalidPath: "the document's storage path is not valid"
                default: "the document store refused to hand over the document's file"
                }
            try fail(upload, message)
            return nil
        }
    }

    mutating func fail(_ upload: PendingUpload, _ message: String, fileID: String? = nil) throws {
        summary.failed += 1
        try transaction { connection in
            try SyncLog.record(
                connection, step: .document, outcome: .failed, matterID: matterID, uploadID: upload.id,
                externalID: fileID, details: ["file_name": upload.fileName], error: message)
        }
    }

    /// Creates Smokeball files for `documents` in one request, each behind an intent sharing its
    /// RequestId and accepted with its file id as soon as the answer is in, then uploads each.
    mutating func create(_ documents: [ReadyDocument], folderID: String) throws {
        let requestID = UUID().uuidString.lowercased()
        let intents = try transaction { connection in
            try documents.map { document in
                try SyncIntents.begin(
                    connection, .file, localID: document.upload.id, externalSystemID: nil,
                    details: [
                        "file_name": document.upload.fileName, "folder_id": folderID, "matter_id": smokeballMatterID,
                    ], requestID: requestID)
            }
        }
        let files = documents.map { AddFileDto(fileName: $0.upload.fileName, folderId: folderID) }
        let infos: [UploadFileInfo]
        do {
            if files.count == 1 {
                infos = [
                    try client.write(
                        "POST", matterPath + "/documents/files", body: files[0], access: session.access,
                        lane: session.lane, requestID: requestID, as: UploadFileInfo.self
                    ).value
                ]
            } else {
                infos = try client.write(
                    "POST", matterPath + "/documents/files/bulk", body: files, access: session.access,
                    lane: session.lane, requestID: requestID, as: [UploadFileInfo].self
                ).value
            }
        } catch let error as SmokeballError where Self.refused(error) {
            // Refused as a whole: nothing was made.
            try transaction { connection in try intents.forEach { try SyncIntents.abandon(connection, $0.id) } }
            for document in documents {
                try fail(document.upload, "Smokeball refused the document (\(error.description))")
            }
            return
        }
        // Answered in request order, one each; anything else is not an answer to act on (the
        // intents stay open, and the next run finds the files by listing).
        guard infos.count == documents.count, infos.allSatisfy({ $0.fileId?.isEmpty == false }) else {
            throw JobError(.failed, "Smokeball's answer to the file create did not name every file")
        }
        let accepted = try transaction { connection in
            try zip(intents, infos).map { intent, info in
                try SyncIntents.accept(connection, intent.id, externalID: info.fileId ?? "")
                return try SyncIntents.open(connection, .file, localID: intent.localID) ?? intent
            }
        }
        for (index, var document) in documents.enumerated() {
            document.intent = accepted[index]
            try upload(document, fileID: infos[index].fileId ?? "", url: infos[index].uploadUrl, outcome: .created)
        }
    }

    /// An intent a previous run accepted: the file exists in Smokeball (`file` when a listing
    /// already read it). Already uploaded: recorded. Otherwise: a new URL, and the bytes.
    mutating func recover(_ document: ReadyDocument, file: SmokeballFile?) throws {
        let fileID = document.intent?.externalID ?? ""
        let found: SmokeballFile
        do {
            found =
                try file
                ?? client.get(
                    matterPath + "/documents/files/" + PercentEncoding.encode(fileID), access: session.access,
                    lane: session.lane
                ).value
        } catch let error as SmokeballError where error.code == .notFound {
            // Gone (deleted in Smokeball), or not readable yet after a create.
            if let intent = document.intent, Date().timeIntervalSince(intent.createdAt) >= settleTime {
                try transaction { try SyncIntents.abandon($0, intent.id) }
                try create(
                    [ReadyDocument(upload: document.upload, bytes: document.bytes, intent: nil)],
                    folderID: summary.folderID ?? "")
            } else {
                retryLater = retryLater ?? JobError(.syncSettling, "a document's file is not readable yet")
            }
            return
        } catch let error as SmokeballError where error.code != .unauthorized {
            deferRetry(error)
            return
        }
        if found.isUploaded == true {
            try record(document, fileID: fileID, outcome: .linked)
        } else {
            try upload(document, fileID: fileID, url: nil, outcome: .created)
        }
    }

    /// Intents whose create was sent but never answered: their files, if made, are in the folder
    /// under the upload's name and linked to no other upload. Found ones are recovered; the
    /// others are returned to be created again once the create has had time to settle.
    mutating func recoverUnanswered(_ documents: [ReadyDocument], folderID: String) throws -> [ReadyDocument] {
        let files = try folderFiles(folderID)
        let candidateIDs = files.compactMap(\.id)
        let taken = try transaction { connection in
            Set(
                try connection.execute(
                    """
                    SELECT smokeball_file_id AS id FROM uploads
                    WHERE firm_id = app_current_firm()
                      AND smokeball_file_id IN (SELECT jsonb_array_elements_text($1::jsonb))
                    UNION
                    SELECT external_id FROM smokeball_sync_intents
                    WHERE firm_id = app_current_firm() AND resource = 'file' AND state IN ('intended', 'accepted')
                      AND external_id IN (SELECT jsonb_array_elements_text($1::jsonb))
                    """, [SQLValue.json(String(decoding: try JSONEncoder().encode(candidateIDs), as: UTF8.self))]
                ).rows.map { try $0.string("id") })
        }
        var claimed = taken
        var again: [ReadyDocument] = []
        for var document in documents {
            guard let intent = document.intent else { continue }
            let match = files.first { file in
                guard let id = file.id, !claimed.contains(id), file.isDeleted != true else { return false }
                return file.isNamed(document.upload.fileName)
            }
            if let match, let fileID = match.id {
                claimed.insert(fileID)
                try transaction { try SyncIntents.accept($0, intent.id, externalID: fileID) }
                document.intent = SyncIntent(
                    id: intent.id, resource: .file, localID: intent.localID, requestID: intent.requestID,
                    externalSystemID: nil, details: intent.details, externalID: fileID, state: .accepted,
                    createdAt: intent.createdAt)
                try recover(document, file: match)
            } else if Date().timeIntervalSince(intent.createdAt) >= settleTime {
                try transaction { try SyncIntents.abandon($0, intent.id) }
                document.intent = nil
                again.append(document)
            } else {
                retryLater =
                    retryLater ?? JobError(.syncSettling, "a document's create may still be in progress")
            }
        }
        return again
    }

    /// Every file of the folder (its listing's pages, subfolders skipped).
    func folderFiles(_ folderID: String) throws -> [SmokeballFile] {
        var files: [SmokeballFile] = []
        var offset = 0
        while true {
            let page: SmokeballResult<FolderListingPage> = try client.get(
                matterPath + "/documents/folders/" + PercentEncoding.encode(folderID),
                query: [("Offset", String(offset)), ("Limit", String(client.pageSize))], access: session.access,
                lane: session.lane)
            let listing = page.value.value?.first
            let children = (listing?.folders?.count ?? 0) + (listing?.files?.count ?? 0)
            files += listing?.files ?? []
            offset += children
            if children == 0 || offset >= (page.value.size ?? 0) { return files }
        }
    }

    /// Streams the document to its upload URL (`url` nil: ask for a new one). An expired URL
    /// gets a new one, after checking that an earlier PUT did not already succeed.
    mutating func upload(_ document: ReadyDocument, fileID: String, url: String?, outcome: SyncLog.Outcome) throws {
        let filePath = matterPath + "/documents/files/" + PercentEncoding.encode(fileID)
        do {
            var target: UploadFileInfo
            if let url {
                target = UploadFileInfo(fileId: fileID, uploadUrl: url, expiry: nil)
            } else {
                target = try client.get(filePath + "/upload", access: session.access, lane: session.lane).value
            }
            do {
                try client.upload(document.bytes.file, to: target.uploadUrl ?? "", expiry: target.expiryDate)
            } catch is UploadURLExpiredError {
                let file: SmokeballFile = try client.get(filePath, access: session.access, lane: session.lane).value
                if file.isUploaded == true {
                    try record(document, fileID: fileID, outcome: .linked)
                    return
                }
                target = try client.get(filePath + "/upload", access: session.access, lane: session.lane).value
                try client.upload(document.bytes.file, to: target.uploadUrl ?? "", expiry: target.expiryDate)
            }
        } catch let error as HTTPClientError where error.code == .localFile {
            try fail(document.upload, "the document's file could not be read", fileID: fileID)
            return
        } catch let error as SmokeballError where error.code != .unauthorized {
            deferRetry(error)
            return
        } catch is UploadURLExpiredError {
            retryLater = retryLater ?? JobError(.failed, "a document's new upload URL expired as well")
            return
        }
        try record(document, fileID: fileID, outcome: outcome)
    }

    /// The upload is in Smokeball: link it, close its intent, write its history.
    mutating func record(_ document: ReadyDocument, fileID: String, outcome: SyncLog.Outcome) throws {
        summary.uploaded += 1
        try transaction { connection in
            try connection.execute(
                """
                UPDATE uploads SET smokeball_file_id = $2, smokeball_synced_at = now()
                WHERE firm_id = app_current_firm() AND id = $1::uuid
                """, [document.upload.id, fileID])
            if let intent = document.intent { try SyncIntents.finish(connection, intent.id, externalID: fileID) }
            try SyncLog.record(
                connection, step: .document, outcome: outcome, matterID: matterID, uploadID: document.upload.id,
                externalID: fileID, details: ["file_name": document.upload.fileName])
        }
    }

    /// A Smokeball failure of one document: worth another attempt later (the intent keeps what
    /// is known), the others going on meanwhile.
    mutating func deferRetry(_ error: SmokeballError) {
        retryLater = retryLater ?? JobError(.failed, "a document could not be uploaded yet (\(error.description))")
    }

    /// Smokeball refused the request itself: another attempt would be refused too.
    static func refused(_ error: SmokeballError) -> Bool {
        error.code == .rejected
    }
}

extension JobError.Code {
    /// A create sent by an earlier attempt may still be in progress: try again after it settles.
    public static let syncSettling = JobError.Code(rawValue: "sync_settling")
    /// Smokeball refused to make the matter's documents folder.
    public static let folderRefused = JobError.Code(rawValue: "folder_refused")
    /// The document store is unavailable.
    public static let documentStore = JobError.Code(rawValue: "document_store_unavailable")
}
