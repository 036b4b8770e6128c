import Basics
import Foundation
import PostgreSQL

// bytea throughput of the PostgreSQL layer: writes a random payload with a bound `[UInt8]`
// parameter, reads it back with `Row.bytes`, and prints MiB/s for each direction. Run by
// `scripts/bench bytea` in a release build; the figures are printed, not asserted.
//
//   DATABASE_URL=... pg-bench bytea [--mib N] [--rounds R]   (the URL holds a password: not an argument)

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

let usage = "usage: DATABASE_URL=... pg-bench bytea [--mib N] [--rounds R]\n"
let mebibytes: Int
let rounds: Int
do throws(CommandLineOptions.UsageError) {
    guard CommandLine.arguments.count > 1, CommandLine.arguments[1] == "bytea" else {
        throw CommandLineOptions.UsageError(message: "pg-bench runs one benchmark: bytea")
    }
    let options = try CommandLineOptions(CommandLine.arguments.dropFirst(2), allowed: ["mib", "rounds"])
    mebibytes = try options.integer("mib", in: 1...1024) ?? 8
    rounds = try options.integer("rounds", in: 1...100) ?? 3
} catch {
    FileHandle.standardError.write(Data((error.message + "\n" + usage).utf8))
    exit(64)
}
let url = ProcessInfo.processInfo.environment["DATABASE_URL"] ?? ""

do {
    let connection = try Connection(url: url, applicationName: "pg-bench")
    try connection.execute("CREATE TEMPORARY TABLE blobs (id integer PRIMARY KEY, body bytea NOT NULL)")
    var generator = SystemRandomNumberGenerator()
    let payload = (0..<mebibytes * 1_048_576).map { _ in UInt8.random(in: 0...255, using: &generator) }
    var writeSeconds: [Double] = []
    var readSeconds: [Double] = []
    for round in 1...rounds {
        writeSeconds.append(
            try seconds {
                try connection.execute("INSERT INTO blobs VALUES ($1, $2)", [round, payload])
            })
        var back: [UInt8] = []
        readSeconds.append(
            try seconds {
                back = try connection.execute("SELECT body FROM blobs WHERE id = $1", [round]).single().bytes("body")
            })
        guard back == payload else {
            print("bytea round trip changed the payload")
            exit(1)
        }
    }
    let size = Double(mebibytes)
    func rate(_ times: [Double]) -> String { String(format: "%.1f", size / times.sorted()[times.count / 2]) }
    print(
        "bytea \(mebibytes) MiB x \(rounds) (median): write \(rate(writeSeconds)) MiB/s, read \(rate(readSeconds)) MiB/s"
    )
} catch {
    print("pg-bench: \(error)")
    exit(1)
}
