import Foundation
import PostgreSQL
import TestSupport
import Testing

@testable import Integration

/// When Smokeball fails the subscription while the person waits, the callback still connects and
/// leaves the ensure to the background: the real `worker` executable runs it and the firm ends
/// with exactly one subscription.
@Suite(.serialized) struct WebhookRetryTests {
    @Test("a subscription that failed at connect time is ensured by the worker, once")
    func theWorkerEnsuresTheSubscription() throws {
        try ConnectionFlow.with { flow in
            let items = try flow.signedIn()
            try flow.sandbox.addFault(["path_prefix": "/webhooks", "status": 503])
            let landing = try ConnectionFlow.landing(flow.arrive(items))
            try flow.sandbox.clearFaults()
            #expect(landing == ["smokeball": "connected", "warning": "webhook_subscription_failed"])
            #expect(try flow.subscriptions().isEmpty)
            let pending = try flow.seed.connection.execute(
                "SELECT id, status FROM jobs WHERE firm_id = $1 AND kind = 'ensure_webhook_subscription'",
                [flow.firm.id]
            ).rows
            try #require(pending.count == 1)
            #expect(try pending[0].string("status") == "pending")
            let jobID = try pending[0].uuid("id")

            let worker = try KillableWorker(
                executable: "worker", arguments: ["--workers", "1"],
                environment: flow.sandbox.environment([
                    "DATABASE_URL": flow.sandbox.database.workerURL, "PATH": "/usr/bin:/bin",
                    "TOKEN_ENCRYPTION_KEY": Data(ConnectionFlow.key).base64EncodedString(),
                    "SMOKEBALL_WEBHOOK_URL": ConnectionFlow.redirects.webhookURL,
                ]))
            defer { try? worker.stop() }
            defer { if (try? flow.subscriptions().count) != 1 { print(worker.logText) } }
            try Processes.waitFor("the ensure job to finish", timeout: 60) {
                let status = try flow.seed.connection.execute("SELECT status FROM jobs WHERE id = $1", [jobID]).single()
                    .string("status")
                return status != "pending" && status != "running"
            }
            let job = try flow.seed.connection.execute(
                "SELECT status, result->>'subscription_id' AS id, (result->>'created')::boolean AS created FROM jobs WHERE id = $1",
                [jobID]
            ).single()
            #expect(try job.string("status") == "succeeded", "\(worker.logText)")
            #expect(try job.optionalBool("created") == true)
            let subscriptions = try flow.subscriptions()
            #expect(subscriptions.count == 1)
            #expect(subscriptions.first?.id == (try job.optionalString("id")))
            let stored = try #require(try flow.stored())
            #expect(subscriptions.first?.key == stored.webhookKey)
            #expect(try stored.row.optionalString("webhook_subscription_id") == subscriptions.first?.id)
        }
    }
}
