import Basics
import FastCGI
import Foundation
import PostgreSQL

/// Loopback-only controls over an account's matters:
///
///     POST /_sandbox/accounts/{accountId}/matters/seed          {count}  → 201 {accountId, count}
///     POST /_sandbox/accounts/{accountId}/matters/{id}/status   {status} → 200 {id, status}
///
/// Seeding fills an account with fictional matters for paging, sync and import tests: visible at
/// once and without events, as if they predated the integration; of the matter types of the
/// account's state, each with a client among the account's contacts (seed those first). A status change acts as a firm user
/// in Smokeball itself, so its events have source Smokeball and no RequestId.
struct MattersAdmin: SandboxAdminExtension {
    let database: Database
    let now: Date

    static let maximumSeed = 100_000

    func handle(_ request: Request) throws -> Response? {
        let parts = request.path.split(separator: "/").map(String.init)
        guard parts.count >= 5, parts[0] == "_sandbox", parts[1] == "accounts", parts[3] == "matters" else {
            return nil
        }
        let isSeed = parts.count == 5 && parts[4] == "seed"
        let isStatus = parts.count == 6 && parts[5] == "status"
        guard isSeed || isStatus else { return nil }
        guard request.method == "POST" else {
            throw SandboxFailure.problem(.methodNotAllowed, "Method Not Allowed", "Use POST")
        }
        guard let accountID = UUID(uuidString: parts[2]) else {
            throw SandboxFailure.problem(.notFound, "Not Found", "No such account")
        }
        let body = try SandboxAdmin(database: database, now: now).body(request)
        if isSeed { return try seed(accountID, body) }
        guard let matterID = UUID(uuidString: parts[4]) else {
            throw SandboxFailure.problem(.notFound, "Not Found", "No such matter")
        }
        return try changeStatus(accountID, matterID, body)
    }

    func region(_ connection: Connection, _ accountID: UUID) throws -> String {
        guard
            let region = try connection.execute("SELECT region FROM sb_accounts WHERE id = $1", [accountID]).first?
                .string("region")
        else { throw SandboxFailure.problem(.notFound, "Not Found", "No such account") }
        return region
    }

    /// One INSERT ... SELECT over generate_series, so 10,000 matters take well under a second.
    func seed(_ accountID: UUID, _ body: [String: Any]) throws -> Response {
        guard let number = body["count"] as? NSNumber, JSONBoolean.value(number) == nil,
            let count = Int(exactly: number.doubleValue), (1...Self.maximumSeed).contains(count)
        else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "count must be an integer from 1 to \(Self.maximumSeed)")
        }
        let inserted = try database.transaction { connection -> Int in
            let region = try region(connection, accountID)
            // Surnames for fictional clients; statuses weighted towards Open as in a real firm.
            let inserted = try connection.execute(
                """
                WITH types AS (
                    SELECT array_agg(id ORDER BY location, category, name, id) AS ids FROM sb_matter_types
                    WHERE region = $2 AND type = 0 AND NOT is_deleted
                      AND location = coalesce((SELECT state FROM sb_accounts WHERE id = $1), location)
                ),
                -- The account's contacts, in the order they were seeded: each matter's client is one
                -- of them (a client in every fourth pair has two matters), none when there are none.
                contacts AS (
                    SELECT array_agg(id ORDER BY created_at, id) AS ids FROM sb_contacts
                    WHERE account_id = $1 AND NOT is_deleted AND type IN ('Person', 'Organisation')
                ),
                start AS (SELECT count(*) AS n FROM sb_matters WHERE account_id = $1),
                seeded AS (
                    SELECT g, s.n + g AS seq, t.ids[1 + (g * 7) % array_length(t.ids, 1)] AS type_id,
                           CASE WHEN c.ids IS NULL THEN '{}'::uuid[]
                                ELSE ARRAY[c.ids[1 + ((g - 1) * 3 / 4) % array_length(c.ids, 1)]] END AS client_ids,
                           (ARRAY['Open', 'Open', 'Open', 'Open', 'Pending', 'Closed', 'Open', 'Cancelled'])[1 + g % 8]
                               AS status,
                           (ARRAY['Smith', 'Nguyen', 'Garcia', 'Okafor', 'Kowalski', 'Patel', 'O''Brien', 'Rossi',
                                  'Haddad', 'Lindqvist', 'Tanaka', 'Moreau', 'Fischer', 'Mbeki', 'Alvarez', 'Chen',
                                  'Novak', 'Murphy', 'Singh', 'Dubois', 'Kim', 'Silva', 'Walsh', 'Ibrahim'])[1 + g % 24]
                               AS client,
                           $3::timestamptz - make_interval(days => g % 1500) AS opened
                    FROM generate_series(1, $4::int) AS g, types t, contacts c, start s
                    WHERE t.ids IS NOT NULL
                )
                INSERT INTO sb_matters (id, account_id, version_id, number, matter_type_id, client_ids, status, is_lead,
                                        description, doc, created_at, updated_at, visible_at)
                SELECT gen_random_uuid(), $1, gen_random_uuid(), 'SB-' || lpad(x.seq::text, 6, '0'), x.type_id,
                       x.client_ids, x.status, false, x.client || ' - ' || mt.name,
                       jsonb_build_object(
                           'clientRole', mt.representative_options[1], 'otherSideRole', mt.representative_options[2],
                           'openedDate', to_char(x.opened AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                           'closedDate', CASE WHEN x.status = 'Closed'
                               THEN to_char((x.opened + interval '90 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                           END),
                       x.opened,
                       -- Distinct, increasing and in the past: a stable (updated_at, id) order to page over.
                       $3::timestamptz - make_interval(secs => $4::int - x.g), $3::timestamptz
                FROM seeded x JOIN sb_matter_types mt ON mt.id = x.type_id
                """, [accountID, region, now, count]
            ).affectedRows
            // Thousands of rows at once: the planner learns of them now, not at autovacuum's
            // next pass (until then a page of `GET /matters` took seconds instead of milliseconds).
            try connection.execute("ANALYZE sb_matters")
            return inserted
        }
        guard inserted == count else {
            throw SandboxFailure.problem(.conflict, "Conflict", "The account's region has no matter types to seed")
        }
        return Response.json(["accountId": accountID.uuidString.lowercased(), "count": inserted], status: .created)
    }

    func changeStatus(_ accountID: UUID, _ matterID: UUID, _ body: [String: Any]) throws -> Response {
        let field = try Matters.field(body["status"] ?? NSNull(), name: "status", kind: .status)
        guard case .text(let status) = field else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "status must be one of Open, Pending, Closed, Deleted or Cancelled")
        }
        try database.transaction { connection in
            let region = try region(connection, accountID)
            try Matters(database: database, now: now).apply(
                ["status": field], to: matterID, account: accountID, region: region, lockedContacts: false,
                caller: nil, firmUser: try SandboxAdmin.firmUser(connection, accountID, body), connection: connection)
        }
        return Response.json(["id": matterID.uuidString.lowercased(), "status": status])
    }
}
