import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// Single flight across processes, not only threads: five processes with ten threads each, every
/// one with its own database session and HTTP client, call Smokeball through the token provider
/// at once on an expired token. The sandbox's log must show exactly one refresh.
@Suite(.serialized) struct RefreshAcrossProcessesTests {
    @Test("fifty callers in five processes on an expired token make exactly one refresh at the sandbox")
    func oneRefreshAcrossProcesses() throws {
        try ConnectionFlow.with { flow in
            try flow.connectFirm()
            try flow.seed.connection.execute(
                "UPDATE firm_integrations SET token_expires_at = now() - interval '1 second' WHERE firm_id = $1",
                [flow.firm.id])
            let refreshesBefore = try flow.refreshRequests()
            var environment = flow.sandbox.environment()
            environment["DATABASE_URL"] = flow.sandbox.database.appURL
            environment["CASEHUG_JWT_SECRET"] = TestEnvironment.jwtSecret
            environment["TOKEN_ENCRYPTION_KEY"] = Data(ConnectionFlow.key).base64EncodedString()
            environment["SMOKEBALL_FLOOD_USER_ID"] = flow.firm.standard.uuidString
            let started = Date()
            let succeeded = try SmokeballSandbox.runFloods(
                processes: 5, arguments: ["--threads", "10"], environment: environment)
            let refreshes = try flow.refreshRequests() - refreshesBefore
            print(
                "token refresh across processes: 5 processes × 10 threads on an expired token -> \(refreshes) refresh(es),"
                    + " \(succeeded) calls succeeded, \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
            #expect(succeeded == 50)
            #expect(refreshes == 1)
            let expires = try flow.seed.connection.execute(
                "SELECT token_expires_at > now() + interval '50 minutes' AS fresh FROM firm_integrations WHERE firm_id = $1",
                [flow.firm.id]
            ).single().bool("fresh")
            #expect(expires)
        }
    }
}
