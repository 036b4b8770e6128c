import Foundation
import PostgreSQL

/// `casehug-admin metrics [--textfile PATH]`: the service's figures in the Prometheus text
/// format, for node_exporter's textfile collector. One statement (`ops_metrics`, migration 043)
/// reads them all, through indexes and small tables; what it cost is printed too
/// (`casehug_metrics_query_seconds`). With `--textfile` the text is written next to PATH and
/// renamed over it, so the collector never reads half a file.
enum MetricsCommand {
    /// Every family, in print order: (name, type, help).
    static let families: [(String, String, String)] = [
        ("casehug_jobs", "gauge", "Jobs by kind and state (pending, running, dead)."),
        (
            "casehug_jobs_finished_total", "counter",
            "Jobs that reached an outcome (succeeded, dead, superseded), by kind and outcome."
        ),
        ("casehug_oldest_pending_job_age_seconds", "gauge", "How long the longest-waiting due pending job has waited."),
        (
            "casehug_webhooks_accepted_total", "counter",
            "Webhook deliveries stored (rows inserted; restarts with the server's statistics)."
        ),
        (
            "casehug_webhook_events_processed_total", "counter",
            "Webhook events processed, by outcome (applied, echo, stale, ignored, failed)."
        ),
        ("casehug_webhook_events_open", "gauge", "Stored webhook events not yet processed, and those that failed."),
        (
            "casehug_webhooks_refused_total", "counter",
            "Webhook deliveries refused (bad signature, skewed clock) or ignored (unknown account), by reason."
        ),
        ("casehug_rate_budget_tokens", "gauge", "Tokens in the partner's Smokeball rate bucket now."),
        ("casehug_rate_budget_capacity", "gauge", "Tokens the partner's Smokeball rate bucket holds at most."),
        ("casehug_rate_budget_taken_total", "counter", "Smokeball calls that took a token from the bucket."),
        ("casehug_rate_budget_waits_total", "counter", "Times a caller found the bucket empty and had to wait."),
        ("casehug_smokeball_rate_limited_total", "counter", "429 answers from Smokeball."),
        ("casehug_connections", "gauge", "Smokeball connections by state (connected, needs_reconnect, disconnected)."),
        ("casehug_metrics_query_seconds", "gauge", "How long the metrics statement took."),
    ]

    static func run(_ invocation: OpsCommand.Invocation) throws -> String {
        let connection = try invocation.connect()
        let started = Date()
        let rows = try connection.execute("SELECT metric, labels, value FROM ops_metrics()").rows
        let elapsed = Date().timeIntervalSince(started)
        var samples: [String: [String]] = [:]
        for row in rows {
            let labels = try row.json("labels") as? [String: Any] ?? [:]
            let name = try row.string("metric")
            samples[name, default: []].append(try sample(name, labels.mapValues { "\($0)" }, try row.double("value")))
        }
        samples["casehug_metrics_query_seconds"] = [try sample("casehug_metrics_query_seconds", [:], elapsed)]
        var lines: [String] = []
        for (name, type, help) in families {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            lines.append(contentsOf: (samples[name] ?? []).sorted())
        }
        let text = lines.joined(separator: "\n") + "\n"
        guard let path = invocation.options["textfile"] else { return text }
        let temporary = path + ".tmp"
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else {
            throw OpsError(code: "textfile", message: "could not rename the new file over \(path)")
        }
        return "metrics written to \(path)"
    }

    /// `name{label="value",...} value`, labels sorted, values escaped as the format says.
    static func sample(_ name: String, _ labels: [String: String], _ value: Double) throws -> String {
        let rendered = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(escape($0.value))\"" }
        let suffix = rendered.isEmpty ? "" : "{" + rendered.joined(separator: ",") + "}"
        return "\(name)\(suffix) \(format(value))"
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Whole numbers without a fraction; the rest as Swift prints a Double (valid Go float syntax).
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
