import FastCGI
import Foundation
import PostgreSQL

/// The request log tests count on (`sb_requests`): every API request, and every call to the
/// token endpoint with its grant type, whatever the answer (refusals and injected faults too;
/// status 0: the connection was dropped). Never a code, token, secret or verifier: only the
/// method, path, `RequestId`, partner, grant type and status.
enum RequestLog {
    static let grantTypes: Set<String> = ["authorization_code", "refresh_token", "client_credentials"]

    static func record(
        _ database: Database, _ request: Request, clientID: String?, requestID: String?, status: Int,
        grantType: String? = nil
    ) throws {
        _ = try database.withConnection {
            try $0.execute(
                """
                INSERT INTO sb_requests (client_id, method, path, request_id, status, grant_type)
                VALUES ($1, $2, $3, $4, $5, $6)
                """, [clientID, request.method, request.path, requestID, status, grantType])
        }
    }

    /// A token-endpoint call: the partner it names (Basic credentials, else the form's
    /// `client_id`) when that partner is registered, whether or not it authenticated, so a
    /// refused call counts against the partner that made it; the grant type when it is one
    /// Cognito knows (anything else is not repeated).
    static func recordToken(_ database: Database, _ request: Request, status: Int) {
        let form = request.formFields
        // A NUL cannot reach PostgreSQL text: such an id names no partner.
        let claimed = (Secrets.basicCredentials(request.header("authorization"))?.id ?? form?["client_id"])
            .flatMap { $0.contains("\0") ? nil : $0 }
        let grant = form?["grant_type"].flatMap { grantTypes.contains($0) ? $0 : nil }
        _ = try? database.withConnection {
            try $0.execute(
                """
                INSERT INTO sb_requests (client_id, method, path, request_id, status, grant_type)
                VALUES ((SELECT client_id FROM sb_clients WHERE client_id = $1), $2, $3, $4, $5, $6)
                """, [claimed, request.method, request.path, request.header("requestid"), status, grant])
        }
    }
}
