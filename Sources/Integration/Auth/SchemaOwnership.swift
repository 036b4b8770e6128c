import PostgreSQL

/// Checks after migrating that row-level security can actually hold: every relation in the
/// `public` schema belongs to `owner`, a role that is neither a superuser nor BYPASSRLS (FORCE
/// only binds an owner that obeys policies at all), every table with a `firm_id` column has
/// row-level security enabled and forced, and every SECURITY DEFINER function belongs to `owner`
/// too (it runs with its owner's rights). A migration that forgets `ALTER ... OWNER` fails the
/// deploy here instead of silently opening a table to every firm.
public enum SchemaOwnership {
    public struct Violation: Error, Sendable, Equatable, CustomStringConvertible {
        public let object: String
        public let problem: String
        public var description: String { "\(object): \(problem)" }
    }

    public struct AuditError: Error, Sendable, CustomStringConvertible {
        public let violations: [Violation]
        public var description: String {
            "row-level security would not hold:\n" + violations.map { "  - \($0)" }.joined(separator: "\n")
        }
    }

    /// Throws `AuditError` listing every problem found.
    public static func verify(_ connection: Connection, owner: String) throws {
        let violations = try audit(connection, owner: owner)
        guard violations.isEmpty else { throw AuditError(violations: violations) }
    }

    public static func audit(_ connection: Connection, owner: String) throws -> [Violation] {
        var violations: [Violation] = []
        let role = try connection.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", [owner]
        ).first
        guard let role else { return [Violation(object: "role \(owner)", problem: "does not exist")] }
        if try role.bool("rolsuper") || role.bool("rolbypassrls") {
            violations.append(
                Violation(object: "role \(owner)", problem: "is a superuser or BYPASSRLS role, which skips policies"))
        }
        // Relations made by an extension belong to it; schema_migrations is the migrator's own
        // bookkeeping, holds no firm data and is granted to nobody.
        let relations = try connection.execute(
            """
            SELECT c.relname::text AS name, pg_get_userbyid(c.relowner)::text AS owner,
                   c.relkind IN ('r', 'p') AS is_table, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
                   (c.relname = 'firms' OR EXISTS (
                       SELECT 1 FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attname = 'firm_id' AND NOT a.attisdropped
                   )) AS firm_scoped
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
              AND c.relname <> 'schema_migrations'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
            ORDER BY c.relname
            """)
        for row in relations.rows {
            let name = try row.string("name")
            if try row.string("owner") != owner {
                violations.append(
                    Violation(object: name, problem: "is owned by \(try row.string("owner")), not \(owner)"))
            }
            if try row.bool("is_table") && row.bool("firm_scoped") && !(row.bool("rls") && row.bool("forced")) {
                violations.append(Violation(object: name, problem: "holds firm data without forced row-level security"))
            }
        }
        let definers = try connection.execute(
            """
            SELECT p.oid::regprocedure::text AS name, pg_get_userbyid(p.proowner)::text AS owner
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public' AND p.prosecdef
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
            ORDER BY 1
            """)
        for row in definers.rows where try row.string("owner") != owner {
            violations.append(
                Violation(
                    object: try row.string("name"),
                    problem: "is SECURITY DEFINER owned by \(try row.string("owner")), not \(owner)"))
        }
        return violations
    }
}
