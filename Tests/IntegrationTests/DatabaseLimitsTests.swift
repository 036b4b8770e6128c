import FastCGI
import Foundation
import Integration
import PostgreSQL
import Testing

/// The database's time limits as routes see them: configured from the environment, and a
/// statement or lock wait past its limit answers 503 with Retry-After (busy, not broken).
@Suite struct DatabaseLimitsTests {
    static let base = [
        "DATABASE_URL": "postgresql://app@localhost/db", "CASEHUG_JWT_SECRET": TestEnvironment.jwtSecret,
    ]

    @Test func aStatementPastItsTimeoutIsA503WithRetryAfter() throws {
        let connection = try Connection(
            url: TestEnvironment.adminURL, options: ConnectionOptions(statementTimeoutMilliseconds: 100))
        do {
            try connection.execute("SELECT pg_sleep(2)")
            Issue.record("the statement outlived its timeout")
        } catch {
            #expect(error.sqlState == "57014")
            let answer = error.httpError
            #expect(answer.status == .serviceUnavailable)
            #expect(answer.headers.contains { $0.0 == "Retry-After" })
            #expect(!answer.message.contains("57014"))
        }
        let lockTimeout = DatabaseError(.query, sqlState: "55P03").httpError
        #expect(lockTimeout.status == .serviceUnavailable)
        #expect(lockTimeout.headers.contains { $0.0 == "Retry-After" })
        #expect(DatabaseError(.query, sqlState: "23505").httpError.status.code == 500)
        #expect(DatabaseError(.invalidParameter, name: "$1").httpError.status.code == 400)
    }

    @Test func timeoutsDefaultToTheRouteLimitsAndCanBeSet() throws {
        let defaults = try Configuration.fromEnvironment(Self.base)
        #expect(defaults.databaseOptions == .routes)
        let set = try Configuration.fromEnvironment(
            Self.base.merging(
                [
                    "DATABASE_STATEMENT_TIMEOUT_MS": "2500", "DATABASE_LOCK_TIMEOUT_MS": "0",
                    "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS": "60000",
                ],
                uniquingKeysWith: { $1 }))
        #expect(set.databaseOptions.statementTimeoutMilliseconds == 2500)
        #expect(set.databaseOptions.lockTimeoutMilliseconds == 0)
        #expect(set.databaseOptions.idleInTransactionTimeoutMilliseconds == 60000)
        #expect(set.databaseOptions.refusesPrivilegedRoles)
    }

    @Test(arguments: ["10s", "-1", "+5", "1.5", "99999999999"])
    func aMalformedTimeoutIsAConfigurationErrorNamingTheVariable(value: String) throws {
        do {
            _ = try Configuration.fromEnvironment(
                Self.base.merging(["DATABASE_LOCK_TIMEOUT_MS": value], uniquingKeysWith: { $1 }))
            Issue.record("accepted \(value)")
        } catch {
            #expect(error.variable == "DATABASE_LOCK_TIMEOUT_MS")
            #expect(error.description.contains("milliseconds"))
            #expect(!error.description.contains(value))
        }
    }
}
