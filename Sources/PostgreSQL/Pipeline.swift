import CLibPQ

/// One parameterised statement for a pipeline.
public struct Statement {
    public let sql: String
    public let parameters: [any SQLValueConvertible]

    public init(_ sql: String, _ parameters: [any SQLValueConvertible] = []) {
        self.sql = sql
        self.parameters = parameters
    }
}

extension Connection {
    /// Sends every statement, then one sync, and reads all the answers: one network round trip
    /// instead of one per statement (libpq pipeline mode). Statements run in order; after the
    /// first failure the server skips the rest, and that failure is thrown.
    ///
    /// Without an explicit `BEGIN` the statements form one implicit transaction; with one, the
    /// caller ends it (see `pipelinedTransaction`).
    ///
    /// Each distinct SQL text is prepared once per session (its first use costs one extra
    /// round trip), so the server parses and plans it once instead of on every request;
    /// planning was half of PostgreSQL's time per status request. Not behind a
    /// transaction-mode pooler (`ConnectionOptions.transactionPooling`).
    ///
    /// When the server no longer accepts a prepared statement (a migration changed the result
    /// type of a cached plan, SQLSTATE 0A000, or the statement is gone, 26000), the session is
    /// marked unusable so its owner replaces it together with its cache (see `Database`).
    public func pipeline(_ statements: [Statement]) throws(DatabaseError) -> [QueryResult] {
        try pipeline(segments: [statements])[0]
    }

    /// `pipeline` with a sync after each segment, still one round trip: each segment is an
    /// implicit transaction of its own, committed at its sync. A failure skips the rest of its
    /// own segment only; the later segments still run, and the first failure is thrown after
    /// every answer has been read.
    public func pipeline(segments: [[Statement]]) throws(DatabaseError) -> [[QueryResult]] {
        try checkProcess()
        // Encoded first: a parameter that cannot be sent stops the batch before anything is.
        var encoded: [[EncodedParameters]] = []
        for segment in segments {
            var parameters: [EncodedParameters] = []
            for statement in segment { parameters.append(try EncodedParameters(statement.parameters)) }
            encoded.append(parameters)
        }
        var names: [[String?]] = []
        for segment in segments {
            var segmentNames: [String?] = []
            for statement in segment { segmentNames.append(try preparedName(for: statement)) }
            names.append(segmentNames)
        }
        guard PQenterPipelineMode(handle) == 1 else { throw DatabaseError(isConnected ? .query : .connectionLost) }
        // Leaving pipeline mode fails only while answers are still pending, i.e. when the
        // connection broke part-way; such a session is dropped rather than reused.
        defer { if PQexitPipelineMode(handle) != 1 { isPoisoned = true } }
        for (segmentIndex, segment) in segments.enumerated() {
            for (index, statement) in segment.enumerated() {
                let sent = encoded[segmentIndex][index].withPointers { count, values, lengths, formats in
                    if let name = names[segmentIndex][index] {
                        PQsendQueryPrepared(handle, name, count, values, lengths, formats, 0)
                    } else {
                        PQsendQueryParams(handle, statement.sql, count, nil, values, lengths, formats, 0)
                    }
                }
                guard sent == 1 else { throw DatabaseError(isConnected ? .query : .connectionLost) }
            }
            guard PQpipelineSync(handle) == 1 else { throw DatabaseError(isConnected ? .query : .connectionLost) }
        }
        guard PQflush(handle) == 0 else { throw DatabaseError(isConnected ? .query : .connectionLost) }

        var answers: [[QueryResult]] = []
        var failure: DatabaseError?
        var synced = true
        for segment in segments {
            var results: [QueryResult] = []
            for _ in segment {
                // Each statement's answer is one result followed by a NULL.
                guard let result = PQgetResult(handle) else { throw failure ?? DatabaseError(.connectionLost) }
                switch PQresultStatus(result) {
                case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
                    results.append(QueryResult(owning: result))
                case PGRES_PIPELINE_ABORTED:
                    PQclear(result)
                default:
                    if failure == nil { failure = Self.error(from: result, connected: isConnected) }
                    PQclear(result)
                }
                while let extra = PQgetResult(handle) { PQclear(extra) }
                guard isConnected else { throw failure ?? DatabaseError(.connectionLost) }
            }
            // The sync point's own result ends the segment. An error before it was raised at the
            // sync itself (an implicit transaction that failed to commit): the segment failed.
            var reachedSync = false
            for _ in 0..<4 where !reachedSync {
                guard let result = PQgetResult(handle) else {
                    guard isConnected else { throw failure ?? DatabaseError(.connectionLost) }
                    continue
                }
                switch PQresultStatus(result) {
                case PGRES_PIPELINE_SYNC: reachedSync = true
                case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR:
                    if failure == nil { failure = Self.error(from: result, connected: isConnected) }
                default: break
                }
                PQclear(result)
            }
            if !reachedSync { synced = false }
            answers.append(results)
        }
        if let failure {
            if failure.invalidatesPreparedStatements {
                preparedStatements = [:]
                isPoisoned = true
            }
            throw failure
        }
        guard synced else { throw DatabaseError(.query) }
        return answers
    }

    /// The session's name for `statement`, preparing it on first use. Only code-defined SQL
    /// reaches here, so the set is small; past the cap, statements are sent unprepared (nil).
    func preparedName(for statement: Statement) throws(DatabaseError) -> String? {
        guard preparesStatements else { return nil }
        if let name = preparedStatements[statement.sql] { return name }
        guard preparedStatements.count < Self.preparedStatementLimit else { return nil }
        let name = "casehug_\(preparedStatements.count + 1)"
        guard let result = PQprepare(handle, name, statement.sql, 0, nil) else {
            throw DatabaseError(isConnected ? .query : .connectionLost)
        }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_COMMAND_OK else { throw Self.error(from: result, connected: isConnected) }
        preparedStatements[statement.sql] = name
        return name
    }

    static let preparedStatementLimit = 100

    /// The statements as one implicit transaction, committed at its sync, then `after` as a
    /// transaction of its own, in one round trip; returns the statements' results. No BEGIN
    /// and COMMIT travel: two statements fewer for the server than `pipelinedTransaction`, which
    /// is what a hot path that writes once per request spends them on. `after` runs whether
    /// or not the statements committed, so it must be harmless either way (a wake-up); its
    /// results are not returned, and the statements' failure is the one thrown.
    public func pipelinedAutocommit(
        _ statements: [Statement], after: [Statement] = []
    ) throws(DatabaseError) -> [QueryResult] {
        try pipeline(segments: after.isEmpty ? [statements] : [statements, after])[0]
    }

    /// `BEGIN [READ ONLY]`, the statements and `COMMIT` in one round trip; returns the
    /// statements' results. On any failure the transaction is rolled back before throwing.
    /// `afterCommit` statements follow the COMMIT in the same round trip, in a transaction of
    /// their own (sent only when the COMMIT succeeded; their results are not returned).
    public func pipelinedTransaction(
        readOnly: Bool = false, _ statements: [Statement], afterCommit: [Statement] = []
    ) throws(DatabaseError) -> [QueryResult] {
        let all =
            [Statement(readOnly ? "BEGIN READ ONLY" : "BEGIN")] + statements + [Statement("COMMIT")] + afterCommit
        do {
            let results = try pipeline(all)
            return Array(results.dropFirst().dropLast(afterCommit.count + 1))
        } catch {
            // A failed statement leaves the explicit transaction open and aborted.
            // Also on a poisoned session: a direct caller may still end the transaction cleanly.
            if isSocketUsable, PQtransactionStatus(handle) != PQTRANS_IDLE {
                if let result = PQexec(handle, "ROLLBACK") { PQclear(result) }
            }
            throw error
        }
    }
}
