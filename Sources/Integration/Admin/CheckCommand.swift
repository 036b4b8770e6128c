import Foundation
import HTTPClient
import PostgreSQL
import Smokeball

/// `casehug-admin check [--dir MIGRATIONS_DIR]`: what a host needs before it serves, each line
/// ok or not, the command failing when one is not:
///
/// - configuration: the routes' settings, validated as a route validates them at start
///   (`Configuration`, the token keys, the Smokeball settings);
/// - database: the routes' `DATABASE_URL` connects, as a role row-level security binds;
/// - migrations: every file in `--dir` is applied (without `--dir`: the latest applied);
/// - smokeball: one unauthenticated GET of the API base URL (the sandbox's, when
///   `SMOKEBALL_API_BASE_URL` names it) through the project's HTTP client: any answer is reachable.
enum CheckCommand {
    struct Outcome {
        let check: String
        let ok: Bool
        let detail: String
    }

    static func run(_ invocation: OpsCommand.Invocation) throws -> String {
        let environment = invocation.environment
        var outcomes: [Outcome] = []
        var smokeball: SmokeballConfiguration?
        do {
            let configuration = try Configuration.fromEnvironment(environment)
            _ = try TokenVault(configuration: configuration)
            smokeball = try SmokeballConfiguration.fromEnvironment(environment)
            let connected = smokeball?.isConfigured == true ? "Smokeball credentials set" : "no Smokeball credentials"
            outcomes.append(Outcome(check: "configuration", ok: true, detail: "valid; " + connected))
        } catch {
            outcomes.append(Outcome(check: "configuration", ok: false, detail: "\(error)"))
        }
        outcomes.append(database(environment))
        outcomes.append(migrations(invocation))
        if let smokeball {
            outcomes.append(reachability(smokeball))
        } else {
            outcomes.append(Outcome(check: "smokeball", ok: false, detail: "not checked: the settings are not valid"))
        }
        let table = OpsTable(
            name: "checks", columns: ["check", "ok", "detail"],
            rows: outcomes.map { [.text($0.check), .flag($0.ok), .text($0.detail)] })
        let output = try table.render(json: invocation.json)
        guard outcomes.allSatisfy(\.ok) else { throw OpsError(code: "check_failed", message: "\n" + output) }
        return output
    }

    /// The routes' own URL and options: a superuser or BYPASSRLS role is refused here as there.
    static func database(_ environment: [String: String]) -> Outcome {
        guard let url = environment["DATABASE_URL"], !url.isEmpty else {
            return Outcome(check: "database", ok: false, detail: "DATABASE_URL is not set")
        }
        do {
            let connection = try Connection(url: url, applicationName: "casehug-admin", options: .routes)
            let role = try connection.execute("SELECT current_user::text AS role").single().string("role")
            return Outcome(check: "database", ok: true, detail: "connected as \(role), a role row-level security binds")
        } catch {
            return Outcome(check: "database", ok: false, detail: "\(error)")
        }
    }

    static func migrations(_ invocation: OpsCommand.Invocation) -> Outcome {
        do {
            let connection = try invocation.connect()
            let applied = Set(
                try connection.execute("SELECT version FROM ops_applied_migrations()").rows.map {
                    Int(try $0.int("version"))
                })
            guard let directory = invocation.options["dir"] else {
                let latest = applied.max().map { String(format: "%03d", $0) } ?? "none"
                return Outcome(check: "migrations", ok: !applied.isEmpty, detail: "latest applied \(latest) (no --dir)")
            }
            let files = try Migrator(directory: directory).migrations
            let missing = files.filter { !applied.contains($0.version) }.map(\.name)
            guard missing.isEmpty else {
                return Outcome(
                    check: "migrations", ok: false, detail: "not applied: " + missing.joined(separator: ", "))
            }
            return Outcome(check: "migrations", ok: true, detail: "all \(files.count) applied")
        } catch is AdminCommand.UsageError {
            return Outcome(check: "migrations", ok: false, detail: "no URL for the casehug_ops role to read them with")
        } catch {
            return Outcome(check: "migrations", ok: false, detail: "\(error)")
        }
    }

    static func reachability(_ configuration: SmokeballConfiguration) -> Outcome {
        let url = configuration.endpoints().apiBaseURL
        do {
            let client = try HTTPClient(maxResponseBytes: 64 * 1024)
            let response = try client.send(HTTPRequest(method: "GET", url: url, timeout: 10, connectTimeout: 5))
            return Outcome(check: "smokeball", ok: true, detail: "\(url) answered HTTP \(response.status)")
        } catch {
            return Outcome(check: "smokeball", ok: false, detail: "\(url) unreachable: \(error)")
        }
    }
}
