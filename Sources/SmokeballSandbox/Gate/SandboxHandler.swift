import FastCGI
import Foundation
import PostgreSQL

/// The local Smokeball: one FastCGI handler for the auth server (`/oauth2/...`), the API and
/// the loopback-only admin endpoints (`/_sandbox/...`). Every sandbox process shares state
/// through its own PostgreSQL database, so tokens, rate-limit buckets and the request log are
/// the same whichever process answers.
public struct SandboxHandler: Handler {
    public let route = "smokeball-sandbox"
    let database: Database
    let clock: @Sendable () -> Date

    public init(database: Database, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.database = database
        self.clock = clock
    }

    /// `.direct` options: the sandbox owns its schema (no RLS to protect) and keeps no time limits.
    public init(configuration: SandboxConfiguration) {
        self.init(
            database: Database(url: configuration.databaseURL, applicationName: "smokeball-sandbox", options: .direct))
    }

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        do {
            return try route(request, context)
        } catch let failure as SandboxFailure {
            return failure.response(requestID: request.header("requestid"))
        } catch let error as DatabaseError where error.isUnavailable {
            context.log.error("sandbox_database_unavailable", ["error": error.description])
            return SandboxFailure.problem(
                .serviceUnavailable, "Service Unavailable", "The sandbox database is unavailable"
            )
            .response(requestID: request.header("requestid"))
        } catch let error as DatabaseError where error.kind == .invalidParameter {
            // A NUL in request text (PostgreSQL text cannot hold one): refused before any SQL ran.
            return SandboxFailure.problem(.badRequest, "Bad Request", "The request contains a NUL character")
                .response(requestID: request.header("requestid"))
        }
    }

    func route(_ request: Request, _ context: RequestContext) throws -> Response {
        let path = request.path
        let offAPI =
            path == "/oauth2/authorize" || path == "/oauth2/token" || path.hasPrefix("/_uploads/")
            || path.hasPrefix("/_downloads/")
        if path == "/oauth2/token" { return try token(request) }
        // Injected faults apply here as on the API, before anything is read or changed.
        if offAPI { try Faults(database: database).applyOffAPI(request) }
        if path == "/oauth2/authorize" {
            return try OAuthServer(database: database, now: clock(), issuer: request.sandboxOrigin).handle(request)
        }
        if path.hasPrefix("/_uploads/") {
            return try Uploads(database: database, now: clock()).handle(request)
        }
        if path.hasPrefix("/_downloads/") {
            return try Downloads(database: database, now: clock()).serve(request)
        }
        if path.hasPrefix("/_sandbox/") {
            return try SandboxAdmin(database: database, now: clock()).handle(request)
        }
        return try APIServer(database: database, now: clock()).handle(request, context)
    }

    /// The token endpoint, every call of which lands in the request log with its answer's status:
    /// refusals and injected faults too, and a dropped connection (status 0) before it drops.
    func token(_ request: Request) throws -> Response {
        let response: Response
        do {
            try Faults(database: database).applyOffAPI(request) {
                RequestLog.recordToken(database, request, status: 0)
            }
            response = try OAuthServer(database: database, now: clock(), issuer: request.sandboxOrigin).handle(request)
        } catch let failure as SandboxFailure {
            response = failure.response(requestID: request.header("requestid"))
        }
        RequestLog.recordToken(database, request, status: response.status.code)
        return response
    }
}

/// Where the sandbox keeps its state, read once at start.
public struct SandboxConfiguration: Sendable {
    public let databaseURL: String

    public init(databaseURL: String) {
        self.databaseURL = databaseURL
    }

    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> SandboxConfiguration
    {
        guard let url = environment["SANDBOX_DATABASE_URL"], !url.isEmpty else {
            throw SandboxConfigurationError()
        }
        return SandboxConfiguration(databaseURL: url)
    }
}

public struct SandboxConfigurationError: Error, CustomStringConvertible {
    public var description: String { "SANDBOX_DATABASE_URL is not set" }
}
