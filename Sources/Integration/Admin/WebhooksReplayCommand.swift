import Foundation
import PostgreSQL

/// `casehug-admin webhooks replay --firm F --since T --until T`: processes the firm's stored
/// webhook events received in [since, until) again. Idempotent: processing re-reads each
/// resource from Smokeball and applies it only when its versionId is newer than the one the
/// matter holds (migration 036), so a replay (or two) converges on Smokeball's newest state.
enum WebhooksReplayCommand {
    static func run(_ invocation: OpsCommand.Invocation) throws -> String {
        guard try invocation.word(0, "replay") == "replay" else {
            throw invocation.usageError("the webhooks command is: webhooks replay")
        }
        guard let firm = try invocation.firm() else { throw invocation.usageError("--firm is required") }
        let since = try time(invocation, "since")
        let until = try time(invocation, "until")
        guard since < until else {
            throw OpsError(code: "bad_range", message: "--since must be before --until")
        }
        let connection = try invocation.connect()
        try invocation.requireFirm(connection, firm)
        let events = try connection.execute(
            "SELECT ops_replay_webhooks($1, $2, $3) AS events", [firm, since, until]
        ).single().int("events")
        let table = OpsTable(
            name: "replayed", columns: ["firm_id", "since", "until", "events"],
            rows: [[.id(firm), .time(since), .time(until), .integer(events)]])
        return try table.render(json: invocation.json)
    }

    /// ISO 8601 with a zone (`2026-11-29T21:00:00Z`, fractions allowed).
    static func time(_ invocation: OpsCommand.Invocation, _ name: String) throws -> Date {
        guard let text = invocation.options[name] else { throw invocation.usageError("--\(name) is required") }
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = formatter.date(from: text) else {
            throw invocation.usageError("--\(name) must be an ISO 8601 time with a zone, e.g. 2026-11-29T21:00:00Z")
        }
        return date
    }
}
