import FastCGI
import Foundation
import PostgreSQL

/// Placeholder until the resource lands: owns no paths yet.
struct Webhooks: APIResource {
    let database: Database
    let now: Date

    func handle(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response? { nil }
}
