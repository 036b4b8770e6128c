/// A database failure. `description` names the kind, the SQLSTATE and (for row access) the
/// column: never parameter values, row data or server DETAIL lines, which can carry personal data.
public struct DatabaseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Could not open a connection (server down, refused, bad credentials).
        case connectionFailed = "connection_failed"
        /// The connection broke during a statement; the statement's outcome is unknown.
        case connectionLost = "connection_lost"
        /// The server rejected the statement; see `sqlState`.
        case query
        case unexpectedNull = "unexpected_null"
        case typeMismatch = "type_mismatch"
        case unknownColumn = "unknown_column"
        case noRows = "no_rows"
        case invalidParameter = "invalid_parameter"
        /// `single()` found more than one row.
        case tooManyRows = "too_many_rows"
        /// The connection was opened by another process (inherited through fork); unusable here.
        case wrongProcess = "wrong_process"
        /// The session's role is, or can become, a superuser or BYPASSRLS role.
        case privilegedRole = "privileged_role"
    }

    public let kind: Kind
    /// Five-character SQLSTATE for `.query` errors (`23505` unique violation, `42501` RLS...).
    public let sqlState: String?
    /// Column name for row-access errors, constraint name for constraint violations.
    public let name: String?
    /// The server's primary message (no DETAIL). For logs only.
    public let serverMessage: String?

    public init(_ kind: Kind, sqlState: String? = nil, name: String? = nil, serverMessage: String? = nil) {
        self.kind = kind
        self.sqlState = sqlState
        self.name = name
        self.serverMessage = serverMessage
    }

    public var description: String {
        var text = "database error: \(kind.rawValue)"
        if let sqlState { text += " sqlstate=\(sqlState)" }
        if let name { text += " name=\(name)" }
        if kind == .privilegedRole {
            text += ": refusing to run as a superuser or BYPASSRLS role: row-level security would not apply"
        }
        return text
    }

    /// The database is unreachable or restarting: worth a 503 and a retry later.
    public var isUnavailable: Bool {
        switch kind {
        case .connectionFailed, .connectionLost: return true
        case .query:
            // 57P01..57P03: admin shutdown, crash shutdown, cannot connect now; 08xxx: connection.
            guard let sqlState else { return false }
            return sqlState.hasPrefix("57P") || sqlState.hasPrefix("08") || sqlState == "53300"
        default: return false
        }
    }

    /// A statement ran past `statement_timeout` (57014, also an explicit cancel) or waited past
    /// `lock_timeout` (55P03): the database is busy; worth a 503 and a retry later.
    public var isTimeout: Bool { kind == .query && (sqlState == "57014" || sqlState == "55P03") }

    /// The server dropped or can no longer run a prepared statement: 0A000 `cached plan must
    /// not change result type` after a migration, 26000 `prepared statement does not exist`.
    public var invalidatesPreparedStatements: Bool { kind == .query && (sqlState == "0A000" || sqlState == "26000") }

    public var isUniqueViolation: Bool { sqlState == "23505" }
    public var isSerializationFailure: Bool { sqlState == "40001" || sqlState == "40P01" }
    /// Row-level security refused a write (`new row violates row-level security policy`).
    public var isInsufficientPrivilege: Bool { sqlState == "42501" }
}
