import Foundation
import PostgreSQL

/// `casehug-admin connections [--firm F]`: every firm's Smokeball connection and its health.
enum ConnectionsCommand {
    static func run(_ invocation: OpsCommand.Invocation) throws -> String {
        let firm = try invocation.firm()
        let connection = try invocation.connect()
        if let firm { try invocation.requireFirm(connection, firm) }
        var table = OpsTable(
            name: "connections",
            columns: [
                "firm_id", "firm", "account_id", "region", "active", "token_expires_at", "refresh_token_expires_at",
                "needs_reconnect", "needs_reconnect_reason",
            ])
        for row in try connection.execute("SELECT * FROM ops_connections($1)", [firm]).rows {
            table.rows.append([
                .id(try row.uuid("firm_id")), .text(try row.optionalString("firm_name")),
                .text(try row.optionalString("account_id")), .text(try row.optionalString("region")),
                .flag(try row.bool("is_active")), .time(try row.optionalDate("token_expires_at")),
                .time(try row.optionalDate("refresh_token_expires_at")),
                .flag(try row.optionalBool("needs_reconnect") ?? false),
                .text(try row.optionalString("needs_reconnect_reason")),
            ])
        }
        return try table.render(json: invocation.json)
    }
}
