import CLibPQ
import Foundation

/// Limits and checks a connection is opened with. The session settings travel in libpq's
/// `options` (the startup packet), so they cost no round trip after connecting.
public struct ConnectionOptions: Sendable, Equatable {
    /// `statement_timeout`: a statement running longer is cancelled (SQLSTATE 57014). nil: server default.
    public var statementTimeoutMilliseconds: Int?
    /// `lock_timeout`: waiting longer for a lock fails the statement (SQLSTATE 55P03).
    public var lockTimeoutMilliseconds: Int?
    /// `idle_in_transaction_session_timeout`: a session idle inside a transaction this long is
    /// ended by the server, releasing its locks.
    public var idleInTransactionTimeoutMilliseconds: Int?
    /// TCP keepalives so a half-open connection (peer gone, no FIN) is noticed; ignored for
    /// Unix-socket hosts.
    public var keepalives: TCPKeepalives?
    /// Right after connecting, refuse a session whose role (or any role it can become) is a
    /// superuser or has BYPASSRLS: row-level security would silently not apply to it.
    public var refusesPrivilegedRoles: Bool
    /// A pooler in transaction mode (pgbouncer `pool_mode = transaction`) sits between: each
    /// transaction may run on a different server session. Then no named prepared statement is
    /// used (it would live on one server session only; pgbouncer before 1.21 does not track
    /// them), and no startup `options` are sent (pgbouncer refuses the parameter); the session
    /// settings must then be the role's (`ALTER ROLE ... SET`, docs/operations.md "pgbouncer").
    public var transactionPooling: Bool

    public init(
        statementTimeoutMilliseconds: Int? = nil, lockTimeoutMilliseconds: Int? = nil,
        idleInTransactionTimeoutMilliseconds: Int? = nil, keepalives: TCPKeepalives? = .standard,
        refusesPrivilegedRoles: Bool = false, transactionPooling: Bool = false
    ) {
        self.statementTimeoutMilliseconds = statementTimeoutMilliseconds
        self.lockTimeoutMilliseconds = lockTimeoutMilliseconds
        self.idleInTransactionTimeoutMilliseconds = idleInTransactionTimeoutMilliseconds
        self.keepalives = keepalives
        self.refusesPrivilegedRoles = refusesPrivilegedRoles
        self.transactionPooling = transactionPooling
    }

    /// Admin tools, migrations and tests: no time limits (a migration may run long), no role check.
    public static let direct = ConnectionOptions()

    /// Request handling: a request never waits long on the database, and never runs with RLS off.
    public static let routes = ConnectionOptions(
        statementTimeoutMilliseconds: 10_000, lockTimeoutMilliseconds: 3_000,
        idleInTransactionTimeoutMilliseconds: 15_000, refusesPrivilegedRoles: true)

    /// The same options without the role check (services that own their schema, like the sandbox).
    public var allowingPrivilegedRoles: ConnectionOptions {
        var options = self
        options.refusesPrivilegedRoles = false
        return options
    }

    /// The `-c name=value` settings for libpq's `options`. Timestamps and intervals are read
    /// back in one fixed form regardless of server defaults.
    var startupSettings: String {
        var settings = ["TimeZone=UTC", "DateStyle=ISO,YMD", "IntervalStyle=iso_8601"]
        if let statementTimeoutMilliseconds { settings.append("statement_timeout=\(statementTimeoutMilliseconds)") }
        if let lockTimeoutMilliseconds { settings.append("lock_timeout=\(lockTimeoutMilliseconds)") }
        if let idleInTransactionTimeoutMilliseconds {
            settings.append("idle_in_transaction_session_timeout=\(idleInTransactionTimeoutMilliseconds)")
        }
        return settings.map { "-c " + $0 }.joined(separator: " ")
    }

    /// libpq keywords and values for `PQconnectdbParams` with `expand_dbname`. Keywords before
    /// `dbname` are defaults the URL may override; those after it override the URL. The URL's
    /// own `options`, if any, follow ours so its `-c` settings win.
    func connectionParameters(url: String, applicationName: String) -> [(String, String)] {
        let fromURL = Self.parse(url)
        var parameters: [(String, String)] = []
        if let keepalives, Self.isTCP(fromURL) {
            parameters += [
                ("keepalives", "1"), ("keepalives_idle", String(keepalives.idleSeconds)),
                ("keepalives_interval", String(keepalives.intervalSeconds)),
                ("keepalives_count", String(keepalives.count)),
                ("tcp_user_timeout", String(keepalives.userTimeoutMilliseconds)),
            ]
        }
        parameters += [
            ("dbname", url), ("application_name", applicationName), ("connect_timeout", "5"),
            ("client_encoding", "UTF8"),
        ]
        guard !transactionPooling else { return parameters }
        var options = startupSettings
        if let own = fromURL["options"], !own.isEmpty { options += " " + own }
        parameters.append(("options", options))
        return parameters
    }

    /// Whether any host the URL names is reached over TCP (not a Unix-socket directory).
    static func isTCP(_ parameters: [String: String]) -> Bool {
        let environment = ProcessInfo.processInfo.environment
        let hostAddress = parameters["hostaddr"] ?? environment["PGHOSTADDR"] ?? ""
        if !hostAddress.isEmpty { return true }
        let hosts = (parameters["host"] ?? environment["PGHOST"] ?? "").split(separator: ",")
        // No host: libpq's default Unix socket. A path or `@name` is a socket too.
        return hosts.contains { !$0.hasPrefix("/") && !$0.hasPrefix("@") && !$0.isEmpty }
    }

    /// The keyword/value pairs a libpq URI or keyword string sets (empty if it does not parse:
    /// the connect attempt then reports the problem).
    static func parse(_ url: String) -> [String: String] {
        guard let options = PQconninfoParse(url, nil) else { return [:] }
        defer { PQconninfoFree(options) }
        var values: [String: String] = [:]
        var entry = options
        while let keyword = entry.pointee.keyword {
            if let value = entry.pointee.val { values[String(cString: keyword)] = String(cString: value) }
            entry += 1
        }
        return values
    }

    /// One round trip right after connecting: is current_user, or any role it is a member of
    /// (and so could `SET ROLE` to), a superuser or BYPASSRLS?
    static let privilegedRoleQuery = """
        SELECT EXISTS (
            SELECT 1 FROM pg_catalog.pg_roles AS r
            WHERE (r.rolsuper OR r.rolbypassrls) AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')
        ) AS privileged
        """
}

/// TCP keepalive probing (libpq `keepalives_*`, `tcp_user_timeout`).
public struct TCPKeepalives: Sendable, Equatable {
    public var idleSeconds: Int
    public var intervalSeconds: Int
    public var count: Int
    /// Unacknowledged data older than this ends the connection (Linux `TCP_USER_TIMEOUT`).
    public var userTimeoutMilliseconds: Int

    public init(idleSeconds: Int = 30, intervalSeconds: Int = 10, count: Int = 3, userTimeoutMilliseconds: Int = 30_000)
    {
        self.idleSeconds = idleSeconds
        self.intervalSeconds = intervalSeconds
        self.count = count
        self.userTimeoutMilliseconds = userTimeoutMilliseconds
    }

    /// A dead peer is noticed within about a minute.
    public static let standard = TCPKeepalives()
}
