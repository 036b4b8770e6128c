import Basics
import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

#if canImport(Glibc)
    import Glibc
#endif

/// Inbound end to end: the sandbox's own dispatcher process (`smokeball-sandbox deliver`)
/// delivers through nginx to the real webhooks route, and the real `worker` processes the events.
@Suite(.serialized) struct WebhookDeliveryOrderTests {
    /// The sandbox's dispatcher as its own process, started with SIGTERM and SIGINT blocked, as
    /// a process spawned by a runtime that blocks them inherits them: a stop must still end it
    /// cleanly. They are blocked by a small exec wrapper (the mask survives exec), not in this
    /// test process, whose other threads spawn other tests' processes.
    static func dispatcher(sandboxDatabaseURL: String) throws -> KillableWorker {
        let executable = URL(fileURLWithPath: TestEnvironment.binDirectory).appendingPathComponent("smokeball-sandbox")
        return try KillableWorker(
            executableURL: URL(fileURLWithPath: "/usr/bin/python3"),
            arguments: [
                "-c",
                "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT}); "
                    + "os.execv(sys.argv[1], sys.argv[1:])",
                executable.path, "deliver",
            ],
            environment: ["SANDBOX_DATABASE_URL": sandboxDatabaseURL, "PATH": "/usr/bin:/bin"])
    }

    @Test("The sandbox's dispatcher stops cleanly on SIGTERM even when started with SIGTERM blocked")
    func dispatcherStopsOnSIGTERM() throws {
        let store = try SandboxEndToEndTests.SandboxStore()
        defer { store.drop() }
        let dispatcher = try Self.dispatcher(sandboxDatabaseURL: store.url)
        try Processes.waitFor("the dispatcher to start") { dispatcher.logText.contains("webhook_dispatcher_started") }
        try dispatcher.stop()
        #expect(dispatcher.process.terminationReason == Process.TerminationReason.exit)
        #expect(dispatcher.process.terminationStatus == 0)
        #expect(dispatcher.logText.contains("webhook_dispatcher_stopped"))
    }

    /// One firm user's change in Smokeball.
    enum Change: CustomStringConvertible {
        case status(matter: Int, String)
        case contact(Int, [String: Any])

        var description: String {
            switch self {
            case .status(let matter, let status): "matter \(matter) → \(status)"
            case .contact(let contact, let person): "contact \(contact) → \(person.keys.sorted())"
            }
        }
    }

    /// A seeded sequence of status changes and contact edits over `matters` and `contacts`.
    static func changes(seed: UInt64, matters: Int, contacts: Int, count: Int) -> [Change] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { index in
            if generator.chance(0.6) {
                return .status(
                    matter: Int.random(in: 0..<matters, using: &generator),
                    generator.pick(["Open", "Pending", "Closed", "Cancelled"]))
            }
            let contact = Int.random(in: 0..<contacts, using: &generator)
            switch Int.random(in: 0..<3, using: &generator) {
            case 0:
                return .contact(
                    contact,
                    [
                        "phone": [
                            "areaCode": "312", "number": "555-\(1000 + Int.random(in: 0..<9000, using: &generator))",
                        ]
                    ])
            case 1: return .contact(contact, ["lastName": generator.pick(["Hopper", "Lovelace", "Turing", "Noether"])])
            default: return .contact(contact, ["email": "edit\(index)@example.test"])
            }
        }
    }

    /// What a run left: CaseHug's rows (ids, timestamps and Smokeball's ids, which differ between
    /// two sandboxes, left out), the deliveries, the event rows and the order events arrived in.
    struct EndState {
        var matters: [String] = []
        var clients: [String] = []
        var deliveries = 0
        var eventRows = 0
        var arrivals: [String] = []
    }

    /// Connects a firm, imports the sandbox account's seeded matters, applies `changes` as firm
    /// users in Smokeball, then lets the dispatcher deliver everything (with the knobs as given)
    /// to the webhooks route and the worker process it.
    static func run(_ changes: [Change]?, seed: UInt64, duplicateAndShuffle: Bool) throws -> EndState {
        var state = EndState()
        try SmokeballSandbox.with(
            routes: ["webhooks", "status"],
            routeEnvironment: { _, sandboxURL in WebhooksEndToEndTests.sandboxRouteEnvironment(sandboxURL) }
        ) { sandbox in
            let flow = try ConnectionFlow(sandbox)
            try flow.connectFirm()
            let store = try Connection(url: sandbox.store.url)
            try store.execute(
                "UPDATE sb_webhook_subscriptions SET url = $1",
                [sandbox.service.baseURL + WebhooksEndToEndTests.path])
            for (what, count) in [("contacts", 6), ("matters", 12)] {
                let seeded = try sandbox.service.send(
                    "POST", "/_sandbox/accounts/\(sandbox.accountID)/\(what)/seed",
                    body: SmokeballSandbox.json(["count": count]), contentType: "application/json",
                    base: sandbox.url)
                try #require(seeded.status == 201)
            }
            let worker = try KillableWorker(
                executable: "worker", arguments: ["--workers", "2", "--backoff-seconds", "1"],
                environment: sandbox.environment([
                    "DATABASE_URL": sandbox.database.workerURL,
                    "TOKEN_ENCRYPTION_KEY": Data(ConnectionFlow.key).base64EncodedString(),
                    "SITE_URL": "https://casehug.test", "PATH": "/usr/bin:/bin",
                ]))
            defer { worker.kill9() }
            let host = flow.seed.connection
            let firm = flow.firm.id
            let job = try flow.database.transaction { connection in
                _ = try Tenancy.enter(connection, userID: flow.firm.admin)
                return try ImportMattersJob.enqueue(connection)
            }
            try Processes.waitFor("the import", timeout: 60) {
                try host.execute("SELECT status FROM jobs WHERE id = $1", [job]).single().string("status")
                    == "succeeded"
            }
            let matters = try host.execute(
                "SELECT smokeball_matter_id FROM matters WHERE firm_id = $1 ORDER BY case_number", [firm]
            ).rows.map { try $0.string("smokeball_matter_id") }
            let contacts = try host.execute(
                "SELECT smokeball_contact_id FROM clients WHERE firm_id = $1 AND smokeball_contact_id IS NOT NULL ORDER BY email",
                [firm]
            ).rows.map { try $0.string("smokeball_contact_id") }
            try #require(
                matters.count >= 3 && contacts.count >= 2, "\(matters.count) matters, \(contacts.count) contacts")
            let sequence =
                changes ?? Self.changes(seed: seed, matters: matters.count, contacts: contacts.count, count: 30)

            if duplicateAndShuffle {
                let knobs = try sandbox.service.send(
                    "POST", "/_sandbox/webhooks/knobs",
                    body: SmokeballSandbox.json([
                        "client_id": SmokeballSandbox.clientID, "duplicate": true, "shuffle": true,
                        // The run's seed orders the shuffled batches too: a failure replays whole.
                        "shuffle_seed": Int(seed % (1 << 53)),
                    ]),
                    contentType: "application/json", base: sandbox.url)
                try #require(knobs.status == 200)
            }
            for change in sequence {
                let (path, body): (String, [String: Any]) =
                    switch change {
                    case .status(let matter, let status):
                        ("matters/\(matters[matter])/status", ["status": status])
                    case .contact(let contact, let person):
                        ("contacts/\(contacts[contact])", ["changes": ["person": person]])
                    }
                let answer = try sandbox.service.send(
                    "POST", "/_sandbox/accounts/\(sandbox.accountID)/" + path, body: SmokeballSandbox.json(body),
                    contentType: "application/json", base: sandbox.url)
                try #require(answer.status == 200, "\(change): \(answer.status)")
            }

            // Everything is recorded in Smokeball before the dispatcher starts, so a shuffle
            // can reorder the whole sequence.
            let dispatcher = try Self.dispatcher(sandboxDatabaseURL: sandbox.store.url)
            func count(_ connection: Connection, _ sql: String, _ values: [any SQLValueConvertible]) throws -> Int {
                Int(try connection.execute(sql, values).single().int("n"))
            }
            try Processes.waitFor("every delivery made and processed", timeout: 120) {
                let events = try count(
                    store, "SELECT count(*)::int8 AS n FROM sb_events WHERE account_id = $1::uuid", [sandbox.accountID])
                let fannedOut = try count(
                    store, "SELECT count(DISTINCT event_id)::int8 AS n FROM sb_webhook_deliveries", [])
                let pending = try count(
                    store, "SELECT count(*)::int8 AS n FROM sb_webhook_deliveries WHERE status = 'pending'", [])
                let unprocessed = try count(
                    host,
                    "SELECT count(*)::int8 AS n FROM smokeball_webhook_events WHERE firm_id = $1 AND NOT processed",
                    [firm])
                let jobs = try count(
                    host,
                    "SELECT count(*)::int8 AS n FROM jobs WHERE firm_id = $1 AND status IN ('pending', 'running')",
                    [firm])
                return events > 0 && fannedOut == events && pending == 0 && unprocessed == 0 && jobs == 0
            }
            try dispatcher.stop()
            #expect(dispatcher.process.terminationStatus == 0)

            state.deliveries = try count(
                store, "SELECT count(*)::int8 AS n FROM sb_webhook_deliveries WHERE status = 'delivered'", [])
            #expect(
                try count(
                    store, "SELECT count(*)::int8 AS n FROM sb_webhook_deliveries WHERE status <> 'delivered'", [])
                    == 0)
            state.eventRows = try count(
                host, "SELECT count(*)::int8 AS n FROM smokeball_webhook_events WHERE firm_id = $1", [firm])
            #expect(
                try count(
                    host,
                    "SELECT count(*)::int8 AS n FROM smokeball_webhook_events WHERE firm_id = $1 AND status = 'failed'",
                    [firm]) == 0)
            state.arrivals = try host.execute(
                """
                SELECT event_type || ' ' || coalesce(resource_id, '') AS arrival FROM smokeball_webhook_events
                WHERE firm_id = $1 ORDER BY created_at, id
                """, [firm]
            ).rows.map { try $0.string("arrival") }
            state.matters = try host.execute(
                """
                SELECT (to_jsonb(m) - ARRAY['id', 'firm_id', 'client_id', 'created_at', 'updated_at',
                        'smokeball_matter_id', 'smokeball_synced_at', 'smokeball_version_id', 'smokeball_sent']
                    || jsonb_build_object(
                        'sent', m.smokeball_sent - 'clientIds' - 'externalSystemId', 'client_email', c.email,
                        'sent_as_itself', m.smokeball_sent ->> 'externalSystemId' = m.id::text))::text AS row
                FROM matters m LEFT JOIN clients c ON c.id = m.client_id
                WHERE m.firm_id = $1 ORDER BY m.case_number
                """, [firm]
            ).rows.map { try $0.string("row") }
            state.clients = try host.execute(
                """
                SELECT (to_jsonb(c) - ARRAY['id', 'firm_id', 'created_at', 'updated_at', 'smokeball_contact_id',
                        'smokeball_synced_at'])::text AS row
                FROM clients c WHERE c.firm_id = $1 ORDER BY c.email, c.last_name
                """, [firm]
            ).rows.map { try $0.string("row") }

            // The status route, end to end: what the delivery left.
            let status = try sandbox.service.send(
                "GET", "/api/v1/integrations/smokeball/status",
                token: TestEnvironment.token(subject: flow.firm.admin.uuidString))
            #expect(status.status == 200)
            let body = status.jsonObject
            let newest = try host.execute(
                "SELECT event_type FROM smokeball_webhook_events WHERE firm_id = $1 ORDER BY created_at DESC LIMIT 1",
                [firm]
            ).single().string("event_type")
            #expect((body["last_webhook"] as? [String: Any])?["event_type"] as? String == newest)
            let events = body["webhook_events"] as? [String: Any]
            #expect(events?["pending"] as? Int == 0 && events?["failed"] as? Int == 0)
            // The connect asked for a noop, and the dispatcher delivered it.
            #expect((body["webhook_delivery"] as? [String: Any])?["state"] as? String == "verified")
            let imported = try #require(body["import"] as? [String: Any])
            #expect(imported["job_id"] as? String == job.uuidString.lowercased())
            #expect(imported["status"] as? String == "succeeded")
            #expect((imported["progress"] as? [String: Any])?["done"] as? Int == 12)
            #expect((body["failed_links"] as? [String: Any])?["count"] as? Int == 0)
        }
        return state
    }

    @Test(
        "The sandbox's duplicate and shuffle knobs produce the same CaseHug end state as in-order delivery, and each delivery leaves one event row"
    )
    func duplicatesAndShuffleConverge() throws {
        let seed = SeededGenerator.seed(environment: "DELIVERY_ORDER_SEED", default: 0x5EED_0013)
        print("DELIVERY_ORDER_SEED=\(seed) replays this run's sequence of changes and its shuffled delivery order")
        let inOrder = try Self.run(nil, seed: seed, duplicateAndShuffle: false)
        let knobs = try Self.run(nil, seed: seed, duplicateAndShuffle: true)
        print("in order (\(inOrder.arrivals.count) events): \(inOrder.arrivals.map { $0.prefix(20) })")
        print("duplicated and shuffled (\(knobs.arrivals.count) events): \(knobs.arrivals.map { $0.prefix(20) })")
        #expect(inOrder.eventRows == inOrder.deliveries)
        #expect(knobs.eventRows == knobs.deliveries)
        #expect(knobs.deliveries == inOrder.deliveries)
        #expect(!inOrder.matters.isEmpty && inOrder.deliveries > 30)
        #expect(knobs.matters == inOrder.matters)
        #expect(knobs.clients == inOrder.clients)
    }
}
