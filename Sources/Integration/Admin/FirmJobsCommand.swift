import Foundation
import PostgreSQL

/// `casehug-admin resync FIRM` and `import FIRM`: the firm-wide jobs a firm admin can start from
/// the sync route, started by an operator. `resync` sends every matter to Smokeball again
/// (`sync_matters`, all) and pulls what changed there (`pull_matters`); `import` imports the
/// firm's existing Smokeball matters (`import_matters`). Keys coalesce: a repeat while the job is
/// pending joins it.
enum FirmJobsCommand {
    struct Wanted {
        let kind: String
        let key: String
        let payload: String
    }

    static func run(_ invocation: OpsCommand.Invocation) throws -> String {
        let firm = try invocation.uuid(try invocation.word(0, "FIRM_ID"), "FIRM_ID")
        let wanted: [Wanted] =
            invocation.command == "import"
            ? [Wanted(kind: ImportMattersJob.kind, key: ImportMattersJob.key, payload: "{}")]
            : [
                Wanted(kind: SyncJobs.syncMatters, key: SyncJobs.allMattersKey, payload: #"{"all": true}"#),
                Wanted(kind: SyncJobs.pullMatters, key: SyncJobs.firmKey, payload: "{}"),
            ]
        let connection = try invocation.connect()
        var table = OpsTable(name: "enqueued", columns: ["firm_id", "kind", "job_id"])
        try connection.transaction { connection in
            for job in wanted {
                let row = try connection.execute(
                    "SELECT job_id, problem FROM ops_enqueue_firm_job($1, $2, $3, $4::jsonb, 2::smallint)",
                    [firm, job.kind, job.key, job.payload]
                ).single()
                if let problem = try row.optionalString("problem") {
                    throw OpsError(
                        code: problem,
                        message: problem == "unknown_firm"
                            ? "no firm \(firm.uuidString.lowercased())"
                            : "the firm has no active Smokeball connection")
                }
                table.rows.append([.id(firm), .text(job.kind), .id(try row.uuid("job_id"))])
            }
        }
        return try table.render(json: invocation.json)
    }
}
