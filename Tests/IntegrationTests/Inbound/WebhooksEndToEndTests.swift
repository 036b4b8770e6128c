import Basics
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

/// The webhooks route as a real FastCGI process behind the project's nginx.
@Suite struct WebhooksEndToEndTests {
    static let path = "/api/v1/integrations/smokeball/webhooks"

    static func routeEnvironment(clientID: String, extra: [String: String] = [:]) -> [String: String] {
        [
            "TOKEN_ENCRYPTION_KEY": Data(WebhookFixture.vaultKey).base64EncodedString(),
            "SMOKEBALL_CLIENT_ID": clientID, "SMOKEBALL_CLIENT_SECRET": "webhook-tests-secret",
            "SMOKEBALL_API_KEY": "webhook-tests-api-key",
        ].merging(extra) { $1 }
    }

    /// The routes' environment against the sandbox: its client, its keys, its URLs.
    static func sandboxRouteEnvironment(_ sandboxURL: String?) -> [String: String] {
        routeEnvironment(
            clientID: SmokeballSandbox.clientID,
            extra: [
                "TOKEN_ENCRYPTION_KEY": Data(ConnectionFlow.key).base64EncodedString(),
                "SMOKEBALL_CLIENT_SECRET": SmokeballSandbox.clientSecret,
                "SMOKEBALL_API_KEY": SmokeballSandbox.apiKey,
                "SMOKEBALL_AUTH_BASE_URL": sandboxURL ?? "", "SMOKEBALL_API_BASE_URL": sandboxURL ?? "",
            ])
    }

    static func send(_ service: RunningService, _ body: [UInt8], headers: [String: String]) throws -> HTTPResponse {
        try service.send("POST", path, headers: headers.map { ($0.key, $0.value) }, body: body)
    }

    @Test(
        "Through nginx: 100 concurrent copies of a delivery leave 1 row and 1 job, 413 over 256 KiB, rejections logged by reason without secrets"
    )
    func throughNginx() throws {
        try ServiceDatabase.with { database in
            let fixture = try WebhookFixture(database)
            try fixture.connect(fixture.firm, account: fixture.accountID, key: fixture.key)
            let service = try RunningService(routes: ["webhooks"], databaseURL: database.appURL, workers: 4) { _, _ in
                Self.routeEnvironment(clientID: WebhookFixture.factsClientID)
            }
            defer { service.stop() }
            let ticks = DotNetTicks.from(Date())
            let headers = fixture.headers(ticks: ticks)
            let body = Array(WebhookFixture.body().utf8)
            let statuses = Locked<[Int]>([])
            let url = service.baseURL + Self.path
            let fields = headers.map { ($0.key, $0.value) }
            DispatchQueue.concurrentPerform(iterations: 100) { _ in
                let status =
                    (try? HTTPClient().send(
                        HTTPRequest(method: "POST", url: url, headers: fields, body: body, timeout: 15)
                    ).status) ?? -1
                statuses.withLock { $0.append(status) }
            }
            #expect(statuses.value.count == 100 && statuses.value.allSatisfy { $0 == 200 })
            #expect(try fixture.events().count == 1)
            #expect(try fixture.jobs().count == 1)

            // nginx refuses the body before the route sees it.
            let big = try Self.send(
                service, body + [UInt8](repeating: 0x20, count: 256 * 1024), headers: fixture.headers(ticks: ticks))
            #expect(big.status == 413)
            let atLimit = try Self.send(
                service, body + [UInt8](repeating: 0x20, count: 256 * 1024 - body.count),
                headers: fixture.headers(ticks: ticks))
            #expect(atLimit.status == 200)

            var missing = fixture.headers(ticks: ticks)
            missing["Signature"] = nil
            missing["signature"] = nil
            let wrong = fixture.headers(ticks: ticks, key: "not-the-key")
            let skewed = fixture.headers(ticks: ticks - WebhooksHandler.timestampTolerance - 10_000_000)
            var signatures = [headers["signature"]!, wrong["signature"]!, skewed["signature"]!]
            for rejected in [missing, wrong, skewed] {
                #expect(try Self.send(service, body, headers: rejected).status == 401)
            }
            signatures.append(fixture.headers(ticks: ticks)["signature"]!)
            let lines = service.logLines("webhooks")
            let reasons = lines.filter { $0.contains("\"webhook_rejected\"") }
            for reason in ["signature_missing", "signature_mismatch", "timestamp_skew"] {
                #expect(reasons.contains { $0.contains("\"\(reason)\"") }, "\(reason)")
            }
            // The accepted delivery's outcome is on its request line, with the request id.
            #expect(lines.contains { $0.contains(#""webhook":"accepted""#) && $0.contains(#""event":"request""#) })
            for secret in [fixture.key, "not-the-key"] + signatures {
                #expect(!lines.contains { $0.contains(secret) })
            }
        }
    }

    @Test(
        "The sandbox's dispatcher process delivers a noop from POST /webhooks/{id}/notify, signed with the key the callback stored; after a reconnect the old key is kept as the previous one"
    )
    func fromTheSandboxDispatcher() throws {
        try SmokeballSandbox.with(
            routes: ["webhooks"],
            routeEnvironment: { _, sandboxURL in
                Self.sandboxRouteEnvironment(sandboxURL)
            }
        ) { sandbox in
            let flow = try ConnectionFlow(sandbox)
            try flow.connectFirm()
            let first = try #require(try flow.stored())
            // The reconnect keeps the key it replaces, sealed under its own column's name.
            try flow.connectFirm()
            let second = try #require(try flow.stored())
            #expect(second.webhookKey != first.webhookKey)
            let previous = try #require(try second.row.optionalBytes("previous_webhook_secret"))
            #expect(
                try flow.vault.open(
                    previous, firmID: flow.firm.id, platform: "smokeball", column: .previousWebhookSecret)
                    == first.webhookKey)
            #expect(
                (try? flow.vault.open(previous, firmID: flow.firm.id, platform: "smokeball", column: .webhookSecret))
                    == nil)
            #expect(try second.row.optionalDate("webhook_secret_rotated_at") != nil)

            let store = try Connection(url: sandbox.store.url)
            try store.execute(
                "UPDATE sb_webhook_subscriptions SET url = $1", [sandbox.service.baseURL + Self.path])
            let subscription = try #require(try flow.subscriptions().first)
            // Each ensure of the subscription (connect, reconnect) asked for a noop too: this test
            // follows its own, by the RequestId it sent.
            let notified = try sandbox.client().notifyWebhookSubscription(
                id: subscription.id, access: .user(second.accessToken)
            ).requestID

            let dispatcher = Process()
            dispatcher.executableURL = URL(fileURLWithPath: TestEnvironment.binDirectory)
                .appendingPathComponent("smokeball-sandbox")
            dispatcher.arguments = ["deliver"]
            dispatcher.environment = ["SANDBOX_DATABASE_URL": sandbox.store.url, "PATH": "/usr/bin:/bin"]
            dispatcher.standardOutput = FileHandle.nullDevice
            dispatcher.standardError = FileHandle.nullDevice
            try dispatcher.run()
            defer {
                // SIGKILL: the test process's blocked signals are inherited, SIGTERM may not arrive.
                kill(dispatcher.processIdentifier, SIGKILL)
                dispatcher.waitUntilExit()
            }
            let seed = flow.seed
            func events() throws -> [Row] {
                try seed.connection.execute(
                    """
                    SELECT id, firm_id, event_type, smokeball_request_id FROM smokeball_webhook_events
                    WHERE smokeball_request_id = $1
                    """, [notified]
                ).rows
            }
            func deliveries() throws -> [String] {
                try store.execute(
                    "SELECT status FROM sb_webhook_deliveries WHERE event_type = 'noop' AND request_id = $1", [notified]
                ).rows.map { try $0.string("status") }
            }
            try Processes.waitFor("the noop delivery", timeout: 30) {
                try !events().isEmpty && deliveries() != ["pending"]
            }
            let event = try #require(try events().first)
            #expect(try events().count == 1)
            #expect(try event.string("event_type") == "noop")
            #expect(try event.uuid("firm_id") == flow.firm.id)
            #expect(try deliveries() == ["delivered"])
            // The stored event is its own work item: no job beside it.
            let jobs = try seed.connection.execute(
                "SELECT key FROM jobs WHERE kind = $1", [InboundJobs.processWebhookEvent]
            ).rows
            #expect(jobs.isEmpty)
        }
    }
}
