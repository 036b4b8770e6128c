import Foundation

/// A process's database: one lazily opened connection, replaced when it breaks. Route workers
/// are forked before first use, so every process opens its own connection. The lock makes the
/// type safe to share even though each worker calls it from one thread.
///
/// A connection is handed out only when it is idle (outside any transaction) and belongs to
/// this process; any other is closed and replaced, so nothing one caller set inside a
/// transaction (`set_config('app.firm_id', ..., true)`) can reach the next.
public final class Database: @unchecked Sendable {
    public let url: String
    private let applicationName: String
    /// Time limits and the role check of every connection (default `.routes`).
    public let options: ConnectionOptions
    private let lock = NSLock()
    private var connection: Connection?
    /// Connect attempts so far (tests show a failed fresh connect is not retried).
    private(set) var connectAttempts = 0

    public init(url: String, applicationName: String = "casehug-smokeball", options: ConnectionOptions = .routes) {
        self.url = url
        self.applicationName = applicationName
        self.options = options
    }

    /// Opens one session with this database's options, so the role check runs, and closes it
    /// again: a supervisor learns before forking that its workers could never serve, and keeps
    /// no connection to hand down to them.
    public func checkSession() throws(DatabaseError) {
        _ = try Connection(url: url, applicationName: applicationName, options: options)
    }

    /// Runs `body` with a live, idle connection. A connection found broken, busy or inherited
    /// from another process is replaced; if the connection breaks during `body` it is dropped
    /// so the next call reconnects.
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        try withSession { connection, _ in try body(connection) }
    }

    /// `withConnection`, also telling `body` whether the connection was reused from an earlier
    /// call (only a reused one can be stale; a fresh one that fails is an outage).
    private func withSession<T>(_ body: (Connection, _ reused: Bool) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        let live: Connection
        let reused: Bool
        if let existing = connection, existing.isIdle {
            live = existing
            reused = true
        } else {
            // Dropping closes it (or, if inherited, abandons it without touching the parent's session).
            connection = nil
            connectAttempts += 1
            live = try Connection(url: url, applicationName: applicationName, options: options)
            connection = live
            reused = false
        }
        do {
            return try body(live, reused)
        } catch {
            let unavailable = (error as? DatabaseError)?.isUnavailable ?? false
            if unavailable || !live.isConnected { connection = nil }
            throw error
        }
    }

    /// A transaction on a live connection. When a reused connection turns out to be dead at
    /// `BEGIN` (server restarted since the last request) nothing has run yet, so it is safe to
    /// reconnect and try once more. A connection opened for this call is not retried.
    @discardableResult
    public func transaction<T>(readOnly: Bool = false, _ body: (Connection) throws -> T) throws -> T {
        var staleAtBegin = false
        do {
            return try withSession { connection, reused in
                do {
                    try connection.execute(readOnly ? "BEGIN READ ONLY" : "BEGIN")
                } catch let error as DatabaseError where reused && error.isUnavailable {
                    staleAtBegin = true
                    throw error
                }
                return try connection.committing(body)
            }
        } catch  where staleAtBegin {
            return try withConnection { connection in try connection.transaction(readOnly: readOnly, body) }
        }
    }

    /// `pipelinedTransaction` on a live connection: BEGIN, the statements and COMMIT in one
    /// round trip. A read-only batch that finds a reused connection dead (or its prepared
    /// statements invalidated by a migration) is retried once on a new one (it changed
    /// nothing); a writing batch is not, since its COMMIT may have landed: its error surfaces
    /// and the next call gets a new session.
    public func pipelinedTransaction(
        readOnly: Bool = false, _ statements: [Statement], afterCommit: [Statement] = []
    ) throws -> [QueryResult] {
        try withConnection(retryingOnce: readOnly) { connection in
            try connection.pipelinedTransaction(readOnly: readOnly, statements, afterCommit: afterCommit)
        }
    }

    /// `pipelinedAutocommit` on a live connection: the statements as one implicit transaction,
    /// then `after` as another, in one round trip. A writing batch, so not retried (see
    /// `pipelinedTransaction`).
    public func pipelinedAutocommit(_ statements: [Statement], after: [Statement] = []) throws -> [QueryResult] {
        try withConnection(retryingOnce: false) { connection in
            try connection.pipelinedAutocommit(statements, after: after)
        }
    }

    /// Reads in one round trip: the statements and one sync form a single implicit
    /// transaction (so `set_config(..., true)` in one statement holds for the next), two
    /// statements cheaper than `pipelinedTransaction` because no BEGIN/COMMIT travel. For
    /// statements that only read: a stale reused connection is replaced and the batch sent once more.
    public func pipelinedRead(_ statements: [Statement]) throws -> [QueryResult] {
        try withConnection(retryingOnce: true) { connection in try connection.pipeline(statements) }
    }

    /// `withConnection`, sent once more on a new connection when a reused one turns out dead or
    /// its cached plans invalid, if `retryingOnce` (only for work that changed nothing, such as
    /// reads). A connection opened for this call that fails is an outage, not staleness.
    private func withConnection<T>(retryingOnce: Bool, _ body: (Connection) throws -> T) throws -> T {
        var stale = false
        do {
            return try withSession { connection, reused in
                do {
                    return try body(connection)
                } catch let error as DatabaseError
                    where reused && (error.isUnavailable || error.invalidatesPreparedStatements)
                {
                    stale = true
                    throw error
                }
            }
        } catch  where retryingOnce && stale {
            return try withConnection(body)
        }
    }

    /// Closes this process's connection (tests; shutdown). Not a fork tool: a process must hold
    /// no connection when it forks (see `Connection.openCount`), and one inherited by a child
    /// is abandoned there without ending the parent's session (see `Connection.deinit`).
    public func disconnect() {
        lock.lock()
        connection = nil
        lock.unlock()
    }
}

extension Connection {
    /// The body of `transaction` after `BEGIN` has been sent.
    func committing<T>(_ body: (Connection) throws -> T) throws -> T {
        do {
            let value = try body(self)
            try execute("COMMIT")
            return value
        } catch {
            if isConnected { _ = try? execute("ROLLBACK") }
            throw error
        }
    }
}
