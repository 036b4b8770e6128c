import FastCGI
import Foundation
import PostgreSQL

#if canImport(Glibc)
    import Glibc
#endif

/// Injected trouble for tests: the integration must survive Smokeball's 500s, 429s, slow
/// answers and dropped connections, so the sandbox can produce them on demand.
struct Faults {
    let database: Database

    enum Outcome {
        case proceed
        case fail(SandboxFailure)
        case dropConnection
    }

    /// Applies the faults matching the path (and partner): sleeps for added latency, then
    /// decides, per fault and with its share as the probability, whether this request fails.
    /// `clientID` nil (the upload and download URLs, which name no partner): only faults without
    /// a `client_id` apply.
    func apply(path: String, clientID: String?) throws -> Outcome {
        let faults = try database.withConnection {
            try $0.execute(
                """
                SELECT status, share, latency_ms, drop_connection,
                       coalesce((SELECT retry_after_header FROM sb_clients WHERE client_id = $2), false) AS retry_after
                FROM sb_faults
                WHERE strpos($1, path_prefix) = 1 AND (client_id IS NULL OR client_id = $2) ORDER BY id
                """, [path, clientID]
            ).rows
        }
        for fault in faults {
            let latency = try fault.int("latency_ms")
            if latency > 0 { usleep(useconds_t(min(latency, 60_000)) * 1000) }
            guard Double.random(in: 0..<1) < (try fault.double("share")) else { continue }
            if try fault.bool("drop_connection") { return .dropConnection }
            if let status = try fault.optionalInt("status") {
                let code = Int(status)
                // A 429 as the gateway answers it; Retry-After only under the partner's knob.
                if code == 429 {
                    return .fail(.tooManyRequests(retryAfterSeconds: try fault.bool("retry_after") ? 1 : nil))
                }
                return .fail(.problem(HTTPStatus(code, Self.reason(code)), Self.reason(code), "Injected fault"))
            }
        }
        return .proceed
    }

    /// Faults on the auth server and the upload and download URLs, answered in the form the
    /// caller there expects: OAuth's JSON error at the token endpoint, an HTML page at the
    /// authorize endpoint, ProblemDetails elsewhere.
    /// `beforeDrop` runs before a dropped connection kills the worker (the token endpoint logs it).
    func applyOffAPI(_ request: Request, beforeDrop: () -> Void = {}) throws {
        // The partner at the auth server: its Basic credentials, else the client_id it sends.
        let clientID =
            request.path.hasPrefix("/oauth2/")
            ? Secrets.basicCredentials(request.header("authorization"))?.id ?? request.formFields?["client_id"]
                ?? request.queryValue("client_id") : nil
        switch try apply(path: request.path, clientID: clientID) {
        case .proceed:
            return
        case .dropConnection:
            beforeDrop()
            Self.dropConnection()
        case .fail(let failure):
            let (status, detail, headers): (HTTPStatus, String, [(String, String)])
            switch failure {
            case .problem(let code, _, let text, let extra): (status, detail, headers) = (code, text, extra)
            case .tooManyRequests(let seconds):
                (status, detail, headers) = (.tooManyRequests, "Injected fault", SandboxFailure.retryAfter(seconds))
            default: throw failure
            }
            switch request.path {
            case "/oauth2/token":
                let error = status.code == 500 ? "server_error" : "temporarily_unavailable"
                throw SandboxFailure.oauth(status, error, detail, headers: headers)
            case "/oauth2/authorize":
                throw SandboxFailure.page(status, "The sign-in service is unavailable. Try again later.")
            default:
                throw failure
            }
        }
    }

    /// A dropped connection as the client sees it: the worker dies mid-request (nginx answers
    /// 502 and the runtime's supervisor starts a new worker).
    static func dropConnection() -> Never {
        _exit(1)
    }

    static func reason(_ code: Int) -> String {
        switch code {
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Gateway Timeout"
        }
    }
}
