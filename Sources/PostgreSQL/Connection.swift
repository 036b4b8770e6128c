import CLibPQ
import Foundation

/// One libpq connection. Owns its `PGconn` and frees it exactly once. Not thread-safe: a
/// worker process uses its connection from one thread (see `Database` for the shared owner).
public final class Connection {
    let handle: OpaquePointer
    private var transactionDepth = 0
    /// Server-side prepared statements of this session by SQL text (see `preparedName`).
    var preparedStatements: [String: String] = [:]
    /// Set when a pipeline could not be wound down (its connection died mid-way): the session
    /// is in an unknown state and must not be reused.
    var isPoisoned = false

    /// Connects from a libpq URI or keyword string (`postgresql://user:pw@host:port/db`).
    public init(url: String, applicationName: String = "casehug-smokeball") throws(DatabaseError) {
        let keys = ["dbname", "application_name", "connect_timeout", "client_encoding"]
        let values = [url, applicationName, "5", "UTF8"]
        let connection = withCStringArray(keys) { keyPointers in
            withCStringArray(values) { valuePointers in
                PQconnectdbParams(keyPointers, valuePointers, 1)
            }
        }
        guard let connection else { throw DatabaseError(.connectionFailed) }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = PQerrorMessage(connection).map { String(cString: $0) }
            PQfinish(connection)
            throw DatabaseError(.connectionFailed, serverMessage: message.map(Self.firstLine))
        }
        self.handle = connection
        // Timestamps are read back in one fixed form regardless of server defaults.
        try execute("SET TimeZone = 'UTC'")
        try execute("SET DateStyle = 'ISO, YMD'")
        try execute("SET IntervalStyle = 'iso_8601'")
    }

    deinit {
        PQfinish(handle)
    }

    /// False once the server side went away; the owner should drop this connection.
    public var isConnected: Bool { !isPoisoned && PQstatus(handle) == CONNECTION_OK }

    /// Runs one statement with `$1..$n` parameters and returns its rows.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [any SQLValueConvertible] = []) throws(DatabaseError)
        -> QueryResult
    {
        let texts = parameters.map { $0.sqlValue.wireText }
        let result = withOptionalCStringArray(texts) { pointers in
            PQexecParams(handle, sql, Int32(texts.count), nil, pointers, nil, nil, 0)
        }
        guard let result else {
            throw DatabaseError(isConnected ? .query : .connectionLost)
        }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return QueryResult(owning: result)
        default:
            let failure = Self.error(from: result, connected: isConnected)
            PQclear(result)
            throw failure
        }
    }

    /// Runs a trusted script of several statements (a migration file) with the simple-query
    /// protocol. Takes no values: anything that varies must go through `execute(_:_:)`.
    public func executeScript(_ sql: String) throws(DatabaseError) {
        guard let result = PQexec(handle, sql) else {
            throw DatabaseError(isConnected ? .query : .connectionLost)
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
            throw Self.error(from: result, connected: isConnected)
        }
    }

    /// Runs `body` inside `BEGIN ... COMMIT`; any thrown error rolls back. Settings made with
    /// `set_config(..., true)` (tenant ids for row-level security) last until the end.
    @discardableResult
    public func transaction<T>(readOnly: Bool = false, _ body: (Connection) throws -> T) throws -> T {
        precondition(transactionDepth == 0, "nested transactions are not supported")
        try execute(readOnly ? "BEGIN READ ONLY" : "BEGIN")
        transactionDepth = 1
        defer { transactionDepth = 0 }
        return try committing(body)
    }

    static func error(from result: OpaquePointer, connected: Bool) -> DatabaseError {
        func field(_ code: UInt8) -> String? {
            PQresultErrorField(result, Int32(code)).map { String(cString: $0) }
        }
        let sqlState = field(UInt8(ascii: "C"))
        let message = field(UInt8(ascii: "M"))
        let constraint = field(UInt8(ascii: "n"))
        if !connected { return DatabaseError(.connectionLost, sqlState: sqlState, serverMessage: message) }
        return DatabaseError(.query, sqlState: sqlState, name: constraint, serverMessage: message)
    }

    static func firstLine(_ text: String) -> String {
        String(text.split(separator: "\n", omittingEmptySubsequences: true).first ?? "")
    }
}

/// Calls `body` with a NUL-terminated array of C strings that live for the call.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { pointers.forEach { free($0) } }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { buffer in
        buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { body($0) }
    }
}

/// Like `withCStringArray` but `nil` entries stay NULL (SQL NULL parameters).
func withOptionalCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    guard !strings.isEmpty else { return body(nil) }
    let pointers: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { buffer in
        buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { body($0) }
    }
}
