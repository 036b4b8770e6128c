import Basics
import Foundation
import HTTPClient
import Integration
import Smokeball

// Moves one upload from the document store to a Smokeball upload URL the way a sync does (the
// store's file, streamed with an empty Content-Type), then prints one JSON line: bytes, seconds,
// MiB/s and this process's peak RSS (VmHWM). scripts/bench transfer runs it against the sandbox.
// Settings come from the environment, never the command line:
//
//   STORAGE_ROOT=... (or STORAGE_BASE_URL=...) SMOKEBALL_CLIENT_ID=... SMOKEBALL_CLIENT_SECRET=...
//   SMOKEBALL_API_KEY=... SMOKEBALL_AUTH_BASE_URL=... SMOKEBALL_API_BASE_URL=... \
//   SANDBOX_USER_EMAIL=... SANDBOX_USER_PASSWORD=... \
//       transfer-bench --redirect-uri URI --path STORAGE_PATH
//
// It signs in as the sandbox's firm user (the code flow, as a browser would post the sign-in
// form), takes the firm's first matter and adds a file to it.

func fail(_ message: String, status: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("transfer-bench: \(message)\n".utf8))
    exit(status)
}

/// A line of /proc/self/status in KiB (`VmHWM`: the peak resident set).
func statusKiB(_ field: String) -> Int {
    let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = text.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}

struct AddFile: Encodable { let fileName: String }
struct AddedFile: Decodable, Sendable {
    let fileId: String
    let uploadUrl: String
    let expiry: String
}
struct MatterID: Decodable, Sendable { let id: String }

let redirectURI: String
let storagePath: String
do throws(CommandLineOptions.UsageError) {
    let options = try CommandLineOptions(CommandLine.arguments.dropFirst(), allowed: ["redirect-uri", "path"])
    guard let redirect = options["redirect-uri"], let path = options["path"] else {
        throw CommandLineOptions.UsageError(message: "--redirect-uri and --path are required")
    }
    redirectURI = redirect
    storagePath = path
} catch {
    fail(error.message + "\nusage: transfer-bench --redirect-uri URI --path STORAGE_PATH", status: 64)
}

/// The sandbox's sign-in form posted as the firm user; the code from the redirect, exchanged.
func signIn(_ client: SmokeballClient, email: String, password: String) throws -> SmokeballAccess {
    let verifier = PKCE.verifier()
    let authorize = client.authorizeURL(
        redirectURI: redirectURI, state: "transfer-bench", codeChallenge: PKCE.challenge(for: verifier))
    guard let query = URLComponents(string: authorize)?.percentEncodedQuery else { fail("bad authorize URL") }
    let form = QueryString.items(query) + [("username", email), ("password", password), ("decision", "allow")]
    let answer = try HTTPClient().send(
        HTTPRequest(
            method: "POST", url: client.endpoints.authBaseURL + "/oauth2/authorize",
            headers: [("Content-Type", "application/x-www-form-urlencoded")],
            body: Array(FormURLEncoding.encode(form).utf8)))
    guard answer.status == 302, let location = answer.header("Location"),
        let code = URLComponents(string: location)?.queryItems?.first(where: { $0.name == "code" })?.value
    else { fail("the sandbox did not sign the user in (HTTP \(answer.status))") }
    return .user(try client.exchangeCode(code, redirectURI: redirectURI, codeVerifier: verifier).accessToken)
}

let environment = ProcessInfo.processInfo.environment
do {
    guard let storeConfiguration = try DocumentStoreConfiguration.fromEnvironment(environment) else {
        fail("set STORAGE_ROOT or STORAGE_BASE_URL", status: 78)
    }
    let store = DocumentStore(storeConfiguration)
    let client = try SmokeballClient(
        configuration: try SmokeballConfiguration.fromEnvironment(environment), rateLimit: nil)
    guard let email = environment["SANDBOX_USER_EMAIL"], let password = environment["SANDBOX_USER_PASSWORD"] else {
        fail("set SANDBOX_USER_EMAIL and SANDBOX_USER_PASSWORD", status: 78)
    }
    let access = try signIn(client, email: email, password: password)
    var matter: String?
    try client.forEachPage("/matters", access: access) { (page: [MatterID]) in
        matter = page.first?.id
        return false
    }
    guard let matter else { fail("the account has no matter") }
    let (response, _) = try client.call(
        "POST", "/matters/\(PercentEncoding.encode(matter))/documents/files",
        body: Array(try JSONEncoder().encode(AddFile(fileName: "transfer-bench.bin"))), access: access)
    let added = try JSONDecoder().decode(AddedFile.self, from: Data(response.body))
    let before = statusKiB("VmHWM")

    let started = Date()
    let document = try store.open(storagePath)
    try client.upload(document.file, to: added.uploadUrl, expiry: ISO8601DateFormatter().date(from: added.expiry))
    let seconds = Date().timeIntervalSince(started)

    let mebibytes = Double(document.size) / 1_048_576
    let result: [String: Any] = [
        "bytes": document.size, "seconds": (seconds * 1000).rounded() / 1000,
        "mib_per_second": (mebibytes / seconds * 10).rounded() / 10,
        "peak_rss_kib": statusKiB("VmHWM"), "peak_rss_kib_before_transfer": before, "file_id": added.fileId,
    ]
    let line = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    FileHandle.standardOutput.write(line + Data("\n".utf8))
} catch {
    fail(String(describing: error))
}
