import FastCGI
import PostgreSQL

extension DatabaseError: HTTPErrorConvertible {
    /// An unreachable database is a 503 the client may retry, and so is one too busy to answer
    /// within the session's statement or lock timeout; text holding a NUL is the client's 400;
    /// anything else is our bug (500).
    /// The SQLSTATE goes to the log, never to the caller.
    public var httpError: HTTPError {
        if isUnavailable {
            return HTTPError(
                .serviceUnavailable, code: "database_unavailable", "The service is temporarily unavailable",
                headers: [("Retry-After", "5")], logDetail: description)
        }
        if isTimeout {
            return HTTPError(
                .serviceUnavailable, code: "database_busy", "The service is busy; try again shortly",
                headers: [("Retry-After", "2")], logDetail: description)
        }
        if kind == .invalidParameter {
            // A NUL in request text, refused before it reached SQL: the client's input, not our bug.
            return HTTPError(
                .badRequest, code: "invalid_value", "The request holds a value that cannot be stored (a NUL character)",
                logDetail: description)
        }
        return HTTPError.internalError(logDetail: description)
    }
}
