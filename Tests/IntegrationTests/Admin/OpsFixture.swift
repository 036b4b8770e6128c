import Cryptography
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// A migrated database, rows arranged as the superuser, and `casehug-admin`'s ops commands run
/// in-process as the `casehug_ops` role (migration 043).
struct OpsFixture {
    let database: ServiceDatabase
    let seed: Seed

    static func with(_ body: (OpsFixture) throws -> Void) throws {
        try ServiceDatabase.with { database in try body(OpsFixture(database: database, seed: try Seed(database))) }
    }

    var environment: [String: String] { ["CASEHUG_OPS_DATABASE_URL": database.opsURL] }

    func run(_ arguments: [String], environment extra: [String: String] = [:]) throws -> String {
        try AdminCommand.run(arguments, environment: environment.merging(extra) { $1 })
    }

    /// The command's `--json` answer: its one top-level key's rows.
    func rows(_ arguments: [String], key: String, environment extra: [String: String] = [:]) throws -> [[String: Any]] {
        let text = try run(arguments + ["--json"], environment: extra)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(Array(object.keys) == [key])
        return try #require(object[key] as? [[String: Any]])
    }

    /// The `OpsError` code `body` throws, or nil.
    static func errorCode(_ body: () throws -> Any) -> String? {
        do {
            _ = try body()
            return nil
        } catch let error as OpsError {
            return error.code
        } catch {
            return "other: \(error)"
        }
    }

    /// A firm's Smokeball connection. `accessToken` nil: no token (disconnected).
    func connect(
        _ firm: UUID, account: String = UUID().uuidString.lowercased(), region: String = "US", active: Bool = true,
        accessToken: [UInt8]? = [1], refreshToken: [UInt8]? = [2], webhookSecret: [UInt8]? = nil,
        needsReconnect: String? = nil, refreshExpiresIn: Double? = 86_400
    ) throws {
        try seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO firm_integrations (
                    firm_id, platform, access_token, refresh_token, webhook_secret, is_active, smokeball_account_id,
                    region, needs_reconnect_reason, token_expires_at, refresh_token_expires_at, connected_at)
                VALUES ($1, 'smokeball', $2, $3, $4, $5, $6, $7, $8, now() + interval '1 hour',
                    now() + make_interval(secs => $9), now())
                """,
                [
                    firm, accessToken, refreshToken, webhookSecret, active, account, region, needsReconnect,
                    refreshExpiresIn,
                ])
        }
    }

    /// A job in `status`, inserted directly (`finishedSecondsAgo` for a finished one).
    @discardableResult
    func job(
        _ firm: UUID, kind: String = "sync_matter", key: String? = nil, status: String,
        finishedSecondsAgo: Double = 10, waitingSeconds: Double = 0
    ) throws -> UUID {
        let id = UUID()
        try seed.asFirm(firm) { connection in
            try connection.execute(
                """
                INSERT INTO jobs (id, firm_id, kind, key, status, lease_id, lease_until, run_after, finished_at,
                    last_error)
                VALUES ($1, $2, $3, $4, $5,
                    CASE WHEN $5 = 'running' THEN gen_random_uuid() END,
                    CASE WHEN $5 = 'running' THEN now() + interval '1 minute' END,
                    CASE WHEN $5 = 'running' THEN now() + interval '1 minute' ELSE now() - make_interval(secs => $7) END,
                    CASE WHEN $5 IN ('succeeded', 'dead', 'superseded') THEN now() - make_interval(secs => $6) END,
                    CASE WHEN $5 = 'dead' THEN 'Smokeball refused the matter' END)
                """, [id, firm, kind, key, status, finishedSecondsAgo, waitingSeconds])
        }
        return id
    }

    func status(ofJob id: UUID) throws -> String {
        try seed.connection.execute("SELECT status FROM jobs WHERE id = $1", [id]).single().string("status")
    }
}
