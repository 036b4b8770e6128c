import FastCGI
import Foundation
import PostgreSQL

/// Changes in an account, recorded for webhook delivery.
enum Events {
    static func record(
        _ connection: Connection, account: UUID, type: String, caller: APIServer.Caller?, payload: [String: Any]
    ) throws {
        try connection.execute(
            """
            INSERT INTO sb_events (account_id, type, source, request_id, client_id, payload)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb)
            """,
            [
                account, type, caller == nil ? "Smokeball" : "API", caller?.requestID, caller?.clientID,
                SQLValue.json(String(decoding: try JSONWriter.encode(payload), as: UTF8.self)),
            ])
    }
}
