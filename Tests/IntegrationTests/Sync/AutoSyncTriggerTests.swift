import Foundation
import Integration
import PostgreSQL
import TestSupport
import Testing

/// A migrated database with two firms whose Smokeball connections are rows written directly
/// (the triggers read only the row), and the host app's changes made as the app role.
struct AutoSyncFixture {
    let database: ServiceDatabase
    let seed: Seed
    let firmA: Seed.FirmWithUsers
    let firmB: Seed.FirmWithUsers
    let app: Database

    static func with<T>(_ body: (AutoSyncFixture) throws -> T) throws -> T {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let fixture = AutoSyncFixture(
                database: database, seed: seed, firmA: try seed.firmWithUsers("A"), firmB: try seed.firmWithUsers("B"),
                app: Database(url: database.appURL))
            try fixture.connect(fixture.firmA.id)
            try fixture.connect(fixture.firmB.id)
            return try body(fixture)
        }
    }

    /// The firm's Smokeball row as connected (a placeholder sealed token: the triggers only ask
    /// whether there is one), with `settings` as given (nil: the column's default).
    func connect(_ firm: UUID, settings: String? = nil) throws {
        try seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO firm_integrations (firm_id, platform, is_active, access_token, settings)
                VALUES ($1, 'smokeball', true, '\\x00'::bytea,
                        coalesce($2::jsonb, '{"auto_sync_on_approval": true, "auto_sync_on_matter_created": false}'))
                ON CONFLICT (firm_id, platform) DO UPDATE SET settings = excluded.settings
                """, [firm, settings])
        }
    }

    /// Changes the firm's Smokeball row (superuser, any column).
    func integration(_ firm: UUID, set assignment: String) throws {
        try seed.connection.execute(
            "UPDATE firm_integrations SET \(assignment) WHERE firm_id = $1 AND platform = 'smokeball'", [firm])
    }

    @discardableResult
    func client(_ firm: UUID, linked: Bool = true) throws -> UUID {
        let id = UUID()
        try seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO clients (id, firm_id, first_name, last_name, email, phone, smokeball_contact_id,
                                     smokeball_contact_linked_by)
                VALUES ($1, $2, 'Ada', 'Lovelace', 'ada@example.test', '555 0100', $3, $4)
                """, [id, firm, linked ? UUID().uuidString.lowercased() : nil, linked ? "created" : nil])
        }
        return id
    }

    @discardableResult
    func matter(_ firm: UUID) throws -> UUID { try seed.matter(firm: firm) }

    @discardableResult
    func upload(_ firm: UUID, matter: UUID, status: String = "pending") throws -> UUID {
        let id = UUID()
        try seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO uploads (id, firm_id, matter_id, status, file_name, storage_path, size_bytes, content_type)
                VALUES ($1, $2, $3, $4, 'a.pdf', 'firm/a.pdf', 3, 'application/pdf')
                """, [id, firm, matter, status])
        }
        return id
    }

    /// Runs `sql` as the app role for `user` (the host app's change, in its own transaction).
    func asUser(_ user: UUID, _ sql: String, _ values: [any SQLValueConvertible] = []) throws {
        try app.transaction { connection in
            _ = try Tenancy.enter(connection, userID: user)
            try connection.execute(sql, values)
        }
    }

    struct QueuedJob: Equatable {
        let firm: UUID
        let kind: String
        let key: String?
        let payload: String
        let priority: Int64
        let status: String
        let createdBy: UUID?
        let delayed: Bool
    }

    /// Every job, whatever its firm (superuser).
    func jobs() throws -> [QueuedJob] {
        try seed.connection.execute(
            """
            SELECT firm_id, kind, key, payload::text AS payload, priority, status, created_by,
                   run_after > created_at AS delayed
            FROM jobs ORDER BY created_at, id
            """
        ).rows.map { row in
            QueuedJob(
                firm: try row.uuid("firm_id"), kind: try row.string("kind"), key: try row.optionalString("key"),
                payload: try row.string("payload"), priority: try row.int("priority"), status: try row.string("status"),
                createdBy: try row.optionalUUID("created_by"), delayed: try row.bool("delayed"))
        }
    }

    static func payload(_ name: String, _ id: UUID) -> String { "{\"\(name)\": \"\(id.uuidString.lowercased())\"}" }
}

private struct Rollback: Error {}

@Suite struct AutoSyncTriggerTests {
    // MARK: uploads

    @Test func approvingAnUploadEnqueuesItsMattersSyncForTheApprovingUser() throws {
        try AutoSyncFixture.with { fixture in
            let matter = try fixture.matter(fixture.firmA.id)
            let upload = try fixture.upload(fixture.firmA.id, matter: matter)
            #expect(try fixture.jobs().isEmpty)
            try fixture.asUser(fixture.firmA.standard, "UPDATE uploads SET status = 'approved' WHERE id = $1", [upload])
            #expect(
                try fixture.jobs() == [
                    .init(
                        firm: fixture.firmA.id, kind: "sync_matter", key: SyncJobs.matterKey(matter),
                        payload: AutoSyncFixture.payload("matter_id", matter), priority: 1, status: "pending",
                        createdBy: fixture.firmA.standard, delayed: false)
                ])
        }
    }

    @Test func anUploadInsertedApprovedEnqueuesAndOneInsertedPendingDoesNot() throws {
        try AutoSyncFixture.with { fixture in
            let matter = try fixture.matter(fixture.firmA.id)
            try fixture.upload(fixture.firmA.id, matter: matter, status: "pending")
            try fixture.upload(fixture.firmA.id, matter: matter, status: "rejected")
            #expect(try fixture.jobs().isEmpty)
            try fixture.upload(fixture.firmA.id, matter: matter, status: "approved")
            #expect(try fixture.jobs().map(\.key) == [SyncJobs.matterKey(matter)])
        }
    }

    @Test func uploadChangesOtherThanBecomingApprovedEnqueueNothing() throws {
        try AutoSyncFixture.with { fixture in
            let matter = try fixture.matter(fixture.firmA.id)
            let pending = try fixture.upload(fixture.firmA.id, matter: matter)
            try fixture.asUser(fixture.firmA.admin, "UPDATE uploads SET status = 'rejected' WHERE id = $1", [pending])
            try fixture.asUser(fixture.firmA.admin, "UPDATE uploads SET file_name = 'b.pdf' WHERE id = $1", [pending])
            // Already approved (inserted so, then its job ran): set to approved again, or renamed.
            let approved = try fixture.upload(fixture.firmA.id, matter: matter, status: "approved")
            try fixture.seed.connection.execute("DELETE FROM jobs")
            try fixture.asUser(fixture.firmA.admin, "UPDATE uploads SET status = 'approved' WHERE id = $1", [approved])
            try fixture.asUser(fixture.firmA.admin, "UPDATE uploads SET file_name = 'c.pdf' WHERE id = $1", [approved])
            // Approved but already in Smokeball.
            let uploaded = try fixture.upload(fixture.firmA.id, matter: matter)
            try fixture.asUser(
                fixture.firmA.admin,
                "UPDATE uploads SET status = 'approved', smokeball_file_id = 'file-1' WHERE id = $1", [uploaded])
            #expect(try fixture.jobs().isEmpty)
        }
    }

    /// Ways a firm is not one whose approvals sync.
    enum Situation: String, CaseIterable, CustomTestStringConvertible {
        case settingOff, disconnected, noAccessToken, needsReconnect, refreshTokenExpired, neverConnected

        var testDescription: String { rawValue }

        func arrange(_ fixture: AutoSyncFixture, _ firm: UUID) throws {
            switch self {
            case .settingOff: try fixture.connect(firm, settings: #"{"auto_sync_on_approval": false}"#)
            case .disconnected: try fixture.integration(firm, set: "is_active = false")
            case .noAccessToken: try fixture.integration(firm, set: "access_token = NULL")
            case .needsReconnect: try fixture.integration(firm, set: "needs_reconnect_reason = 'invalid_grant'")
            case .refreshTokenExpired:
                try fixture.integration(firm, set: "refresh_token_expires_at = now() - interval '1 minute'")
            case .neverConnected:
                try fixture.seed.connection.execute("DELETE FROM firm_integrations WHERE firm_id = $1", [firm])
            }
        }
    }

    @Test(arguments: Situation.allCases)
    func anApprovalEnqueuesNothingWhenTheFirmDoesNotAutoSync(_ situation: Situation) throws {
        try AutoSyncFixture.with { fixture in
            try situation.arrange(fixture, fixture.firmA.id)
            let matter = try fixture.matter(fixture.firmA.id)
            let upload = try fixture.upload(fixture.firmA.id, matter: matter)
            try fixture.asUser(fixture.firmA.standard, "UPDATE uploads SET status = 'approved' WHERE id = $1", [upload])
            #expect(try fixture.jobs().isEmpty)
            // The other firm, connected with the defaults, is unaffected.
            let other = try fixture.upload(fixture.firmB.id, matter: try fixture.matter(fixture.firmB.id))
            try fixture.asUser(fixture.firmB.standard, "UPDATE uploads SET status = 'approved' WHERE id = $1", [other])
            #expect(try fixture.jobs().map(\.firm) == [fixture.firmB.id])
        }
    }

    @Test func theApprovalSettingDefaultsToOnWhenAbsentOrNotABoolean() throws {
        try AutoSyncFixture.with { fixture in
            try fixture.connect(fixture.firmA.id, settings: "{}")
            try fixture.connect(fixture.firmB.id, settings: #"{"auto_sync_on_approval": "no"}"#)
            for firm in [fixture.firmA.id, fixture.firmB.id] {
                try fixture.upload(firm, matter: try fixture.matter(firm), status: "approved")
            }
            #expect(Set(try fixture.jobs().map(\.firm)) == [fixture.firmA.id, fixture.firmB.id])
        }
    }

    // MARK: matters

    @Test func aNewMatterIsSyncedOnlyWhenTheFirmAsksForIt() throws {
        try AutoSyncFixture.with { fixture in
            // Default (absent: off).
            try fixture.connect(fixture.firmA.id, settings: "{}")
            try fixture.asUser(
                fixture.firmA.admin,
                "INSERT INTO matters (firm_id, title, case_type) VALUES (app_current_firm(), 'T', 'divorce_standard')")
            #expect(try fixture.jobs().isEmpty)
            try fixture.connect(fixture.firmA.id, settings: #"{"auto_sync_on_matter_created": true}"#)
            let matter = UUID()
            try fixture.asUser(
                fixture.firmA.admin,
                "INSERT INTO matters (id, firm_id, title, case_type) VALUES ($1, app_current_firm(), 'T', 'divorce_standard')",
                [matter])
            // Already linked (it came from Smokeball): nothing to send.
            try fixture.asUser(
                fixture.firmA.admin,
                """
                INSERT INTO matters (firm_id, title, case_type, smokeball_matter_id, smokeball_link_status)
                VALUES (app_current_firm(), 'T', 'divorce_standard', 'sb-1', 'confirmed')
                """)
            #expect(
                try fixture.jobs() == [
                    .init(
                        firm: fixture.firmA.id, kind: "sync_matter", key: SyncJobs.matterKey(matter),
                        payload: AutoSyncFixture.payload("matter_id", matter), priority: 1, status: "pending",
                        createdBy: fixture.firmA.admin, delayed: false)
                ])
        }
    }

    // MARK: clients

    @Test func editingALinkedClientsPhoneEnqueuesADebouncedPush() throws {
        try AutoSyncFixture.with { fixture in
            let client = try fixture.client(fixture.firmA.id)
            try fixture.asUser(fixture.firmA.standard, "UPDATE clients SET phone = '555 0199' WHERE id = $1", [client])
            #expect(
                try fixture.jobs() == [
                    .init(
                        firm: fixture.firmA.id, kind: "push_contact", key: SyncJobs.contactKey(client),
                        payload: AutoSyncFixture.payload("client_id", client), priority: 1, status: "pending",
                        createdBy: fixture.firmA.standard, delayed: true)
                ])
        }
    }

    @Test(arguments: ["first_name = 'Augusta'", "last_name = 'King'", "email = 'ada@king.test'", "email = NULL"])
    func eachPushedFieldEnqueuesWhenItChanges(_ assignment: String) throws {
        try AutoSyncFixture.with { fixture in
            let client = try fixture.client(fixture.firmA.id)
            try fixture.asUser(fixture.firmA.admin, "UPDATE clients SET \(assignment) WHERE id = $1", [client])
            #expect(try fixture.jobs().map(\.kind) == ["push_contact"])
        }
    }

    @Test func clientChangesThatAreNotAnEditOfALinkedContactEnqueueNothing() throws {
        try AutoSyncFixture.with { fixture in
            let linked = try fixture.client(fixture.firmA.id)
            let unlinked = try fixture.client(fixture.firmA.id, linked: false)
            let changes = [
                // Same values: nothing really changed.
                ("UPDATE clients SET phone = '555 0100', first_name = 'Ada' WHERE id = $1", linked),
                // Columns the contact does not carry, and what the push job writes back.
                ("UPDATE clients SET updated_at = now() + interval '1 hour' WHERE id = $1", linked),
                ("UPDATE clients SET smokeball_synced_at = now() WHERE id = $1", linked),
                // Not linked to a Smokeball contact (yet): the matter sync creates it.
                ("UPDATE clients SET phone = '555 0142' WHERE id = $1", unlinked),
            ]
            for (sql, client) in changes {
                try fixture.asUser(fixture.firmA.admin, sql, [client])
            }
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test func aChangeAppliedFromSmokeballIsNotPushedBack() throws {
        try AutoSyncFixture.with { fixture in
            let client = try fixture.client(fixture.firmA.id)
            try fixture.app.transaction { connection in
                _ = try Tenancy.enter(connection, userID: fixture.firmA.admin)
                try connection.execute("SELECT set_config('app.sync_origin', 'smokeball', true)")
                try connection.execute("UPDATE clients SET phone = '555 0177' WHERE id = $1", [client])
            }
            #expect(try fixture.jobs().isEmpty)
            // The flag lasts only for that transaction.
            try fixture.asUser(fixture.firmA.admin, "UPDATE clients SET phone = '555 0178' WHERE id = $1", [client])
            #expect(try fixture.jobs().map(\.kind) == ["push_contact"])
        }
    }

    @Test func aLinkedClientOfAFirmThatIsNotConnectedEnqueuesNothing() throws {
        try AutoSyncFixture.with { fixture in
            try fixture.integration(fixture.firmA.id, set: "is_active = false")
            let client = try fixture.client(fixture.firmA.id)
            try fixture.asUser(fixture.firmA.admin, "UPDATE clients SET phone = '555 0101' WHERE id = $1", [client])
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test func rapidEditsOfAClientCoalesceIntoOnePendingPush() throws {
        try AutoSyncFixture.with { fixture in
            let client = try fixture.client(fixture.firmA.id)
            for digit in 0..<6 {
                try fixture.asUser(
                    fixture.firmA.standard, "UPDATE clients SET phone = $2 WHERE id = $1", [client, "555 011\(digit)"])
            }
            let jobs = try fixture.jobs()
            #expect(jobs.count == 1)
            #expect(jobs.first?.status == "pending")
            #expect(jobs.first?.key == SyncJobs.contactKey(client))
        }
    }

    // MARK: transactions and firms

    @Test func theJobExistsOnlyIfTheChangeCommits() throws {
        try AutoSyncFixture.with { fixture in
            let client = try fixture.client(fixture.firmA.id)
            let matter = try fixture.matter(fixture.firmA.id)
            let upload = try fixture.upload(fixture.firmA.id, matter: matter)
            #expect(throws: Rollback.self) {
                try fixture.app.transaction { connection in
                    _ = try Tenancy.enter(connection, userID: fixture.firmA.admin)
                    try connection.execute("UPDATE clients SET phone = '555 0123' WHERE id = $1", [client])
                    try connection.execute("UPDATE uploads SET status = 'approved' WHERE id = $1", [upload])
                    // Inside the transaction the jobs are there; the rollback takes them away.
                    let seen = try connection.execute("SELECT count(*) AS n FROM jobs").single().int("n")
                    #expect(seen == 2)
                    throw Rollback()
                }
            }
            #expect(try fixture.jobs().isEmpty)
        }
    }

    @Test func aHostSessionWithNoFirmOrAnotherFirmEnqueuesForTheRowsFirm() throws {
        try AutoSyncFixture.with { fixture in
            let client = try fixture.client(fixture.firmB.id)
            let matter = try fixture.matter(fixture.firmB.id)
            let upload = try fixture.upload(fixture.firmB.id, matter: matter)
            // The host app's own role (here the superuser) with no firm set.
            try fixture.seed.connection.execute("UPDATE uploads SET status = 'approved' WHERE id = $1", [upload])
            // Bound to firm A (user and firm), changing firm B's client: the job is B's, with no
            // author from A, and the session is still A's afterwards.
            let after = try fixture.seed.connection.transaction { connection in
                try connection.execute(
                    "SELECT set_config('app.firm_id', $1, true), set_config('app.user_id', $2, true)",
                    [fixture.firmA.id.uuidString.lowercased(), fixture.firmA.admin.uuidString.lowercased()])
                try connection.execute("UPDATE clients SET phone = '555 0133' WHERE id = $1", [client])
                return try connection.execute(
                    "SELECT app_current_firm() AS firm, app_current_user() AS usr, current_setting('app.job_worker', true) AS w"
                ).single()
            }
            #expect(try after.optionalUUID("firm") == fixture.firmA.id)
            #expect(try after.optionalUUID("usr") == fixture.firmA.admin)
            let jobs = try fixture.jobs()
            #expect(jobs.map(\.firm) == [fixture.firmB.id, fixture.firmB.id])
            #expect(jobs.map(\.kind) == ["sync_matter", "push_contact"])
            #expect(jobs.map(\.createdBy) == [nil, nil])
        }
    }

    @Test func theAppRoleCannotEnqueueForAnotherFirmThroughTheTriggers() throws {
        try AutoSyncFixture.with { fixture in
            let clientB = try fixture.client(fixture.firmB.id)
            let matterB = try fixture.matter(fixture.firmB.id)
            let uploadB = try fixture.upload(fixture.firmB.id, matter: matterB)
            // Its firm's policies hide firm B's rows: nothing changes, nothing is enqueued.
            try fixture.asUser(fixture.firmA.admin, "UPDATE clients SET phone = '555 0144' WHERE id = $1", [clientB])
            try fixture.asUser(fixture.firmA.admin, "UPDATE uploads SET status = 'approved' WHERE id = $1", [uploadB])
            // The helper and the trigger functions are not the app role's (nor the worker's) to call.
            let calls = [
                """
                SELECT smokeball_auto_sync_enqueue($1::uuid, NULL, NULL, NULL, 'push_contact', 'contact:x', '{}'::jsonb)
                """,
                "SELECT smokeball_auto_sync_upload()", "SELECT smokeball_auto_sync_matter()",
                "SELECT smokeball_auto_sync_client()",
            ]
            for url in [fixture.database.appURL, fixture.database.workerURL] {
                let connection = try Connection(url: url)
                for sql in calls {
                    do {
                        try connection.transaction { connection in
                            _ = try Tenancy.enter(connection, userID: fixture.firmA.admin)
                            if sql.contains("$1") {
                                try connection.execute(sql, [fixture.firmB.id])
                            } else {
                                try connection.execute(sql)
                            }
                        }
                        Issue.record("could run: \(sql)")
                    } catch let error as DatabaseError {
                        #expect(error.isInsufficientPrivilege, "\(sql): \(error)")
                    }
                }
            }
            #expect(try fixture.jobs().isEmpty)
            #expect(
                try fixture.seed.connection.execute("SELECT phone FROM clients WHERE id = $1", [clientB]).single()
                    .optionalString("phone") == "555 0100")
        }
    }
}
