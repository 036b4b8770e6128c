import Basics
import Foundation
import Integration
import PostgreSQL
import Smokeball

// Floods Smokeball with `GET /firm` from several threads of one process, every call through the
// partner's shared rate limit (each thread with its own database connection and HTTP client),
// for a fixed time; prints one JSON line of counts. The rate-limit test runs several at once.
// Secrets come from the environment, never the command line:
//
//   DATABASE_URL=... SMOKEBALL_CLIENT_ID=... SMOKEBALL_CLIENT_SECRET=... SMOKEBALL_API_KEY=...
//   SMOKEBALL_API_BASE_URL=... SMOKEBALL_FLOOD_ACCESS_TOKEN=... \
//       smokeball-flood [--threads N] [--milliseconds M]
//
// Even threads are interactive, odd ones background, so both lanes share the bucket.
//
// With SMOKEBALL_FLOOD_USER_ID (a CaseHug user of a connected firm; plus CASEHUG_JWT_SECRET and
// TOKEN_ENCRYPTION_KEY as the routes get them) each thread instead makes ONE `GET /firm` through
// the firm's token provider, all at once: several such processes on an expired token show that
// a refresh is single-flight across processes.

let usage = "usage: smokeball-flood [--threads N] [--milliseconds M] (settings in the environment)\n"
let threads: Int
let milliseconds: Int
do throws(CommandLineOptions.UsageError) {
    let options = try CommandLineOptions(CommandLine.arguments.dropFirst(), allowed: ["threads", "milliseconds"])
    threads = try options.integer("threads", in: 1...64) ?? 4
    milliseconds = try options.integer("milliseconds", in: 1...600_000) ?? 5000
} catch {
    FileHandle.standardError.write(Data((error.message + "\n" + usage).utf8))
    exit(64)
}

let environment = ProcessInfo.processInfo.environment
let configuration: SmokeballConfiguration
do {
    configuration = try SmokeballConfiguration.fromEnvironment(environment)
} catch {
    FileHandle.standardError.write(Data("smokeball-flood: \(error)\n".utf8))
    exit(78)
}
if let user = environment["SMOKEBALL_FLOOD_USER_ID"].flatMap(UUID.init(uuidString:)) {
    let provider: SmokeballTokenProvider
    do {
        let settings = try Configuration.fromEnvironment(environment)
        let database = Database(url: settings.databaseURL, applicationName: "smokeball-flood")
        provider = SmokeballTokenProvider(
            database: database, vault: try TokenVault(configuration: settings), smokeball: configuration,
            rateLimit: nil)
    } catch {
        FileHandle.standardError.write(Data("smokeball-flood: \(error)\n".utf8))
        exit(78)
    }
    let tally = Tally()
    let start = DispatchGroup()
    start.enter()
    let finished = DispatchGroup()
    for _ in 0..<threads {
        finished.enter()
        Thread {
            start.wait()
            do {
                _ = try provider.withAccess(UserScope(userID: user)) { client, access in try client.firm(access) }
                tally.record(nil)
            } catch {
                tally.record(String(describing: error))
            }
            finished.leave()
        }.start()
    }
    start.leave()
    finished.wait()
    let summary: [String: Any] = ["succeeded": tally.succeeded, "failures": tally.failures]
    let data = (try? JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])) ?? Data()
    print(String(decoding: data, as: UTF8.self))
    exit(0)
}

guard let credentials = configuration.credentials, let token = environment["SMOKEBALL_FLOOD_ACCESS_TOKEN"],
    let databaseURL = environment["DATABASE_URL"]
else {
    FileHandle.standardError.write(
        Data("smokeball-flood: credentials, DATABASE_URL and an access token are needed\n".utf8))
    exit(78)
}

final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var succeeded = 0
    private(set) var failures: [String: Int] = [:]

    func record(_ failure: String?) {
        lock.lock()
        defer { lock.unlock() }
        if let failure { failures[failure, default: 0] += 1 } else { succeeded += 1 }
    }
}

/// One process's flood: every thread runs `run` with its own connection and client.
struct Flood: Sendable {
    let configuration: SmokeballConfiguration
    let clientID: String
    let accessToken: String
    let databaseURL: String
    let deadline: Date
    let tally: Tally

    func run(lane: SmokeballLane) {
        let database = Database(url: databaseURL, applicationName: "smokeball-flood")
        while Date() < deadline {
            // A thread whose next token is not due before the deadline stops (sending nothing),
            // so the flood ends on time instead of draining every thread's last call.
            let limit = PartnerRateLimit(
                database: database, clientID: clientID, ratePerSecond: configuration.ratePerSecond,
                burst: configuration.burst, maximumWait: max(0.001, deadline.timeIntervalSinceNow))
            do {
                let client = try SmokeballClient(configuration: configuration, rateLimit: limit)
                _ = try client.firm(.user(accessToken), lane: lane)
                tally.record(nil)
            } catch let error as SmokeballError where error.code == .rateLimited && error.upstreamStatus == nil {
                // No token is due before the deadline: this thread is done.
                return
            } catch let error as SmokeballError {
                tally.record(error.code.rawValue)
            } catch {
                tally.record("other")
            }
        }
    }
}

let tally = Tally()
let flood = Flood(
    configuration: configuration, clientID: credentials.clientID, accessToken: token, databaseURL: databaseURL,
    deadline: Date().addingTimeInterval(Double(milliseconds) / 1000), tally: tally)
// Threads of their own: concurrentPerform would run only as many at once as there are cores.
let finished = DispatchGroup()
for index in 0..<threads {
    finished.enter()
    let lane: SmokeballLane = index % 2 == 0 ? .interactive : .background
    Thread {
        flood.run(lane: lane)
        finished.leave()
    }.start()
}
finished.wait()
let summary: [String: Any] = ["succeeded": tally.succeeded, "failures": tally.failures]
let data = (try? JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys])) ?? Data()
print(String(decoding: data, as: UTF8.self))
