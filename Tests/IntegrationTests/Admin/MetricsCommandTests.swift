import Basics
import Cryptography
import FastCGI
import Foundation
import PostgreSQL
import Smokeball
import TestSupport
import Testing

@testable import Integration

/// `casehug-admin metrics`: valid Prometheus text whose values are the database's.
@Suite struct MetricsCommandTests {
    /// The text format's lines: `# HELP name text`, `# TYPE name counter|gauge`, and samples
    /// `name{label="value",...} number`. Returns the samples by `name{labels}`; records an issue
    /// for any line that is none of these, a sample before its family's TYPE, or a family split.
    static func parse(_ text: String) -> [String: Double] {
        let name = "[a-zA-Z_:][a-zA-Z0-9_:]*"
        let label = #"[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*""#
        let sample = try! Regex(
            "^(\(name))(\\{\(label)(?:,\(label))*\\})? (-?[0-9]+(?:\\.[0-9]+)?(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$")
        let help = try! Regex("^# HELP (\(name)) [^\\n]+$")
        let type = try! Regex("^# TYPE (\(name)) (counter|gauge)$")
        #expect(text.hasSuffix("\n"))
        var samples: [String: Double] = [:]
        var typed: Set<String> = []
        var current: String?
        var finished: Set<String> = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            let line = String(line)
            if let match = line.wholeMatch(of: type), let family = match.output[1].substring {
                #expect(!typed.contains(String(family)), "TYPE twice: \(line)")
                typed.insert(String(family))
                if let current, current != String(family) { finished.insert(current) }
                current = String(family)
            } else if line.wholeMatch(of: help) != nil {
                continue
            } else if let match = line.wholeMatch(of: sample), let family = match.output[1].substring,
                let value = match.output[3].substring
            {
                #expect(
                    typed.contains(String(family)) && current == String(family), "sample out of its family: \(line)")
                #expect(!finished.contains(String(family)))
                let key = String(line[..<line.lastIndex(of: " ")!])
                #expect(samples[key] == nil, "sample twice: \(line)")
                samples[key] = Double(value) ?? .nan
            } else {
                Issue.record("not exposition format: \(line)")
            }
        }
        return samples
    }

    @Test func metricsAreValidExpositionTextWhoseValuesAreTheRows() throws {
        try OpsFixture.with { fixture in
            // Firm A is connected with a webhook key; the webhooks handler is the route's own.
            let webhooks = try WebhookFixture(fixture.database)
            let a = webhooks.firm
            try webhooks.connect(a, account: webhooks.accountID, key: webhooks.key)
            let b = try fixture.seed.firm("B")
            let c = try fixture.seed.firm("C")
            try fixture.connect(b, needsReconnect: "invalid_grant")
            try fixture.connect(c, active: false)

            try fixture.job(a, key: "matter:1", status: "pending")
            try fixture.job(a, key: "matter:2", status: "pending", waitingSeconds: 30)
            try fixture.job(b, kind: "push_contact", key: "contact:1", status: "pending", waitingSeconds: 120)
            try fixture.job(b, kind: "push_contact", key: "contact:2", status: "pending", waitingSeconds: -3600)
            try fixture.job(a, kind: "pull_matters", status: "running")
            // Stored as finished: no outcome is counted for them (nothing finished them).
            try fixture.job(a, status: "dead")
            try fixture.job(a, status: "succeeded", finishedSecondsAgo: 3600)
            // Finished now, as the worker's update finishes them: counted.
            for (firm, kind, outcome) in [
                (a, "sync_matter", "succeeded"), (b, "sync_matter", "succeeded"), (a, "sync_matter", "superseded"),
                (b, "push_contact", "dead"),
            ] {
                let id = try fixture.job(firm, kind: kind, status: "pending")
                try fixture.seed.connection.execute(
                    "UPDATE jobs SET status = $2, finished_at = now() WHERE id = $1", [id, outcome])
            }

            var events: [UUID] = []
            for (processed, status, minutesAgo) in [
                (false, nil, 0.0), (false, nil, 10.0), (false, nil, 1.5), (true, "applied", 2.0), (true, "failed", 3.0),
                (true, "applied", 60.0),
            ] as [(Bool, String?, Double)] {
                let id = UUID()
                try fixture.seed.asFirm(a) { connection in
                    try connection.execute(
                        """
                        INSERT INTO smokeball_webhook_events (id, firm_id, event_type, payload, dedupe_key, processed,
                            processed_at, status, created_at, run_after)
                        VALUES ($5, $1, 'matter.updated', '{}', gen_random_uuid()::text, $2,
                            CASE WHEN $2 THEN now() END, $3, now() - make_interval(secs => $4),
                            now() - make_interval(secs => $4))
                        """, [a, processed, status, minutesAgo * 60, id])
                }
                events.append(id)
            }
            // Processed now, as the worker records it: counted.
            try fixture.seed.connection.execute(
                "UPDATE smokeball_webhook_events SET processed = true, processed_at = now(), status = 'stale' WHERE id = $1",
                [events[2]])

            // Refused deliveries, through the webhooks handler itself.
            let now = DotNetTicks.from(Date())
            var missing = webhooks.headers(ticks: now)
            missing["signature"] = nil
            for (headers, body, expected) in [
                (missing, WebhookFixture.body(), 401),
                (webhooks.headers(ticks: now, key: "wrong-key"), WebhookFixture.body(), 401),
                (webhooks.headers(ticks: now, key: "another-wrong-key"), WebhookFixture.body(), 401),
                (webhooks.headers(ticks: now - 3600 * 10_000_000), WebhookFixture.body(), 401),
                (webhooks.headers(ticks: now), WebhookFixture.body(account: "nobody-has-this-account"), 200),
                // One accepted: stored, its own work item.
                (webhooks.headers(ticks: now), WebhookFixture.body(), 200),
            ] {
                #expect(webhooks.deliver(body, headers: headers).status.code == expected)
            }

            let app = try Connection(url: fixture.database.appURL)
            for _ in 0..<5 {
                _ = try app.execute("SELECT smokeball_take_token('client-x', 0.001, 4, true)")
            }
            for _ in 0..<2 { _ = try app.execute("SELECT smokeball_record_rate_limited('client-x')") }

            // The server's statistics take in a session's inserts when it goes idle (up to 10 s
            // later) or ends: the seed's session asks for it now, the route's session ends.
            try fixture.seed.connection.execute("SELECT pg_stat_force_next_flush()")
            webhooks.app.disconnect()
            var samples: [String: Double] = [:]
            try Processes.waitFor("the stored deliveries to reach the statistics") {
                samples = Self.parse(try fixture.run(["metrics"]))
                return samples["casehug_webhooks_accepted_total"] == 7
            }
            let expected: [String: Double] = [
                #"casehug_jobs{kind="sync_matter",state="pending"}"#: 2,
                #"casehug_jobs{kind="push_contact",state="pending"}"#: 2,
                // The unprocessed events (two stored here, one delivered): each is its own work item.
                #"casehug_jobs{kind="process_webhook_event",state="pending"}"#: 3,
                #"casehug_jobs{kind="pull_matters",state="running"}"#: 1,
                #"casehug_jobs{kind="sync_matter",state="dead"}"#: 1,
                #"casehug_jobs{kind="push_contact",state="dead"}"#: 1,
                #"casehug_jobs_finished_total{kind="sync_matter",outcome="succeeded"}"#: 2,
                #"casehug_jobs_finished_total{kind="sync_matter",outcome="superseded"}"#: 1,
                #"casehug_jobs_finished_total{kind="push_contact",outcome="dead"}"#: 1,
                "casehug_webhooks_accepted_total": 7,
                #"casehug_webhook_events_processed_total{status="stale"}"#: 1,
                #"casehug_webhook_events_open{state="unprocessed"}"#: 3,
                #"casehug_webhook_events_open{state="failed"}"#: 1,
                #"casehug_webhooks_refused_total{reason="signature_missing"}"#: 1,
                #"casehug_webhooks_refused_total{reason="signature_mismatch"}"#: 2,
                #"casehug_webhooks_refused_total{reason="timestamp_skew"}"#: 1,
                #"casehug_webhooks_refused_total{reason="unknown_account"}"#: 1,
                #"casehug_rate_budget_capacity{client_id="client-x"}"#: 4,
                #"casehug_rate_budget_taken_total{client_id="client-x"}"#: 4,
                #"casehug_rate_budget_waits_total{client_id="client-x"}"#: 1,
                #"casehug_smokeball_rate_limited_total{client_id="client-x"}"#: 2,
                #"casehug_connections{state="connected"}"#: 1,
                #"casehug_connections{state="needs_reconnect"}"#: 1,
                #"casehug_connections{state="disconnected"}"#: 1,
            ]
            for (key, value) in expected.sorted(by: { $0.key < $1.key }) {
                #expect(samples[key] == value, "\(key)")
            }
            let unexpected = Set(samples.keys).subtracting(expected.keys).subtracting([
                #"casehug_rate_budget_tokens{client_id="client-x"}"#, "casehug_oldest_pending_job_age_seconds",
                "casehug_metrics_query_seconds",
            ])
            #expect(unexpected.isEmpty, "\(unexpected)")
            // The event due 10 minutes ago waited longest: longer than the push_contact job due 120 s
            // ago (the one in back-off is not due).
            let oldest = try #require(samples["casehug_oldest_pending_job_age_seconds"])
            #expect(oldest >= 600 && oldest < 3600)
            let tokens = try #require(samples[#"casehug_rate_budget_tokens{client_id="client-x"}"#])
            #expect(tokens >= 0 && tokens < 1)
            print("metrics statement: \(samples["casehug_metrics_query_seconds"] ?? -1) s")

            // As a textfile: renamed into place, nothing left beside it.
            let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
                "metrics-" + ServiceDatabase.randomSuffix())
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("casehug.prom").path
            _ = try fixture.run(["metrics", "--textfile", path])
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["casehug.prom"])
            let written = Self.parse(try String(contentsOfFile: path, encoding: .utf8))
            #expect(written[#"casehug_jobs{kind="sync_matter",state="dead"}"#] == 1)
        }
    }

    @Test func anEmptyDatabaseStillNamesEveryFamilyAndCountsZero() throws {
        try OpsFixture.with { fixture in
            let text = try fixture.run(["metrics"])
            let samples = Self.parse(text)
            for (name, _, _) in MetricsCommand.families {
                #expect(text.contains("# TYPE \(name) "))
            }
            #expect(samples["casehug_oldest_pending_job_age_seconds"] == 0)
            #expect(samples[#"casehug_webhooks_refused_total{reason="unknown_account"}"#] == 0)
            #expect(samples[#"casehug_connections{state="needs_reconnect"}"#] == 0)
        }
    }

    @Test func smokeballsTooManyRequestsAnswersAreCountedOnThePartnersBucket() throws {
        try SmokeballSandbox.with { sandbox in
            let client = try sandbox.client()
            let access = try sandbox.userAccess(client)
            try sandbox.addFault(["path_prefix": "/firm", "status": 429])
            #expect(throws: SmokeballError.self) { _ = try client.firm(access) }
            let text = try AdminCommand.run(
                ["metrics"], environment: ["CASEHUG_OPS_DATABASE_URL": sandbox.database.opsURL])
            let samples = Self.parse(text)
            let client429s = #"casehug_smokeball_rate_limited_total{client_id="\#(SmokeballSandbox.clientID)"}"#
            // The call and its two retries.
            #expect(samples[client429s] == 3)
            let taken = #"casehug_rate_budget_taken_total{client_id="\#(SmokeballSandbox.clientID)"}"#
            #expect((samples[taken] ?? 0) >= 3)
        }
    }

    @Test(arguments: [
        ("plain", [String: String](), 1.0, "plain 1"),
        ("x", ["b": "2", "a": #"q"u\o"# + "\n"], 0.25, #"x{a="q\"u\\o\n",b="2"} 0.25"#),
    ])
    func samplesEscapeLabelValuesAndSortLabels(name: String, labels: [String: String], value: Double, line: String)
        throws
    {
        #expect(try MetricsCommand.sample(name, labels, value) == line)
    }
}
