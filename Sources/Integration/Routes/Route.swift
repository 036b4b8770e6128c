import FastCGI
import Foundation
import PostgreSQL

/// A route handler that reads and writes PostgreSQL.
public protocol DatabaseHandler: Handler {
    var database: Database { get }
}

/// The start of every route executable, written once: the configuration from the environment,
/// the handler, and what the supervisor makes sure of before it forks workers.
public enum Route {
    /// Builds the handler and serves; never returns. `main.swift` of a route is this one call.
    public static func serve<H: DatabaseHandler>(_ makeHandler: @escaping (Configuration) throws -> H) -> Never {
        FastCGIServer.run {
            let handler = try makeHandler(try .fromEnvironment())
            try prepare(handler.database, log: Logger(route: handler.route))
            return handler
        }
    }

    /// Before fork: the database role must be one that row-level security binds (a superuser or
    /// BYPASSRLS URL stops the route here, with the reason, instead of serving every firm's rows),
    /// and no connection may be left open to be shared by every worker. A database that cannot be
    /// reached yet does not stop the route: its workers answer 503 until it is back.
    static func prepare(_ database: Database, log: Logger) throws {
        registerForkCheck
        do {
            try database.checkSession()
        } catch  where error.kind == .privilegedRole {
            throw error
        } catch {
            log.warning("database_unavailable_at_start", ["error": error.description])
        }
    }

    /// Once per process: a connection open in the supervisor at fork would be one session shared
    /// by every worker, their statements interleaved on one socket.
    static let registerForkCheck: Void = ForkSafety.register {
        let open = Connection.openCount
        return open == 0 ? nil : "\(open) database connection(s) open in the supervisor would be shared by every worker"
    }
}
