import Foundation
import PostgreSQL

/// `casehug-admin jobs list|retry|cancel`: the queue across firms (migration 030's states).
enum JobsCommand {
    static let states: Set<String> = ["pending", "running", "succeeded", "dead", "superseded"]

    static func run(_ invocation: OpsCommand.Invocation) throws -> String {
        switch try invocation.word(0, "list, retry or cancel") {
        case "list": return try list(invocation)
        case "retry": return try retry(invocation)
        case "cancel": return try cancel(invocation)
        case let other: throw invocation.usageError("unknown jobs command \(other)")
        }
    }

    /// Newest first. Without `--firm`, only pending, running and dead jobs (what an index holds
    /// across firms); with one, any state.
    static func list(_ invocation: OpsCommand.Invocation) throws -> String {
        let firm = try invocation.firm()
        let wanted = (invocation.options["status"] ?? "pending,running,dead").split(separator: ",").map(String.init)
        guard !wanted.isEmpty, wanted.allSatisfy(states.contains) else {
            throw invocation.usageError("--status takes states from \(states.sorted().joined(separator: ", "))")
        }
        if firm == nil, !wanted.allSatisfy(["pending", "running", "dead"].contains) {
            throw invocation.usageError("--status succeeded or superseded needs --firm")
        }
        let limit: Int
        do {
            limit = try invocation.options.integer("limit", in: 1...10_000) ?? 100
        } catch {
            throw invocation.usageError(error.message)
        }
        let connection = try invocation.connect()
        if let firm { try invocation.requireFirm(connection, firm) }
        var table = OpsTable(
            name: "jobs",
            columns: [
                "id", "firm_id", "kind", "status", "priority", "attempts", "max_attempts", "run_after", "created_at",
                "finished_at", "last_error",
            ])
        let rows = try connection.execute(
            "SELECT * FROM ops_jobs($1, string_to_array($2, ','), $3, $4)",
            [firm, wanted.joined(separator: ","), invocation.options["kind"], limit]
        ).rows
        for row in rows {
            table.rows.append([
                .id(try row.uuid("id")), .id(try row.uuid("firm_id")), .text(try row.string("kind")),
                .text(try row.string("status")), .integer(try row.int("priority")), .integer(try row.int("attempts")),
                .integer(try row.int("max_attempts")), .time(try row.date("run_after")),
                .time(try row.date("created_at")), .time(try row.optionalDate("finished_at")),
                .text(try row.optionalString("last_error")),
            ])
        }
        return try table.render(json: invocation.json)
    }

    /// A dead job runs again from scratch; a pending one waiting out a back-off runs now.
    static func retry(_ invocation: OpsCommand.Invocation) throws -> String {
        let job = try invocation.uuid(try invocation.word(1, "JOB_ID"), "JOB_ID")
        let connection = try invocation.connect()
        guard let row = try connection.execute("SELECT was, job_id FROM ops_retry_job($1)", [job]).first else {
            throw OpsError(code: "unknown_job", message: "no job \(job.uuidString.lowercased())")
        }
        let was = try row.string("was")
        guard let pending = try row.optionalUUID("job_id") else {
            throw OpsError(code: "not_retryable", message: "the job is \(was): only a dead or pending job is retried")
        }
        let table = OpsTable(
            name: "retried", columns: ["job_id", "was", "pending_job_id"],
            rows: [[.id(job), .text(was), .id(pending)]])
        return try table.render(json: invocation.json)
    }

    /// A pending job becomes dead ("cancelled by an operator"); it can be retried later.
    static func cancel(_ invocation: OpsCommand.Invocation) throws -> String {
        let job = try invocation.uuid(try invocation.word(1, "JOB_ID"), "JOB_ID")
        let connection = try invocation.connect()
        guard let row = try connection.execute("SELECT was, now_status FROM ops_cancel_job($1)", [job]).first else {
            throw OpsError(code: "unknown_job", message: "no job \(job.uuidString.lowercased())")
        }
        let was = try row.string("was")
        guard was == "pending" else {
            throw OpsError(
                code: "not_cancellable",
                message:
                    "the job is \(was): only a pending job is cancelled (a running one finishes or its lease lapses)")
        }
        let table = OpsTable(
            name: "cancelled", columns: ["job_id", "was", "status"],
            rows: [[.id(job), .text(was), .text(try row.string("now_status"))]])
        return try table.render(json: invocation.json)
    }
}
