import CLibPQ
import Foundation

extension Connection {
    /// The SCRAM-SHA-256 verifier of `password` for `user` (`SCRAM-SHA-256$4096:...`), computed
    /// here by libpq. `ALTER ROLE ... PASSWORD` given a verifier stores it as is, so the plain
    /// password never travels in a statement, where the server would log it on an error.
    public func scramHashedPassword(_ password: String, user: String) throws(DatabaseError) -> String {
        guard let verifier = PQencryptPasswordConn(handle, password, user, "scram-sha-256") else {
            let message = PQerrorMessage(handle).map { String(cString: $0) }
            throw DatabaseError(.query, serverMessage: message.map(Self.firstLine))
        }
        defer { PQfreemem(verifier) }
        return String(cString: verifier)
    }
}
