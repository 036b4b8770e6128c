import Foundation
import PostgreSQL
import Testing

/// Pipelined statements: one round trip, results in order, and the same all-or-nothing
/// behaviour as a transaction run statement by statement.
@Suite struct PipelineTests {
    @Test func resultsComeBackInOrderWithTheirParameters() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let results = try connection.pipeline([
                Statement("SELECT $1::int AS n", [1]), Statement("SELECT $1::text AS t", ["two"]),
                Statement("SELECT generate_series(1, $1::int) AS n", [3]),
            ])
            #expect(results.count == 3)
            #expect(try results[0].single().int("n") == 1)
            #expect(try results[1].single().string("t") == "two")
            #expect(results[2].rowCount == 3)
            // The connection is back in normal mode afterwards.
            #expect(try connection.execute("SELECT 4 AS n").single().int("n") == 4)
        }
    }

    @Test func tenantSettingsSpanThePipelinedTransaction() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let results = try connection.pipelinedTransaction(
                readOnly: true,
                [
                    Statement("SELECT set_config('app.firm_id', $1, true) AS v", ["firm-a"]),
                    Statement("SELECT current_setting('app.firm_id', true) AS v"),
                ])
            #expect(try results[1].single().string("v") == "firm-a")
            // Local to the transaction: gone once it committed.
            let after = try connection.execute("SELECT coalesce(current_setting('app.firm_id', true), '') AS v")
            #expect(try after.single().string("v") == "")
        }
    }

    @Test func withoutBeginThePipelineIsOneImplicitTransaction() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let results = try shared.pipelinedRead([
                Statement("SELECT set_config('app.firm_id', $1, true) AS v", ["firm-b"]),
                Statement("SELECT current_setting('app.firm_id', true) AS v, txid_current_if_assigned() AS x"),
                Statement("SELECT current_setting('app.firm_id', true) AS v"),
            ])
            #expect(try results[1].single().string("v") == "firm-b")
            #expect(try results[2].single().string("v") == "firm-b")
            // Ended at the sync: the next round trip starts clean.
            let after = try shared.pipelinedRead([
                Statement("SELECT coalesce(current_setting('app.firm_id', true), '') AS v")
            ])
            #expect(try after[0].single().string("v") == "")
        }
    }

    @Test func aPipelinedReadReconnectsAfterTheSessionDiesAndReportsAnOutage() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let pid = Statement("SELECT pg_backend_pid() AS pid")
            let first = try shared.pipelinedRead([pid])[0].single().int("pid")
            try database.terminateSessions()
            let second = try shared.pipelinedRead([pid])[0].single().int("pid")
            #expect(first != second)
            try database.takeOffline()
            #expect {
                _ = try shared.pipelinedRead([pid])
            } throws: { error in
                (error as? DatabaseError)?.isUnavailable == true
            }
            try database.bringOnline()
            #expect(try shared.pipelinedRead([pid])[0].single().int("pid") != second)
        }
    }

    @Test func aFailureMidwayRollsBackEverythingAndSkipsTheRest() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE items (id integer PRIMARY KEY)")
            try connection.execute("INSERT INTO items VALUES (1)")
            do {
                _ = try connection.pipelinedTransaction([
                    Statement("INSERT INTO items VALUES ($1)", [2]),
                    Statement("INSERT INTO items VALUES ($1)", [1]),
                    Statement("INSERT INTO items VALUES ($1)", [3]),
                ])
                Issue.record("a duplicate key went through")
            } catch {
                #expect((error as? DatabaseError)?.isUniqueViolation == true)
            }
            let ids = try connection.execute("SELECT id::bigint AS id FROM items ORDER BY id").rows.map {
                try $0.int("id")
            }
            #expect(ids == [1])
            // Still usable, and not left inside an aborted transaction.
            _ = try connection.pipelinedTransaction([Statement("INSERT INTO items VALUES ($1)", [4])])
            #expect(try connection.execute("SELECT count(*)::int AS n FROM items").single().int("n") == 2)
        }
    }

    @Test func eachSegmentIsATransactionOfItsOwnAndAFailureStaysInItsSegment() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE items (id integer PRIMARY KEY)")
            try connection.execute("INSERT INTO items VALUES (1)")
            do {
                _ = try connection.pipeline(segments: [
                    [Statement("INSERT INTO items VALUES ($1)", [2])],
                    [Statement("INSERT INTO items VALUES ($1)", [3]), Statement("INSERT INTO items VALUES ($1)", [1])],
                    [Statement("INSERT INTO items VALUES ($1)", [4])],
                ])
                Issue.record("a duplicate key went through")
            } catch {
                #expect((error as? DatabaseError)?.isUniqueViolation == true)
            }
            // The first and last segments committed; the failed one left nothing, not even 3.
            let ids = try connection.execute("SELECT id::bigint AS id FROM items ORDER BY id").rows.map {
                try $0.int("id")
            }
            #expect(ids == [1, 2, 4])
            #expect(try connection.execute("SELECT 5 AS n").single().int("n") == 5)
        }
    }

    @Test func anAutocommitBatchCommitsAtItsSyncThenRunsWhatFollows() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let other = try Connection(url: database.url)
            try other.execute("CREATE TABLE items (id integer PRIMARY KEY, firm text)")
            try other.execute("CREATE TABLE wakes (n integer)")
            let results = try shared.pipelinedAutocommit(
                [
                    Statement("SELECT set_config('app.firm_id', $1, true) AS v", ["firm-c"]),
                    Statement(
                        "INSERT INTO items VALUES ($1, current_setting('app.firm_id', true)) RETURNING firm", [1]),
                ],
                after: [Statement("INSERT INTO wakes SELECT count(*)::int FROM items")])
            #expect(results.count == 2)
            #expect(try results[1].single().string("firm") == "firm-c")
            // Committed before `after` ran (which saw the row), and visible to another session.
            #expect(try other.execute("SELECT n FROM wakes").single().int("n") == 1)
            #expect(try other.execute("SELECT firm FROM items").single().string("firm") == "firm-c")
            // The setting was local to the first transaction.
            let setting = try shared.pipelinedRead([
                Statement("SELECT coalesce(current_setting('app.firm_id', true), '') AS v")
            ])
            #expect(try setting[0].single().string("v") == "")
        }
    }

    @Test func aFailedAutocommitBatchWritesNothingAndThrowsItsOwnError() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let other = try Connection(url: database.url)
            try other.execute("CREATE TABLE items (id integer PRIMARY KEY)")
            try other.execute("CREATE TABLE wakes (n integer)")
            try other.execute("INSERT INTO items VALUES (1)")
            #expect {
                _ = try shared.pipelinedAutocommit(
                    [Statement("INSERT INTO items VALUES ($1)", [2]), Statement("INSERT INTO items VALUES ($1)", [1])],
                    after: [Statement("INSERT INTO wakes VALUES (1)")])
            } throws: { error in
                (error as? DatabaseError)?.isUniqueViolation == true
            }
            #expect(try other.execute("SELECT count(*)::int AS n FROM items").single().int("n") == 1)
            // What follows runs anyway (documented: it must be harmless either way).
            #expect(try other.execute("SELECT count(*)::int AS n FROM wakes").single().int("n") == 1)
            #expect(try shared.pipelinedAutocommit([Statement("INSERT INTO items VALUES ($1)", [3])]).count == 1)
            #expect(try other.execute("SELECT count(*)::int AS n FROM items").single().int("n") == 2)
        }
    }

    @Test func aCommitThatFailsAtTheSyncIsThrownAndWritesNothing() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let other = try Connection(url: database.url)
            // A deferred constraint is checked at COMMIT, i.e. while the server handles the sync.
            try other.execute(
                "CREATE TABLE items (id integer, CONSTRAINT items_once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)")
            try other.execute("CREATE TABLE wakes (n integer)")
            try other.execute("INSERT INTO items VALUES (1)")
            #expect {
                _ = try shared.pipelinedAutocommit(
                    [Statement("INSERT INTO items VALUES ($1)", [1])],
                    after: [Statement("INSERT INTO wakes VALUES (1)")])
            } throws: { error in
                (error as? DatabaseError)?.isUniqueViolation == true
            }
            #expect(try other.execute("SELECT count(*)::int AS n FROM items").single().int("n") == 1)
            #expect(try other.execute("SELECT count(*)::int AS n FROM wakes").single().int("n") == 1)
            // The session is still in step: the next batch's answers are its own.
            let next = try shared.pipelinedAutocommit([Statement("SELECT $1::int AS n", [7])])
            #expect(try next[0].single().int("n") == 7)
        }
    }

    @Test func aReadOnlyPipelineRefusesWrites() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            try connection.execute("CREATE TABLE items (id integer)")
            #expect {
                _ = try connection.pipelinedTransaction(readOnly: true, [Statement("INSERT INTO items VALUES (1)")])
            } throws: { error in
                (error as? DatabaseError)?.sqlState == "25006"
            }
            #expect(try connection.execute("SELECT count(*)::int AS n FROM items").single().int("n") == 0)
        }
    }

    @Test func aReadOnlyPipelineReconnectsAfterTheSessionDies() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let pid = Statement("SELECT pg_backend_pid() AS pid")
            let first = try shared.pipelinedTransaction(readOnly: true, [pid])[0].single().int("pid")
            try database.terminateSessions()
            let second = try shared.pipelinedTransaction(readOnly: true, [pid])[0].single().int("pid")
            #expect(first != second)
        }
    }

    @Test func anOutageIsUnavailableAndRecovers() throws {
        try TestDatabase.with { database in
            let shared = database.shared()
            let one = Statement("SELECT 1 AS n")
            _ = try shared.pipelinedTransaction(readOnly: true, [one])
            try database.takeOffline()
            #expect {
                _ = try shared.pipelinedTransaction(readOnly: true, [one])
            } throws: { error in
                (error as? DatabaseError)?.isUnavailable == true
            }
            try database.bringOnline()
            #expect(try shared.pipelinedTransaction(readOnly: true, [one])[0].single().int("n") == 1)
        }
    }
}

@Suite struct PreparedStatementTests {
    @Test func eachStatementIsPreparedOncePerSession() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            let statement = Statement("SELECT $1::int + 1 AS n", [1])
            for round in 1...3 {
                let results = try connection.pipeline([statement, Statement("SELECT $1::int + 1 AS n", [round])])
                #expect(try results[1].single().int("n") == Int64(round + 1))
            }
            let prepared = try connection.execute(
                "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = $1", [statement.sql])
            #expect(try prepared.single().int("n") == 1)
        }
    }

    @Test func aStatementThatDoesNotParseIsReportedAndNotCached() throws {
        try TestDatabase.with { database in
            let connection = try Connection(url: database.url)
            #expect {
                _ = try connection.pipeline([Statement("SELEKT 1")])
            } throws: { error in
                (error as? DatabaseError)?.sqlState == "42601"
            }
            #expect(
                try connection.execute("SELECT count(*)::int AS n FROM pg_prepared_statements").single().int("n") == 0)
            #expect(try connection.pipeline([Statement("SELECT 1 AS n")])[0].single().int("n") == 1)
        }
    }
}
