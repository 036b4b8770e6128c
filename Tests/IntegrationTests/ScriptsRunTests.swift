import Basics
import Foundation
import HTTPClient
import Integration
import PostgreSQL
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `scripts/run` as a developer runs it, on its own ports and data directory, with the
/// executables scripts/test built (no release build).
@Suite struct ScriptsRunTests {
    /// Every distinct command line seen in /proc while it watches. A secret on a command line
    /// may show for a millisecond only (`setsid env NAME=VALUE exe` until the exe runs), too
    /// short for full scans of /proc. So between full scans it rereads just the processes
    /// created in the last quarter second (pids up to the kernel's last allocated one) every
    /// 100 µs, from a thread at the highest CPU priority so it is not starved by the run it
    /// watches.
    final class CommandLineWatcher: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: Set<String> = []
        private var stopping = false
        private let finished = DispatchSemaphore(value: 0)

        func start() {
            Thread.detachNewThread {
                // Root may raise a thread's priority (Linux applies it to the thread alone).
                // (/proc/thread-self names "PID/task/TID"; Glibc's gettid is not imported.)
                if let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self"),
                    let thread = link.split(separator: "/").last.flatMap({ id_t($0) })
                {
                    _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), thread, -20)
                }
                var found: Set<String> = []
                var recent: [Int32: Date] = [:]
                var newest = Self.lastPID()
                var buffer = [UInt8](repeating: 0, count: 16_384)
                for pid in Self.allPIDs() { Self.commandLine(pid, &buffer).map { _ = found.insert($0) } }
                var rounds = 0
                while !self.isStopping {
                    let last = Self.lastPID()
                    let now = Date()
                    // The pid counter wrapped: start over from it.
                    if last < newest { newest = last }
                    if newest < last {
                        for pid in newest + 1...last { recent[pid] = now }
                        newest = last
                    }
                    for (pid, since) in recent {
                        if let line = Self.commandLine(pid, &buffer) {
                            found.insert(line)
                        }
                        if now.timeIntervalSince(since) > 0.25 { recent[pid] = nil }
                    }
                    rounds += 1
                    if rounds % 256 == 0 {
                        self.lock.lock()
                        self.seen.formUnion(found)
                        self.lock.unlock()
                        found.removeAll(keepingCapacity: true)
                    }
                    usleep(100)
                }
                self.lock.lock()
                self.seen.formUnion(found)
                self.lock.unlock()
                self.finished.signal()
            }
        }

        var isStopping: Bool {
            lock.lock()
            defer { lock.unlock() }
            return stopping
        }

        /// Stops and returns what was seen.
        func stop() -> Set<String> {
            lock.lock()
            stopping = true
            lock.unlock()
            finished.wait()
            scan()
            lock.lock()
            defer { lock.unlock() }
            return seen
        }

        /// Every process now.
        func scan() {
            var buffer = [UInt8](repeating: 0, count: 16_384)
            let found = Self.allPIDs().compactMap { Self.commandLine($0, &buffer) }
            lock.lock()
            seen.formUnion(found)
            lock.unlock()
        }

        static func lastPID() -> Int32 {
            let text = (try? String(contentsOfFile: "/proc/sys/kernel/ns_last_pid", encoding: .utf8)) ?? ""
            return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }

        static func allPIDs() -> [Int32] {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        }

        /// The arguments of `pid` joined by spaces; nil when there is no such process.
        static func commandLine(_ pid: Int32, _ buffer: inout [UInt8]) -> String? {
            let fd = open("/proc/\(pid)/cmdline", O_RDONLY)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { return nil }
            return String(decoding: buffer[..<count].map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
        }
    }

    /// KEY=VALUE lines of an env file.
    static func readEnvFile(_ path: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }

    static func connect(script: String, environment: [String: String], demo: [String: String]) throws {
        let output = try Processes.runTool(script, ["--connect-link"], environment: environment)
        let firstLine = output.split(separator: "\n").first.map(String.init)
        let link = try #require(firstLine)
        let adminURL = try #require(demo["SANDBOX_ADMIN_URL"])
        let sandboxURL = adminURL.replacingOccurrences(of: "/_sandbox", with: "")
        #expect(link.hasPrefix(sandboxURL + "/oauth2/authorize?"))
        let http = try HTTPClient()
        #expect(try http.send(HTTPRequest(url: link)).status == 200)
        let query = try #require(URLComponents(string: link)?.percentEncodedQuery)
        let email = try #require(demo["SANDBOX_USER_EMAIL"])
        let password = try #require(demo["SANDBOX_USER_PASSWORD"])
        let form = QueryString.items(query) + [("username", email), ("password", password), ("decision", "allow")]
        let signedIn = try http.send(
            HTTPRequest(
                method: "POST", url: sandboxURL + "/oauth2/authorize",
                headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: Array(FormURLEncoding.encode(form).utf8)))
        #expect(signedIn.status == 302)
        let callback = try #require(signedIn.header("Location"))
        let base = try #require(demo["BASE_URL"])
        #expect(callback.hasPrefix(base + "/api/v1/integrations/smokeball/callback?"))
        let landing = try http.send(HTTPRequest(url: callback))
        // Back on the settings page (scripts/run points SMOKEBALL_RETURN_URL at it).
        #expect(demo["PAGE_URL"] == base + "/integrations/smokeball/")
        #expect(landing.header("Location") == base + "/integrations/smokeball/?smokeball=connected")

        let adminToken = try #require(demo["DEMO_ADMIN_TOKEN"])
        let bearer = [("Authorization", "Bearer " + adminToken)]
        let status = try http.send(
            HTTPRequest(url: base + "/api/v1/integrations/smokeball/status", headers: bearer)
        ).jsonObject
        #expect(status["connected"] as? Bool == true)
        #expect((status["smokeball"] as? [String: Any])?["firm_name"] as? String == "Demo Law Group")
        #expect(status["webhook_subscription"] is [String: Any])
    }

    static func disconnect(demo: [String: String]) throws {
        let http = try HTTPClient()
        let base = try #require(demo["BASE_URL"])
        let bearer = [("Authorization", "Bearer " + (try #require(demo["DEMO_ADMIN_TOKEN"])))]
        let disconnected = try http.send(
            HTTPRequest(method: "POST", url: base + "/api/v1/integrations/smokeball/disconnect", headers: bearer))
        #expect(disconnected.status == 200)
        #expect(disconnected.jsonObject["webhooks_deleted"] as? Int == 1)
        // Counted in the sandbox's own database (the same cluster, its superuser).
        let left = try Connection(url: try sandboxDatabaseURL(demo)).execute(
            "SELECT count(*)::bigint AS n FROM sb_webhook_subscriptions"
        ).single().int("n")
        #expect(left == 0)
    }

    /// The sandbox's own database: the same cluster, its superuser.
    static func sandboxDatabaseURL(_ demo: [String: String]) throws -> String {
        let superuserURL = try #require(demo["SUPERUSER_DATABASE_URL"])
        var sandboxDatabase = try #require(URLComponents(string: superuserURL))
        sandboxDatabase.path = "/smokeball_sandbox"
        return try #require(sandboxDatabase.string)
    }

    /// The README's sync walk-through, on the demo firm once connected: `POST sync` for the
    /// divorce matter puts its contact, the matter (type, number, description, status) and its
    /// approved document into the sandbox, byte for byte; a second sync creates nothing;
    /// approving an upload in the database brings it over without a click; editing the client's
    /// phone updates the Smokeball contact.
    static func syncWalkthrough(demo: [String: String]) throws {
        let http = try HTTPClient()
        let base = try #require(demo["BASE_URL"])
        let syncURL = base + "/api/v1/integrations/smokeball/sync"
        let bearer = [("Authorization", "Bearer " + (try #require(demo["DEMO_USER_TOKEN"])))]
        let matterID = "00000000-0000-4000-8000-0000000000d1"
        let clientID = "00000000-0000-4000-8000-0000000000c1"
        let host = try Connection(url: try #require(demo["SUPERUSER_DATABASE_URL"]))
        let sandbox = try Connection(url: try sandboxDatabaseURL(demo))
        let storageRoot = try #require(demo["STORAGE_ROOT"])

        func waitUntil(_ what: String, _ condition: () throws -> Bool) throws {
            let deadline = Date().addingTimeInterval(90)
            while try !condition() {
                guard Date() < deadline else {
                    Issue.record("timed out waiting for \(what)")
                    return
                }
                usleep(100_000)
            }
        }
        func sync() throws -> [String: Any] {
            let answer = try http.send(
                HTTPRequest(
                    method: "POST", url: syncURL, headers: bearer + [("Content-Type", "application/json")],
                    body: Array(#"{"matter_id":"\#(matterID)","action":"sync_matter"}"#.utf8)))
            #expect(answer.status == 202)
            let jobID = try #require(answer.jsonObject["job_id"] as? String)
            var job: [String: Any] = [:]
            try waitUntil("the sync job") {
                job = try http.send(HTTPRequest(url: syncURL + "?job_id=" + jobID, headers: bearer)).jsonObject
                return ["succeeded", "dead"].contains(job["status"] as? String ?? "")
            }
            #expect(job["status"] as? String == "succeeded", "\(job["error"] ?? "")")
            return job
        }
        func count(_ sql: String, _ values: [any SQLValueConvertible] = []) throws -> Int64 {
            try sandbox.execute(sql, values).single().int("n")
        }
        func sandboxFiles() throws -> [(name: String, content: [UInt8])] {
            try sandbox.execute(
                """
                SELECT f.name, f.content FROM sb_files f JOIN sb_matters m ON m.id = f.matter_id
                JOIN sb_folders d ON d.id = f.folder_id
                WHERE m.external_system_id = $1 AND d.name = 'CaseHug' AND f.uploaded_at IS NOT NULL ORDER BY f.name
                """, [matterID]
            ).rows.map { (try $0.string("name"), try $0.optionalBytes("content") ?? []) }
        }
        func original(_ path: String) throws -> [UInt8] {
            [UInt8](try Data(contentsOf: URL(fileURLWithPath: storageRoot + "/" + path)))
        }

        _ = try sync()
        let matter = try sandbox.execute(
            """
            SELECT m.number, m.description, m.status, t.name AS type_name, t.category FROM sb_matters m
            JOIN sb_matter_types t ON t.id = m.matter_type_id WHERE m.external_system_id = $1
            """, [matterID]
        ).rows
        #expect(matter.count == 1)
        #expect(try matter.first?.optionalString("number") == "DLG-2026-0001")
        #expect(try matter.first?.optionalString("description") == "Example v. Example (divorce)")
        #expect(try matter.first?.string("status") == "Open")
        #expect(try matter.first?.string("type_name") == "Divorce")
        #expect(try matter.first?.string("category") == "Family Law")
        #expect(
            try count("SELECT count(*)::bigint AS n FROM sb_contacts WHERE external_system_id = $1", [clientID]) == 1)
        #expect(try count("SELECT count(*)::bigint AS n FROM sb_folders WHERE name = 'CaseHug'") == 1)
        // The approved certificate, not the pending spreadsheet; byte for byte.
        var files = try sandboxFiles()
        #expect(files.map(\.name) == ["marriage-certificate.pdf"])
        #expect(files.first?.content == (try original("demo/d1/marriage-certificate.pdf")))

        // Again: nothing new is made (no POST reaches the sandbox).
        let postsBefore = try count("SELECT count(*)::bigint AS n FROM sb_requests WHERE method = 'POST'")
        _ = try sync()
        #expect(try count("SELECT count(*)::bigint AS n FROM sb_requests WHERE method = 'POST'") == postsBefore)
        #expect(
            try count("SELECT count(*)::bigint AS n FROM sb_matters WHERE external_system_id = $1", [matterID]) == 1)

        // Approving the spreadsheet in the database: it appears in Smokeball without a click.
        try host.execute(
            "UPDATE uploads SET status = 'approved' WHERE id = '00000000-0000-4000-8000-0000000000e2'")
        try waitUntil("the approved upload in the sandbox") { try sandboxFiles().count == 2 }
        files = try sandboxFiles()
        #expect(files.map(\.name) == ["financial-statement.xlsx", "marriage-certificate.pdf"])
        #expect(files.first?.content == (try original("demo/d1/financial-statement.xlsx")))
        #expect(try count("SELECT count(*)::bigint AS n FROM sb_folders WHERE name = 'CaseHug'") == 1)

        // Closing the matter in Smokeball, as a firm user would: the webhook reaches the route,
        // the worker re-reads the matter, and the CaseHug matter is closed (issue #13).
        let smokeballMatter = try sandbox.execute(
            "SELECT id::text AS id, account_id::text AS account FROM sb_matters WHERE external_system_id = $1",
            [matterID]
        ).single()
        let adminURL = try #require(demo["SANDBOX_ADMIN_URL"])
        let closed = try http.send(
            HTTPRequest(
                method: "POST",
                url: adminURL + "/accounts/\(try smokeballMatter.string("account"))/matters/"
                    + (try smokeballMatter.string("id")) + "/status",
                headers: [("Content-Type", "application/json")], body: Array(#"{"status":"Closed"}"#.utf8)))
        #expect(closed.status == 200)
        let closedAt = Date()
        try waitUntil("the CaseHug matter to follow Smokeball's status") {
            try host.execute("SELECT status FROM matters WHERE id = $1::uuid", [matterID]).single().string("status")
                == "closed"
        }
        print(
            "Smokeball status change to CaseHug: \(String(format: "%.2f", Date().timeIntervalSince(closedAt))) s")

        // Editing the client's phone in CaseHug updates the Smokeball contact.
        try host.execute("UPDATE clients SET phone = '+1 555 010 0199' WHERE id = $1::uuid", [clientID])
        try waitUntil("the contact's new phone in the sandbox") {
            try sandbox.execute(
                "SELECT doc #>> '{person,phone,number}' AS phone FROM sb_contacts WHERE external_system_id = $1",
                [clientID]
            ).first?.optionalString("phone") == "+1 555 010 0199"
        }
    }

    /// The README's inbound walk-through, its `sh` block run as it stands (from the repository's
    /// root, with this instance's data directory and cluster port): an import fills CaseHug with
    /// the matters the sandbox holds in the four practice areas, a status change made in Smokeball
    /// as a firm user closes the CaseHug matter, and a contact edit there updates the client. The
    /// block prints how long CaseHug took to follow; printed here, not asserted.
    static func inboundWalkthrough(environment: [String: String], demo: [String: String]) throws {
        let readme = try String(
            contentsOf: TestEnvironment.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(
            readme.range(of: "### Inbound: Smokeball to CaseHug (the sandbox)").map { readme[$0.upperBound...] })
        let start = try #require(section.range(of: "```sh\n"))
        let end = try #require(section[start.upperBound...].range(of: "\n```"))
        let block = String(section[start.upperBound..<end.lowerBound])
        let host = try Connection(url: try #require(demo["SUPERUSER_DATABASE_URL"]))
        let sandbox = try Connection(url: try sandboxDatabaseURL(demo))
        let firm = try #require(demo["DEMO_FIRM_ID"])

        let output = try Processes.runTool(
            "/bin/bash",
            ["-e", "-o", "pipefail", "-c", "cd \"$REPO_ROOT\"\n" + block],
            environment: environment.merging(["REPO_ROOT": TestEnvironment.repositoryRoot.path]) { $1 })
        let follows = output.split(separator: "\n").compactMap { line in
            line.range(of: "CaseHug followed after").map { line[$0.lowerBound...] }
        }
        #expect(follows.count == 3, "\(output.suffix(2000))")
        for (what, line) in zip(["import job", "status change", "contact edit"], follows) {
            print("README inbound walk-through, \(what): \(line)")
        }

        // The import: every seeded matter of the four practice areas that is neither deleted nor
        // a lead, as the sandbox holds them, is a linked CaseHug matter; nothing else is.
        let expected = try sandbox.execute(
            """
            SELECT m.number FROM sb_matters m JOIN sb_matter_types t ON t.id = m.matter_type_id
            WHERE m.number LIKE 'SB-%' AND m.status <> 'Deleted' AND NOT m.is_lead
              AND t.category IN ('Family Law', 'Immigration', 'Personal Injury', 'Estate Planning')
            ORDER BY m.number
            """
        ).rows.map { try $0.string("number") }
        let imported = try host.execute(
            """
            SELECT case_number FROM matters
            WHERE firm_id = $1::uuid AND case_number LIKE 'SB-%' AND smokeball_link_status = 'confirmed'
            ORDER BY case_number
            """, [firm]
        ).rows.map { try $0.string("case_number") }
        #expect(!expected.isEmpty)
        #expect(imported == expected)
        let seeded = try sandbox.execute("SELECT count(*)::int8 AS n FROM sb_matters WHERE number LIKE 'SB-%'")
            .single().int("n")
        print("README inbound walk-through: \(imported.count) of \(seeded) seeded Smokeball matters imported")

        // The status change and the contact edit reached CaseHug (the block waited for both).
        let closed = try host.execute(
            """
            SELECT m.status, c.phone FROM matters m JOIN clients c ON c.id = m.client_id
            WHERE m.firm_id = $1::uuid AND m.case_number LIKE 'SB-%' AND c.phone = '312 555-0142'
            """, [firm]
        ).rows
        #expect(try closed.map { try $0.string("status") }.contains("closed"))
    }

    /// Every seeded upload has a real file of its seeded size in the document store, and the
    /// routes are told where that store is.
    static func checkDemoDocuments(data: String, demo: [String: String]) throws {
        let storageRoot = try #require(demo["STORAGE_ROOT"])
        #expect(storageRoot.hasSuffix("/storage") && storageRoot.hasPrefix("/"))
        let uploads = try Connection(url: try #require(demo["SUPERUSER_DATABASE_URL"])).execute(
            "SELECT storage_path, size_bytes FROM uploads WHERE firm_id = $1::uuid", [demo["DEMO_FIRM_ID"]]
        ).rows
        #expect(uploads.count >= 6)
        let store = DocumentStore(DocumentStoreConfiguration(location: .directory(storageRoot)))
        for upload in uploads {
            let path = try upload.string("storage_path")
            let document = try store.open(path)
            #expect(document.size == (try upload.int("size_bytes")), "\(path)")
            let head = [UInt8](try document.file.read(upToCount: 5) ?? Data())
            #expect(!path.hasSuffix(".pdf") || head == Array("%PDF-".utf8), "\(path)")
        }
        let statusPID = try String(contentsOfFile: data + "/run/pids/status-a.pid", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let environment = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(statusPID)/environ"))
            .split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        // A Bool first: #expect would print the environment, secrets and all.
        let routeHasStorageRoot = environment.contains("STORAGE_ROOT=" + storageRoot)
        #expect(routeHasStorageRoot)
    }

    @Test func scriptsRunPutsNoSecretOnAnyCommandLineAndGivesDemoEnvTheAppRole() throws {
        let data = NSTemporaryDirectory() + "casehug-run-" + ServiceDatabase.randomSuffix()
        let script = TestEnvironment.repositoryRoot.appendingPathComponent("scripts/run").path
        let environment = try TestEnvironment.scriptsRunEnvironment(dataDirectory: data)
        let watcher = CommandLineWatcher()
        watcher.start()
        var stopped = false
        defer {
            if !stopped {
                _ = watcher.stop()
                _ = try? Processes.runTool(script, ["--stop"], environment: environment)
            }
            try? FileManager.default.removeItem(atPath: data)
        }
        let started = Date()
        try Processes.runTool(script, ["--detach"], environment: environment)
        print(
            "scripts/run --detach (debug build, fresh cluster): \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
        )
        let secrets = try Self.readEnvFile(data + "/secrets.env")
        let demo = try Self.readEnvFile(data + "/demo.env")

        // demo.env's DATABASE_URL is what the routes read: the app role, which tenancy binds.
        // The superuser's URL has a name nothing reads by accident.
        func role(_ url: String?) throws -> (name: String, isSuperuser: Bool) {
            let row = try Connection(url: try #require(url)).execute(
                "SELECT current_user AS name, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).single()
            return (try row.string("name"), try row.bool("rolsuper"))
        }
        let app = try role(demo["DATABASE_URL"])
        #expect(app.name == "casehug_app" && !app.isSuperuser)
        // The job worker runs beside the routes as its own role.
        let worker = try role(demo["WORKER_DATABASE_URL"])
        #expect(worker.name == "casehug_worker" && !worker.isSuperuser)
        #expect(try role(demo["SUPERUSER_DATABASE_URL"]).isSuperuser)

        try Self.checkDemoDocuments(data: data, demo: demo)

        // The README's walkthrough: the connect link, the sandbox's sign-in, back to connected,
        // status shows the Smokeball firm, disconnect leaves the partner no subscription.
        try Self.connect(script: script, environment: environment, demo: demo)
        // casehug-admin's ops commands run against the instance with demo.env's ops role.
        let ops = try role(demo["CASEHUG_OPS_DATABASE_URL"])
        #expect(ops.name == "casehug_ops" && !ops.isSuperuser)
        let connections = try Processes.runTool(
            TestEnvironment.binDirectory + "/casehug-admin", ["connections", "--json"],
            environment: ["CASEHUG_OPS_DATABASE_URL": try #require(demo["CASEHUG_OPS_DATABASE_URL"])])
        let listed = try JSONSerialization.jsonObject(with: Data(connections.utf8)) as? [String: [[String: Any]]]
        #expect(listed?["connections"]?.map { $0["firm_id"] as? String } == [demo["DEMO_FIRM_ID"]])
        // Then the sync walk-through, the inbound one, and disconnect.
        try Self.syncWalkthrough(demo: demo)
        try Self.inboundWalkthrough(environment: environment, demo: demo)
        try Self.disconnect(demo: demo)
        // What the routes and the worker wrote to stderr holds no client's personal data.
        let logs = data + "/run/logs"
        for name in try FileManager.default.contentsOfDirectory(atPath: logs) {
            let text = try String(contentsOfFile: logs + "/" + name, encoding: .utf8)
            for phi in [
                "Avery", "avery.example@mail.test", "Example v. Example", "marriage-certificate", "555 010 0199",
                "demo/d1/",
            ] {
                let leaked = text.contains(phi)
                #expect(!leaked, "\(name) holds personal data")
            }
        }

        // While it is up, and through its stop (which stops the worker too).
        let workerPID = try #require(
            pid_t(
                try String(contentsOfFile: data + "/run/pids/worker-a.pid", encoding: .utf8).trimmingCharacters(
                    in: .whitespacesAndNewlines)))
        watcher.scan()
        try Processes.runTool(script, ["--stop"], environment: environment)
        #expect(Processes.hasExited(workerPID))
        let seen = watcher.stop()
        stopped = true

        var secretValues = Array(secrets.values)
        for (key, value) in demo
        where ["TOKEN", "SECRET", "PASSWORD", "KEY", "DATABASE_URL"].contains(where: key.contains) {
            secretValues.append(value)
        }
        #expect(secretValues.count >= 12)
        #expect(secretValues.allSatisfy { $0.count >= 16 })
        // The watcher did see the service: its routes name their sockets.
        #expect(seen.contains { $0.contains("--socket") && $0.contains(data) })
        #expect(seen.contains { $0.contains("/worker --workers") })
        func redacted(_ line: String) -> String {
            secretValues.reduce(line) { $0.replacingOccurrences(of: $1, with: "<secret>") }
        }
        for value in secretValues {
            // Redacted before #expect, which prints the values it compares.
            let shown = seen.filter { $0.contains(value) }.map(redacted)
            #expect(shown.isEmpty, "a secret was on these command lines")
        }
    }
}
