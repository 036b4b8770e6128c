import Cryptography
import Foundation
import PostgreSQL

/// `casehug-admin rotate-encryption-key [--batch N] [--limit N]`: re-seals every sealed value (tokens,
/// webhook keys, PKCE verifiers) under the current `TOKEN_ENCRYPTION_KEY_ID`, online.
///
/// Before: every route and the worker run with the new key as `TOKEN_ENCRYPTION_KEY` (and its
/// id) and the old ones in `TOKEN_ENCRYPTION_KEYS`, so they read both and write only the new one.
/// Then this runs with the same settings: it reads a batch of values not under the current key,
/// opens each and stores it re-sealed in its own short transaction, only if the row still holds
/// the value it read (a token a route refreshed meanwhile is already under the new key and
/// stays). Interrupted, it is simply run again: what is done no longer matches. Old keys can
/// leave the settings once it reports nothing remaining. `--limit` stops after that many values
/// (a rotation in slices, say one per night).
enum RotateKeyCommand {
    static func run(_ invocation: OpsCommand.Invocation) throws -> String {
        let vault: TokenVault
        let keyID: UInt8
        do {
            let keys = try Configuration.tokenKeys(invocation.environment)
            vault = try TokenVault.fromEnvironment(invocation.environment)
            keyID = keys.id
        } catch {
            throw OpsError(code: "configuration", message: error.description)
        }
        let batch: Int
        let limit: Int
        do {
            batch = try invocation.options.integer("batch", in: 1...10_000) ?? 200
            limit = try invocation.options.integer("limit", in: 1...Int(Int32.max)) ?? Int(Int32.max)
        } catch {
            throw invocation.usageError(error.message)
        }
        let connection = try invocation.connect()
        var resealed: Int64 = 0
        var changed: Int64 = 0
        var unreadable: Int64 = 0
        var cursor: (source: String, row: UUID, column: String)?
        rotation: while true {
            let rows = try connection.execute(
                "SELECT * FROM ops_sealed_values($1, $2, $3, $4, $5)",
                [Int(keyID), cursor?.source, cursor?.row, cursor?.column, batch]
            ).rows
            guard !rows.isEmpty else { break }
            for row in rows {
                guard resealed + changed + unreadable < limit else { break rotation }
                let source = try row.string("source")
                let rowID = try row.uuid("row_id")
                let column = try row.string("column_name")
                let firm = try row.uuid("firm_id")
                let sealed = try row.bytes("sealed")
                cursor = (source, rowID, column)
                guard let name = TokenVault.Column(rawValue: column),
                    let plain = try? vault.open(
                        sealed, firmID: firm, platform: try row.string("platform"), column: name)
                else {
                    unreadable += 1
                    continue
                }
                let fresh = try vault.seal(plain, firmID: firm, platform: try row.string("platform"), column: name)
                // One statement: its own transaction, a row lock held for an instant.
                let replaced = try connection.execute(
                    "SELECT ops_reseal($1, $2, $3, $4, $5, $6) AS done", [source, rowID, column, firm, sealed, fresh]
                ).single().bool("done")
                if replaced { resealed += 1 } else { changed += 1 }
            }
        }
        let remaining = try connection.execute(
            "SELECT count(*) AS n FROM ops_sealed_values($1, NULL, NULL, NULL, 10000)", [Int(keyID)]
        ).single().int("n")
        let table = OpsTable(
            name: "rotation", columns: ["key_id", "resealed", "changed_meanwhile", "unreadable", "remaining"],
            rows: [
                [
                    .integer(Int64(keyID)), .integer(resealed), .integer(changed), .integer(unreadable),
                    .integer(remaining),
                ]
            ])
        let output = try table.render(json: invocation.json)
        // A value no configured key opens stays under its old key: the old key must not go.
        guard unreadable == 0 else { throw OpsError(code: "unreadable_values", message: "\n" + output) }
        return output
    }
}
