import FastCGI
import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration
@testable import Smokeball

/// `import_matters` against the sandbox and PostgreSQL: the job runs in this process on a job
/// claimed from the real queue (`MatterSyncFixture.runNext`).
@Suite struct ImportMattersJobTests {
    /// The firm's matter types in Illinois (the sandbox account's state), by "Category/Name".
    static func types(_ fixture: MatterSyncFixture) throws -> [String: MatterTypeInfo] {
        let list = try fixture.flow.tokens.withAccess(UserScope(userID: fixture.flow.firm.admin)) { client, access in
            try client.matterTypes(location: "IL", access: access)
        }
        var byName: [String: MatterTypeInfo] = [:]
        for type in list where type.type != 1 {
            byName["\(type.category ?? "")/\(type.name ?? "")"] = type
        }
        return byName
    }

    /// A matter made in Smokeball as the firm (or another program) would; its id.
    static func sandboxMatter(
        _ fixture: MatterSyncFixture, type: MatterTypeInfo?, client: String?, status: String = "Open",
        number: String, description: String, externalSystemID: String? = nil
    ) throws -> String {
        let type = try #require(type)
        var body: [String: Any] = [
            "matterTypeId": type.id ?? "", "clientIds": client.map { [$0] } ?? [], "status": status,
            "number": number, "description": description,
        ]
        if let role = type.representativeOptions?.first { body["clientRole"] = role }
        if let externalSystemID { body["externalSystemId"] = externalSystemID }
        let data = try JSONSerialization.data(withJSONObject: body)
        return try fixture.flow.tokens.withAccess(UserScope(userID: fixture.flow.firm.admin)) { smokeball, access in
            let answer = try smokeball.call("POST", "/matters", body: [UInt8](data), access: access)
            return try #require(SmokeballClient.acceptedLink(answer.response).id)
        }
    }

    func importNow(_ fixture: MatterSyncFixture) throws -> MatterSyncFixture.Attempt {
        _ = try fixture.enqueue(
            ImportMattersJob.kind, key: ImportMattersJob.key, payload: [String: String](), priority: .bulk)
        return try fixture.runNext(ImportMattersJob.kind)
    }

    static func matter(_ fixture: MatterSyncFixture, smokeballID: String) throws -> Row? {
        try fixture.seed.connection.execute(
            """
            SELECT m.*, m.smokeball_sent::text AS sent, c.first_name, c.last_name, c.email, c.phone,
                   c.smokeball_contact_id, c.smokeball_contact_linked_by
            FROM matters m LEFT JOIN clients c ON c.id = m.client_id
            WHERE m.smokeball_matter_id = $1
            """, [smokeballID]
        ).first
    }

    @Test(
        "an import creates linked clients and matters with Smokeball's fields, maps types backwards (custom, built-in, catch-all) and counts what it skips"
    )
    func importsAndSkips() throws {
        try MatterSyncFixture.with { fixture in
            let types = try Self.types(fixture)
            let ada = try fixture.sandboxContact([
                "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.test",
                "phone": ["areaCode": "312", "number": "555-0101"],
            ])
            let grace = try fixture.sandboxContact([
                "firstName": "Grace", "lastName": "Hopper", "email": "Grace@Example.test",
            ])
            // An existing CaseHug client with Grace's email (another case): linked, not duplicated.
            let graceClient = try fixture.client(first: "Grace", last: "Hopper", email: "grace@example.test")
            // A contact CaseHug created for a client (its externalSystemId) is that client's.
            let alanClient = try fixture.client(first: "Alan", last: "Turing")
            let alan = try fixture.sandboxContact(
                ["firstName": "Alan", "lastName": "Turing"], externalSystemID: alanClient.uuidString.lowercased())
            let ours = try fixture.matter(client: alanClient)
            // The firm maps Child Custody to Paternity: a Paternity matter comes back as Child Custody.
            try fixture.seed.connection.execute(
                """
                UPDATE firm_integrations SET settings = settings || jsonb_build_object('case_type_mappings',
                    jsonb_build_object('child_custody', $2::text), 'auto_sync_on_matter_created', true)
                WHERE firm_id = $1
                """, [fixture.firm, try #require(types["Family Law/Paternity"]?.id)])
            // A recording trigger: the setting each imported matter was written under.
            try fixture.seed.connection.executeScript(
                """
                CREATE TABLE import_origins (origin text);
                CREATE FUNCTION record_import_origin() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
                BEGIN
                    INSERT INTO import_origins VALUES (coalesce(current_setting('app.sync_origin', true), ''));
                    RETURN NULL;
                END $$;
                CREATE TRIGGER record_import_origin AFTER INSERT ON matters FOR EACH ROW
                    EXECUTE FUNCTION record_import_origin();
                """)

            let divorce = try Self.sandboxMatter(
                fixture, type: types["Family Law/Divorce"], client: ada, number: "SB-1", description: "Ada's divorce")
            let accident = try Self.sandboxMatter(
                fixture, type: types["Personal Injury/Motor Vehicle Accident"], client: ada, status: "Pending",
                number: "SB-2", description: "Crash")
            let parental = try Self.sandboxMatter(
                fixture, type: types["Family Law/Allocation of Parental Responsibilities"], client: grace,
                status: "Closed", number: "SB-3", description: "Parenting")
            let paternity = try Self.sandboxMatter(
                fixture, type: types["Family Law/Paternity"], client: alan, status: "Cancelled", number: "SB-4",
                description: "Paternity")
            _ = try Self.sandboxMatter(
                fixture, type: types["Bankruptcy/Chapter 7"], client: ada, number: "SB-5", description: "Ch. 7")
            _ = try Self.sandboxMatter(
                fixture, type: types["Immigration/Asylum"], client: grace, status: "Deleted", number: "SB-6",
                description: "Gone")
            _ = try Self.sandboxMatter(
                fixture, type: types["Family Law/Divorce"], client: alan, number: "SB-7", description: "Ours",
                externalSystemID: ours.uuidString.lowercased())

            let first = try importNow(fixture)
            #expect(first.error == nil, "\(String(describing: first.error))")
            let result = try #require(first.result)
            #expect(result["imported"] as? Int == 4)
            #expect(result["skipped_other_area"] as? Int == 1)
            #expect(result["skipped_deleted"] as? Int == 1)
            #expect(result["skipped_ours"] as? Int == 1)
            #expect(result["skipped_linked"] as? Int == 0)
            #expect(result["clients_created"] as? Int == 1)
            #expect(result["clients_linked"] as? Int == 2)
            #expect(first.progress == JobProgress(done: 7, total: 7))

            let imported = try #require(try Self.matter(fixture, smokeballID: divorce))
            #expect(try imported.string("case_type") == "divorce_standard")
            #expect(try imported.string("status") == "active")
            #expect(try imported.optionalString("case_number") == "SB-1")
            #expect(try imported.string("title").contains("Lovelace"))
            #expect(try imported.optionalString("smokeball_link_status") == "confirmed")
            #expect(try imported.string("first_name") == "Ada")
            #expect(try imported.string("last_name") == "Lovelace")
            #expect(try imported.optionalString("email") == "ada@example.test")
            #expect(try imported.optionalString("phone") == "312 555-0101")
            #expect(try imported.optionalString("smokeball_contact_id") == ada)
            #expect(try imported.optionalString("smokeball_contact_linked_by") == "imported")
            let crash = try #require(try Self.matter(fixture, smokeballID: accident))
            #expect(try crash.string("case_type") == "auto_accident")
            #expect(try crash.string("status") == "active")
            #expect(try crash.optionalUUID("client_id") == imported.optionalUUID("client_id"))
            let other = try #require(try Self.matter(fixture, smokeballID: parental))
            #expect(try other.string("case_type") == "family_law_other")
            #expect(try other.string("status") == "closed")
            #expect(try other.optionalUUID("client_id") == graceClient)
            #expect(try other.optionalString("smokeball_contact_linked_by") == "email")
            let custom = try #require(try Self.matter(fixture, smokeballID: paternity))
            #expect(try custom.string("case_type") == "child_custody")
            #expect(try custom.string("status") == "closed")
            #expect(try custom.optionalUUID("client_id") == alanClient)
            #expect(try custom.optionalString("smokeball_contact_linked_by") == "external_system_id")

            // Every import transaction carried the inbound flag, and no trigger enqueued anything.
            let origins = try fixture.seed.connection.execute("SELECT origin FROM import_origins").rows.map {
                try $0.string("origin")
            }
            #expect(origins == Array(repeating: "smokeball", count: 4))
            let triggered = try fixture.seed.connection.execute(
                "SELECT count(*) AS n FROM jobs WHERE kind IN ('sync_matter', 'push_contact')"
            ).single().int("n")
            #expect(triggered == 0)

            // A sync of an unchanged imported matter sends nothing: the baseline is what it holds.
            let mark = try fixture.logMark()
            let sync = try fixture.syncMatter(try imported.uuid("id"))
            #expect(sync.error == nil, "\(String(describing: sync.error))")
            #expect((sync.result?["matter"] as? String) == "unchanged")
            #expect(try fixture.requests(after: mark).isEmpty)

            // Again: nothing new.
            let counts = try fixture.seed.connection.execute(
                "SELECT (SELECT count(*) FROM matters) AS m, (SELECT count(*) FROM clients) AS c"
            ).single()
            let second = try importNow(fixture)
            #expect(second.result?["imported"] as? Int == 0)
            #expect(second.result?["skipped_linked"] as? Int == 4)
            #expect(second.result?["clients_created"] as? Int == 0)
            let after = try fixture.seed.connection.execute(
                "SELECT (SELECT count(*) FROM matters) AS m, (SELECT count(*) FROM clients) AS c"
            ).single()
            #expect(try after.int("m") == counts.int("m"))
            #expect(try after.int("c") == counts.int("c"))
        }
    }

    @Test("import_matters is for firm admins of a connected firm and enqueues one bulk job keyed by the firm")
    func theRoute() throws {
        try SyncFixture.with { (fixture) throws in
            let body = #"{"action": "import_matters"}"#
            let refused = fixture.post(body, user: fixture.firm.standard)
            #expect(refused.status.code == 403)
            #expect(try fixture.jobs().isEmpty)
            let accepted = fixture.post(body, user: fixture.firm.admin)
            #expect(accepted.status.code == 202)
            let again = fixture.post(body, user: fixture.firm.admin)
            #expect(
                try SyncHandlerTests.json(again)["job_id"] as? String
                    == SyncHandlerTests.json(accepted)["job_id"] as? String)
            let jobs = try fixture.jobs()
            #expect(jobs.count == 1)
            let job = try #require(jobs.first)
            #expect(try job.string("kind") == "import_matters")
            #expect(try job.optionalString("key") == "firm")
            #expect(try job.int("priority") == 2)
            #expect(try job.uuid("firm_id") == fixture.firm.id)
        }
        try SyncFixture.with(connected: false) { (fixture) throws in
            let response = fixture.post(#"{"action": "import_matters"}"#, user: fixture.firm.admin)
            #expect(response.status.code == 409)
            #expect(try fixture.jobs().isEmpty)
        }
        try SyncFixture.with(configured: false) { (fixture) throws in
            let response = fixture.post(#"{"action": "import_matters"}"#, user: fixture.firm.admin)
            #expect(response.status.code == 503)
        }
    }
    @Test(
        "the real worker killed while a page of matters is read: a new worker resumes, and each matter and contact is imported once"
    )
    func resumesAfterACrash() throws {
        try MatterSyncFixture.with { fixture in
            let account = fixture.sandbox.accountID
            for (what, count) in [("contacts", 1100), ("matters", 1200)] {
                let seeded = try fixture.sandbox.service.send(
                    "POST", "/_sandbox/accounts/\(account)/\(what)/seed",
                    body: SmokeballSandbox.json(["count": count]), contentType: "application/json",
                    base: fixture.sandbox.url)
                try #require(seeded.status == 201)
            }
            // Every page read is held 4 s: the kill lands inside the second, after the first page's commit.
            try fixture.sandbox.addFault(["path_prefix": "/matters", "latency_ms": 4000])
            let first = try KillableWorker.sync(fixture, settleSeconds: 1)
            let job = try fixture.enqueue(
                ImportMattersJob.kind, key: ImportMattersJob.key, payload: [String: String](), priority: .bulk)
            try Processes.waitFor("the first page to be imported", timeout: 60) {
                try fixture.seed.connection.execute("SELECT count(*) AS n FROM matters").single().int("n") > 0
            }
            Thread.sleep(forTimeInterval: 0.5)
            let before = try fixture.seed.connection.execute("SELECT count(*) AS n FROM matters").single().int("n")
            first.kill9()
            try fixture.sandbox.clearFaults()
            let second = try KillableWorker.sync(fixture, settleSeconds: 1)
            defer { try? second.stop() }
            try Processes.waitFor("the import to succeed after the crash", timeout: 120) {
                let status = try fixture.seed.connection.execute("SELECT status FROM jobs WHERE id = $1", [job])
                    .single().string("status")
                if status == "dead" { throw HarnessError("the job died: \(second.logText)") }
                return status == "succeeded"
            }
            let row = try fixture.seed.connection.execute(
                "SELECT result::text AS result, attempts FROM jobs WHERE id = $1", [job]
            ).single()
            let result = try #require(
                try JSONSerialization.jsonObject(with: Data(row.string("result").utf8)) as? [String: Any])
            let imported = try #require(result["imported"] as? Int)
            let linked = try #require(result["skipped_linked"] as? Int)
            let other = try #require(result["skipped_other_area"] as? Int)
            print(
                "import after a crash: \(before) matters before the kill, result \(result), attempts \(try row.int("attempts"))"
            )
            #expect(try row.int("attempts") == 2)
            #expect(result["total"] as? Int == 1200)
            #expect(imported + linked + other == 1200)
            // The first page was kept, not made again.
            #expect(linked == before)
            #expect(before > 0 && before < 1200)
            let counts = try fixture.seed.connection.execute(
                """
                SELECT (SELECT count(*) FROM matters) AS matters,
                       (SELECT count(DISTINCT smokeball_matter_id) FROM matters) AS smokeball_matters,
                       (SELECT count(*) FROM clients) AS clients,
                       (SELECT count(DISTINCT smokeball_contact_id) FROM clients) AS contacts,
                       (SELECT count(*) FROM matters WHERE client_id IS NULL) AS without_client
                """
            ).single()
            #expect(try counts.int("matters") == imported + linked)
            #expect(try counts.int("smokeball_matters") == counts.int("matters"))
            #expect(try counts.int("clients") == counts.int("contacts"))
            #expect(try counts.int("without_client") == 0)
        }
    }

    @Test("the import records its progress with each page's commit, not only at the worker's heartbeats")
    func progressPerPage() throws {
        try MatterSyncFixture.with { fixture in
            let account = fixture.sandbox.accountID
            for (what, count) in [("contacts", 600), ("matters", 1100)] {
                let seeded = try fixture.sandbox.service.send(
                    "POST", "/_sandbox/accounts/\(account)/\(what)/seed",
                    body: SmokeballSandbox.json(["count": count]), contentType: "application/json",
                    base: fixture.sandbox.url)
                try #require(seeded.status == 201)
            }
            // Each change of the job's progress, with the matters linked in the same transaction.
            // The job runs in this process (`runNext`): no heartbeat records anything.
            try fixture.seed.connection.executeScript(
                """
                CREATE TABLE import_progress (n bigserial, done integer, total integer, linked bigint);
                CREATE FUNCTION record_import_progress() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
                BEGIN
                    INSERT INTO import_progress (done, total, linked)
                    VALUES (NEW.progress_done, NEW.progress_total,
                            (SELECT count(*) FROM matters WHERE smokeball_matter_id IS NOT NULL));
                    RETURN NULL;
                END $$;
                CREATE TRIGGER record_import_progress AFTER UPDATE OF progress_done ON jobs FOR EACH ROW
                    WHEN (NEW.kind = 'import_matters' AND NEW.progress_done IS DISTINCT FROM OLD.progress_done)
                    EXECUTE FUNCTION record_import_progress();
                """)
            let attempt = try importNow(fixture)
            #expect(attempt.error == nil, "\(String(describing: attempt.error))")
            let imported = try #require(attempt.result?["imported"] as? Int)
            let rows = try fixture.seed.connection.execute(
                "SELECT done, total, linked FROM import_progress ORDER BY n"
            ).rows.map { (try $0.int("done"), try $0.int("total"), try $0.int("linked")) }
            // One record per page of 500, each committed with that page's matters.
            #expect(rows.map(\.0) == [500, 1000, 1100])
            #expect(rows.allSatisfy { $0.1 == 1100 })
            #expect(rows.last?.2 == Int64(imported))
            #expect(zip(rows, rows.dropFirst()).allSatisfy { $0.2 < $1.2 })
        }
    }

    @Test("a lead is not imported, even of a type that maps to a case type")
    func skipsLeads() throws {
        // Smokeball lists matters only unless asked for leads, so a lead reaches the import only
        // if that ever changes: the rule is checked on its own.
        let info = try JSONDecoder().decode(
            MatterTypeInfo.self,
            from: Data(
                #"{"id": "type-divorce", "name": "Divorce", "category": "Family Law", "type": 0, "representativeOptions": ["Petitioner"]}"#
                    .utf8))
        let catalogue = MatterTypeResolver.Catalogue(
            location: "IL", firmLocation: "IL", types: [try #require(MatterTypeResolver.CachedType(info))],
            sameAccount: true, age: 0)
        let divorce = ImportMattersJob.CaseType(
            key: "divorce_standard", practiceArea: "family_law",
            request: MatterTypeRequest(
                caseType: "divorce_standard", displayName: "Divorce", category: "Family Law", builtInName: "Divorce"))
        let mapping = ReverseMapping(caseTypes: [divorce], mappings: [:], catalogue: catalogue)
        func matter(isLead: Bool) throws -> SmokeballMatter {
            try JSONDecoder().decode(
                SmokeballMatter.self,
                from: Data(
                    #"{"id": "matter-1", "matterType": {"id": "type-divorce"}, "status": "Open", "isLead": \#(isLead)}"#
                        .utf8))
        }
        #expect(ImportMattersJob.skip(try matter(isLead: false), ImportMattersJob.Known(), mapping) == nil)
        #expect(ImportMattersJob.skip(try matter(isLead: true), ImportMattersJob.Known(), mapping) == .lead)
    }
}
