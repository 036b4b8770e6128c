import Foundation
import HTTPClient
import Testing

/// `hello-db`, the benchmark's floor for a route that reads PostgreSQL, through real nginx and
/// its real executable: it must keep answering, and only after its database round trip, or
/// scripts/bench would compare status against nothing.
@Suite(.serialized) struct HelloDatabaseRouteTests {
    static let path = "/api/v1/integrations/smokeball/hello-db"

    @Test func helloDBAnswersItsConstantOnlyWhileItsDatabaseAnswers() throws {
        try ServiceDatabase.with { database in
            let service = try RunningService(routes: ["hello-db"], databaseURL: database.appURL, workers: 1)
            defer { service.stop() }
            let answer = try service.send("GET", Self.path)
            #expect(answer.status == 200)
            #expect(answer.jsonObject["hello"] as? String == "db")
            // The round trip went over the app role's session, as the status route's does.
            let sessions = try database.admin().execute(
                """
                SELECT count(*) AS n FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'casehug-hello-db' AND usename = 'casehug_app'
                """
            ).single().int("n")
            #expect(sessions >= 1)
            try database.takeOffline()
            defer { try? database.bringOnline() }
            let outage = try service.send("GET", Self.path)
            #expect(outage.status == 503)
            #expect(outage.errorCode == "database_unavailable")
        }
    }
}
