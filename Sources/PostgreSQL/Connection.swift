import CLibPQ
import Foundation

/// One libpq connection. Owns its `PGconn` and frees it exactly once. Not thread-safe: a
/// worker process uses its connection from one thread (see `Database` for the shared owner).
/// Belongs to the process that opened it: after `fork` the child must not use it (see `deinit`).
public final class Connection {
    let handle: OpaquePointer
    /// The process that opened the connection; any other one shares the socket by inheritance.
    let ownerProcess: pid_t
    private var transactionDepth = 0
    /// Server-side prepared statements of this session by SQL text (see `preparedName`).
    var preparedStatements: [String: String] = [:]
    /// False behind a transaction-mode pooler (`ConnectionOptions.transactionPooling`): every
    /// statement then goes unnamed, parsed with its parameters in the same round trip.
    let preparesStatements: Bool
    /// Set when a pipeline could not be wound down (its connection died mid-way), or when the
    /// server dropped a cached plan: the session is in an unknown state and must not be reused.
    var isPoisoned = false
    /// Notifications read from the socket but not yet handed out (see `waitForNotification`).
    var pendingNotifications: [Notification] = []

    /// Connects from a libpq URI or keyword string (`postgresql://user:pw@host:port/db`).
    /// `options` are sent with the startup packet; with `.direct` (the default) there are no
    /// time limits and no role check.
    public init(url: String, applicationName: String = "casehug-smokeball", options: ConnectionOptions = .direct)
        throws(DatabaseError)
    {
        let parameters = options.connectionParameters(url: url, applicationName: applicationName)
        let connection = withCStringArray(parameters.map(\.0)) { keyPointers in
            withCStringArray(parameters.map(\.1)) { valuePointers in
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
        self.ownerProcess = getpid()
        self.preparesStatements = !options.transactionPooling
        Self.openConnections.withLock { $0 += 1 }
        // Fully initialised from here: a throw runs `deinit`, which closes the connection.
        if options.refusesPrivilegedRoles,
            try execute(ConnectionOptions.privilegedRoleQuery).single().bool("privileged")
        {
            throw DatabaseError(.privilegedRole)
        }
    }

    deinit {
        if getpid() != ownerProcess {
            // Inherited through fork: the socket is the parent's session too, and PQfinish
            // would send Terminate on it and end that session. /dev/null is put over the
            // descriptor first (dup2 swaps it in one step, so the number is never free for
            // something else), so libpq's memory is freed and its Terminate goes nowhere.
            // Should /dev/null not open, the handle is leaked instead: a little memory and one
            // descriptor in this process beat ending the parent's session.
            let socket = PQsocket(handle)
            if socket >= 0 {
                let null = open("/dev/null", O_WRONLY)
                guard null >= 0 else {
                    Self.openConnections.withLock { $0 -= 1 }
                    return
                }
                dup2(null, socket)
                close(null)
            }
        }
        PQfinish(handle)
        Self.openConnections.withLock { $0 -= 1 }
    }

    /// Connections open in this process (inherited ones included until abandoned). A process
    /// that forks workers checks it is zero first, so no session is shared across processes.
    public static var openCount: Int { openConnections.withLock { $0 } }
    private static let openConnections = LockedCounter()

    /// Throws `.wrongProcess` when called from a process other than the one that connected.
    func checkProcess() throws(DatabaseError) {
        guard getpid() == ownerProcess else { throw DatabaseError(.wrongProcess) }
    }

    /// The socket still talks to the server on this process's behalf.
    var isSocketUsable: Bool { getpid() == ownerProcess && PQstatus(handle) == CONNECTION_OK }

    /// The value libpq used for a connection keyword (`keepalives`, `options`...), for tests.
    func connectionSetting(_ keyword: String) -> String? {
        guard let options = PQconninfo(handle) else { return nil }
        defer { PQconninfoFree(options) }
        var entry = options
        while let name = entry.pointee.keyword {
            if String(cString: name) == keyword { return entry.pointee.val.map { String(cString: $0) } }
            entry += 1
        }
        return nil
    }

    /// Connected and outside any transaction: safe to hand to a new caller, since nothing a
    /// previous caller set with `set_config(..., true)` can still be in effect.
    var isIdle: Bool { isConnected && PQtransactionStatus(handle) == PQTRANS_IDLE }

    /// False once the server side went away; the owner should drop this connection.
    public var isConnected: Bool { !isPoisoned && isSocketUsable }

    /// Runs one statement with `$1..$n` parameters and returns its rows.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [any SQLValueConvertible] = []) throws(DatabaseError)
        -> QueryResult
    {
        try checkProcess()
        let encoded = try EncodedParameters(parameters)
        let result = encoded.withPointers { count, values, lengths, formats in
            PQexecParams(handle, sql, count, nil, values, lengths, formats, 0)
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
        try checkProcess()
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
        try checkProcess()
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

/// An integer behind a lock (Swift 6's `Mutex` needs macOS 15; the package supports 14).
final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func withLock<R>(_ body: (inout Int) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
