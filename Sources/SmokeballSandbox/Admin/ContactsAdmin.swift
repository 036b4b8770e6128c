import Basics
import FastCGI
import Foundation
import PostgreSQL

/// Loopback-only contact controls (SandboxAdmin checks the caller):
///
///     POST /_sandbox/accounts/{accountId}/contacts/seed   {count}    → 201 {inserted}
///     POST /_sandbox/accounts/{accountId}/contacts/{id}   {changes}  → 200 Contact
///
/// Seeding fills an account with fictional contacts, readable at once and without events (as if
/// they predate the integration). An edit acts as a firm user changing the contact in Smokeball:
/// `changes` is a ContactDto fragment and the event's source is Smokeball.
struct ContactsAdmin: SandboxAdminExtension {
    let database: Database
    let now: Date

    static let maximumSeed = 100_000

    func handle(_ request: Request) throws -> Response? {
        let parts = request.path.split(separator: "/").map(String.init)
        guard parts.count == 5, parts[0] == "_sandbox", parts[1] == "accounts", parts[3] == "contacts" else {
            return nil
        }
        guard request.method == "POST" else { throw Contacts.methodNotAllowed(request) }
        guard let accountID = UUID(uuidString: parts[2]) else {
            throw SandboxFailure.problem(.notFound, "Not Found", "No such account")
        }
        let body = try SandboxAdmin(database: database, now: now).body(request)
        if parts[4] == "seed" { return try seed(body, accountID: accountID) }
        guard let id = UUID(uuidString: parts[4]) else { throw Contacts.notFound }
        return try edit(body, accountID: accountID, id: id, origin: Contacts.origin(request))
    }

    func region(_ connection: Connection, _ accountID: UUID) throws -> String {
        guard let region = try connection.execute("SELECT region FROM sb_accounts WHERE id = $1", [accountID]).first
        else { throw SandboxFailure.problem(.notFound, "Not Found", "No such account") }
        return try region.string("region")
    }

    func seed(_ body: [String: Any], accountID: UUID) throws -> Response {
        guard let number = body["count"] as? NSNumber, JSONBoolean.value(number) == nil,
            number.doubleValue == number.doubleValue.rounded(),
            (1...Double(Self.maximumSeed)).contains(number.doubleValue)
        else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "count must be an integer from 1 to \(Self.maximumSeed)")
        }
        let count = number.intValue
        let inserted = try database.transaction { connection in
            _ = try region(connection, accountID)
            // One statement for any count. Names cycle through fixed lists; `k` continues after the
            // account's existing contacts so emails and phone numbers stay unique across seeds. Every
            // tenth contact is an organisation. Times step back 1 ms per row, all before now.
            let inserted = try connection.execute(
                """
                WITH start AS (SELECT count(*) AS n FROM sb_contacts WHERE account_id = $1),
                rows AS (
                    SELECT g, start.n + g AS k,
                        (ARRAY['Olivia','Liam','Emma','Noah','Amelia','Oliver','Ava','Elijah','Sophia','Lucas',
                               'Mia','Mateo','Isabella','Levi','Charlotte','Ezra','Harper','James','Evelyn',
                               'Leo','Aria','Mason','Luna','Kai'])[1 + (start.n + g) % 24] AS first_name,
                        (ARRAY['Nguyen','Garcia','Okafor','Smith','Patel','Kowalski','Rossi','Haddad','Kim',
                               'Johansson','Murphy','Silva','Cohen','Tanaka','Dubois','Novak','Walker','Reyes',
                               'Fischer','Brennan','Mendoza','Osei','Lindqvist','Moreau','Singh',
                               'Alvarez','Yilmaz','Hughes','Castro','Ivanova'])
                            [1 + ((start.n + g) / 24) % 30] AS last_name,
                        (ARRAY['Holdings','Partners','Builders','Logistics','Bakery','Dental','Motors','Studios'])
                            [1 + (start.n + g) % 8] AS trade,
                        lpad(((start.n + g) % 10000000)::text, 7, '0') AS digits,
                        $3::timestamptz - ($2 - g) * interval '1 millisecond' AS at
                    FROM start, generate_series(1, $2::int) AS g
                ),
                shaped AS (
                    SELECT k, at, k % 10 = 0 AS company, digits,
                        CASE WHEN k % 10 = 0 THEN last_name || ' ' || trade || ' LLC'
                             ELSE first_name || ' ' || last_name END AS name,
                        CASE WHEN k % 10 = 0
                             THEN 'office' || k || '@' || lower(last_name) || '-' || lower(trade) || '.example.com'
                             ELSE lower(first_name) || '.' || lower(last_name) || k || '@example.com' END AS email,
                        first_name, last_name
                    FROM rows
                )
                INSERT INTO sb_contacts (id, account_id, version_id, type, name, email, phone, external_system_id,
                                         is_deleted, doc, created_at, updated_at, visible_at)
                SELECT gen_random_uuid(), $1, gen_random_uuid(),
                    CASE WHEN company THEN 'Organisation' ELSE 'Person' END, name, email, '555' || digits, NULL, false,
                    jsonb_build_object(CASE WHEN company THEN 'company' ELSE 'person' END,
                        CASE WHEN company
                            THEN jsonb_build_object('name', name, 'type', 'Limited Liability Company')
                            ELSE jsonb_build_object('firstName', first_name, 'lastName', last_name)
                        END || jsonb_build_object('email', email, 'phone', jsonb_build_object('areaCode', '555',
                            'number', substr(digits, 1, 3) || '-' || substr(digits, 4)))),
                    at, at, at
                FROM shaped
                """, [accountID, count, now]
            ).affectedRows
            // As for seeded matters: the planner learns of the new rows now (MattersAdmin.seed).
            try connection.execute("ANALYZE sb_contacts")
            return inserted
        }
        return Response.json(["inserted": inserted], status: .created)
    }

    /// A firm user's edit: applied at once, recorded with source Smokeball. Smokeball's own screens
    /// refuse what its processing would reject, so that is a 400 here rather than an error event.
    func edit(_ body: [String: Any], accountID: UUID, id: UUID, origin: String) throws -> Response {
        guard let fragment = body["changes"] as? [String: Any] else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "changes must be an object (a ContactDto)")
        }
        let changes = try ContactDocument.Changes(fragment)
        let row = try database.transaction { connection in
            let outcome = try ContactDocument.apply(
                changes, to: id, account: accountID, region: try region(connection, accountID), caller: nil,
                firmUser: try SandboxAdmin.firmUser(connection, accountID, body), now: now, connection: connection)
            if case .failed(let reason) = outcome {
                throw SandboxFailure.problem(.badRequest, "Bad Request", reason)
            }
            return try connection.execute(
                "SELECT \(Contacts.columns) FROM sb_contacts WHERE id = $1", [id]
            ).single()
        }
        return Response.json(try ContactDocument.render(row, origin: origin, fields: nil))
    }
}
