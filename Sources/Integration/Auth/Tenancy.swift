import FastCGI
import Foundation
import PostgreSQL

/// The authenticated caller inside one transaction.
public struct Caller: Sendable, Equatable {
    public enum Role: String, Sendable {
        case firmAdmin = "firm_admin"
        case standard
    }

    public let userID: UUID
    public let firmID: UUID
    public let role: Role

    public var isFirmAdmin: Bool { role == .firmAdmin }
}

/// Binds a transaction to the caller's firm. `app_authenticate` sets `app.user_id` and
/// `app.firm_id` with transaction scope (SET LOCAL semantics), which every row-level security
/// policy reads; the settings vanish at COMMIT/ROLLBACK, so a pooled connection never carries
/// one request's tenant into the next.
public enum Tenancy {
    /// The statement that binds the transaction to the user's firm; its result feeds `caller`.
    public static func authenticate(_ userID: UUID) -> Statement {
        Statement("SELECT firm_id, role FROM app_authenticate($1::uuid)", [userID])
    }

    public static func enter(_ connection: Connection, userID: UUID) throws -> Caller {
        let statement = authenticate(userID)
        return try caller(from: try connection.execute(statement.sql, statement.parameters), userID: userID)
    }

    /// The caller from `authenticate`'s result: 401 for an unknown user, 403 without a firm.
    public static func caller(from result: QueryResult, userID: UUID) throws -> Caller {
        guard let row = result.first else {
            throw HTTPError(
                .unauthorized, code: "unknown_user", "The token's user does not exist",
                headers: [("WWW-Authenticate", "Bearer error=\"invalid_token\"")])
        }
        guard let firmID = try row.optionalUUID("firm_id") else {
            throw HTTPError(.forbidden, code: "no_firm", "The user does not belong to a firm")
        }
        guard let role = Caller.Role(rawValue: try row.string("role")) else {
            throw HTTPError(.forbidden, code: "unknown_role", "The user's role is not recognised")
        }
        return Caller(userID: userID, firmID: firmID, role: role)
    }
}
