import FastCGI
import Foundation
import PostgreSQL
import Testing

@testable import SmokeballSandbox

/// The `/_sandbox/` admin API: who may call it, and numbers checked before they are converted.
@Suite struct AdminInputTests {
    typealias F = SandboxFixture

    /// An admin call with a raw JSON body, so numbers JSONSerialization would not write can be sent.
    static func post(_ fixture: F, _ path: String, raw: String) -> Response {
        fixture.call("POST", path, headers: ["content-type": "application/json"], body: Array(raw.utf8))
    }

    /// Missing and empty REMOTE_ADDR (nginx without fastcgi_params, a misconfigured proxy) say
    /// nothing about the caller; only loopback addresses are admins.
    @Test(arguments: [
        ["REMOTE_ADDR": ""], [:], ["REMOTE_ADDR": "10.0.0.7"], ["REMOTE_ADDR": "127.0.0.2"],
        ["REMOTE_ADDR": "unix:"],
    ])
    func adminCallsFromAnUnknownOrRemoteAddressAreForbidden(params: [String: String]) throws {
        let fixture = try F()
        var all = params
        all["REQUEST_METHOD"] = "POST"
        all["DOCUMENT_URI"] = "/_sandbox/reset"
        let request = Request(params: all, body: [])
        let response = respond(to: request, with: fixture.handler, log: Logger(route: "t")).0
        #expect(response.status == .forbidden)
        // Nothing was reset: the partner still exists.
        let clients = try Connection(url: fixture.databaseURL).execute("SELECT count(*)::int AS n FROM sb_clients")
        #expect(try clients.single().int("n") == 1)
    }

    @Test(arguments: ["127.0.0.1", "::1"])
    func loopbackCallersAreAdmins(address: String) throws {
        let fixture = try F()
        let request = Request(
            params: ["REQUEST_METHOD": "GET", "DOCUMENT_URI": "/_sandbox/counters", "REMOTE_ADDR": address], body: [])
        #expect(respond(to: request, with: fixture.handler, log: Logger(route: "t")).0.status == .ok)
    }

    static let hugeOrWrong = [
        "1e300", "-1e300", "99999999999999999999", "-99999999999999999999", "9223372036854775808", "-1", "0.5",
        "1.5", "1e-300",
    ]

    /// A client with one setting out of range: 400 naming the setting, and no client stored.
    /// Before the range check, `Int(1e300)` trapped and took the worker down.
    @Test(arguments: ["access_ttl_seconds", "refresh_ttl_seconds", "write_delay_ms", "rate_per_second", "burst"])
    func outOfRangeClientSettingsAre400AndStoreNothing(key: String) throws {
        let fixture = try F()
        for value in Self.hugeOrWrong {
            // Fractions are fine for the rate and for the burst above 1; zero delay is fine.
            if key == "rate_per_second" && ["0.5", "1.5"].contains(value) { continue }
            if key == "burst" && value == "1.5" { continue }
            let response = Self.post(
                fixture, "/_sandbox/clients",
                raw: """
                    {"client_id": "huge", "client_secret": "s", "api_key": "k", "redirect_uris": ["http://x.test/cb"],
                     "\(key)": \(value)}
                    """)
            #expect(response.status == .badRequest, "\(key): \(value)")
            #expect((F.json(response)["detail"] as? String)?.contains(key) == true, "\(key): \(value)")
        }
        let stored = try Connection(url: fixture.databaseURL).execute(
            "SELECT count(*)::int AS n FROM sb_clients WHERE client_id = 'huge'")
        #expect(try stored.single().int("n") == 0)
    }

    @Test(arguments: ["latency_ms", "share"])
    func outOfRangeFaultSettingsAre400AndStoreNothing(key: String) throws {
        let fixture = try F()
        for value in Self.hugeOrWrong + ["60001"] {
            if key == "share" && ["0.5", "1e-300"].contains(value) { continue }
            let response = Self.post(
                fixture, "/_sandbox/faults", raw: #"{"path_prefix": "/firm", "status": 500, "\#(key)": \#(value)}"#)
            #expect(response.status == .badRequest, "\(key): \(value)")
            #expect((F.json(response)["detail"] as? String)?.contains(key) == true, "\(key): \(value)")
        }
        for value in ["1e300", "99999999999999999999", "500.5"] {
            let response = Self.post(
                fixture, "/_sandbox/faults", raw: #"{"path_prefix": "/firm", "status": \#(value)}"#)
            #expect(response.status == .badRequest, "status: \(value)")
        }
        let stored = try Connection(url: fixture.databaseURL).execute("SELECT count(*)::int AS n FROM sb_faults")
        #expect(try stored.single().int("n") == 0)
    }

    @Test(arguments: ["contacts", "matters"])
    func hugeSeedCountsAre400(resource: String) throws {
        let fixture = try F()
        let account = fixture.accountID.uuidString.lowercased()
        for value in ["1e300", "99999999999999999999", "-1e300", "2.5"] {
            let response = Self.post(
                fixture, "/_sandbox/accounts/\(account)/\(resource)/seed", raw: #"{"count": \#(value)}"#)
            #expect(response.status == .badRequest, "\(resource) count: \(value)")
        }
    }

    @Test func inRangeSettingsAreStillAccepted() throws {
        let fixture = try F()
        let response = Self.post(
            fixture, "/_sandbox/clients",
            raw: """
                {"client_id": "fine", "client_secret": "s", "api_key": "k", "redirect_uris": ["http://x.test/cb"],
                 "rate_per_second": 0.5, "burst": 1.5, "access_ttl_seconds": 2147483647, "refresh_ttl_seconds": 60,
                 "write_delay_ms": 0}
                """)
        #expect(response.status == .created)
        let fault = Self.post(
            fixture, "/_sandbox/faults", raw: #"{"path_prefix": "/x", "latency_ms": 60000, "share": 0}"#)
        #expect(fault.status == .created)
    }
}
