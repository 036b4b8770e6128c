import FastCGI
import Integration
import PostgreSQL

/// The benchmark's floor for a route that reads PostgreSQL: the status route's kind of
/// connection (the app role, the route options, the same pipelined read) and one `SELECT 1`
/// round trip per request, then a constant answer.
struct HelloDatabaseHandler: DatabaseHandler {
    let route = "hello-db"
    let database: Database

    init(configuration: Configuration) {
        database = Database(
            url: configuration.databaseURL, applicationName: "casehug-hello-db", options: configuration.databaseOptions)
    }

    func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        _ = try database.pipelinedRead([Statement("SELECT 1")])
        return Response.json(["hello": "db"])
    }
}
