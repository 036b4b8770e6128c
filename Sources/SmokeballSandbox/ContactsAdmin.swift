import FastCGI
import Foundation
import PostgreSQL

/// Placeholder until the resource's admin endpoints land: owns no paths yet.
struct ContactsAdmin: SandboxAdminExtension {
    let database: Database
    let now: Date

    func handle(_ request: Request) throws -> Response? { nil }
}
