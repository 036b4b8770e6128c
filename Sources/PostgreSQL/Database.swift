import Foundation

/// A process's database: one lazily opened connection, replaced when it breaks. Route workers
/// are forked before first use, so every process opens its own connection. The lock makes the
/// type safe to share even though each worker calls it from one thread.
public final class Database: @unchecked Sendable {
    public let url: String
    private let applicationName: String
    private let lock = NSLock()
    private var connection: Connection?

    public init(url: String, applicationName: String = "casehug-smokeball") {
        self.url = url
        self.applicationName = applicationName
    }

    /// Runs `body` with a live connection. A connection found broken is replaced; if the
    /// connection breaks during `body` it is dropped so the next call reconnects.
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        let live: Connection
        if let existing = connection, existing.isConnected {
            live = existing
        } else {
            connection = nil
            live = try Connection(url: url, applicationName: applicationName)
            connection = live
        }
        do {
            return try body(live)
        } catch {
            let unavailable = (error as? DatabaseError)?.isUnavailable ?? false
            if unavailable || error is StaleConnection || !live.isConnected { connection = nil }
            throw error
        }
    }

    /// A transaction on a live connection. When the connection turns out to be dead at `BEGIN`
    /// (server restarted since the last request) nothing has run yet, so it is safe to reconnect
    /// and try once more.
    @discardableResult
    public func transaction<T>(readOnly: Bool = false, _ body: (Connection) throws -> T) throws -> T {
        do {
            return try withConnection { connection in
                do {
                    try connection.execute(readOnly ? "BEGIN READ ONLY" : "BEGIN")
                } catch let error as DatabaseError {
                    throw StaleConnection(underlying: error)
                }
                return try connection.committing(body)
            }
        } catch let stale as StaleConnection {
            guard stale.underlying.isUnavailable else { throw stale.underlying }
            return try withConnection { connection in try connection.transaction(readOnly: readOnly, body) }
        }
    }

    /// `pipelinedTransaction` on a live connection: BEGIN, the statements and COMMIT in one
    /// round trip. A read-only batch that finds the connection dead is retried once on a new
    /// one (it changed nothing); a writing batch is not, since its COMMIT may have landed.
    public func pipelinedTransaction(readOnly: Bool = false, _ statements: [Statement]) throws -> [QueryResult] {
        try withConnection(retryingOnce: readOnly) { connection in
            try connection.pipelinedTransaction(readOnly: readOnly, statements)
        }
    }

    /// Reads in one round trip: the statements and one sync form a single implicit
    /// transaction (so `set_config(..., true)` in one statement holds for the next), two
    /// statements cheaper than `pipelinedTransaction` because no BEGIN/COMMIT travel. For
    /// statements that only read: a dead connection is replaced and the batch sent once more.
    public func pipelinedRead(_ statements: [Statement]) throws -> [QueryResult] {
        try withConnection(retryingOnce: true) { connection in try connection.pipeline(statements) }
    }

    /// `withConnection`, sent once more on a new connection when the first turns out dead, if
    /// `retryingOnce` (only for work that changed nothing, such as reads).
    private func withConnection<T>(retryingOnce: Bool, _ body: (Connection) throws -> T) throws -> T {
        do {
            return try withConnection(body)
        } catch let error as DatabaseError where retryingOnce && error.isUnavailable {
            return try withConnection(body)
        }
    }

    /// Drops the connection (tests; after fork in a parent that used one).
    public func disconnect() {
        lock.lock()
        connection = nil
        lock.unlock()
    }

    struct StaleConnection: Error {
        let underlying: DatabaseError
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
