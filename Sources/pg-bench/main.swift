import Foundation
import PostgreSQL

// bytea throughput of the PostgreSQL layer: writes a random payload with a bound `[UInt8]`
// parameter, reads it back with `Row.bytes`, and prints MiB/s for each direction. Run by
// `scripts/bench bytea` in a release build; the figures are printed, not asserted.
//
//   DATABASE_URL=... pg-bench bytea [--mib N] [--rounds R]   (the URL holds a password: not an argument)

func argument(_ name: String, default value: String) -> String {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return value }
    return arguments[index + 1]
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

guard CommandLine.arguments.count > 1, CommandLine.arguments[1] == "bytea" else {
    FileHandle.standardError.write(Data("usage: DATABASE_URL=... pg-bench bytea [--mib N] [--rounds R]\n".utf8))
    exit(64)
}
let url = ProcessInfo.processInfo.environment["DATABASE_URL"] ?? ""
let mebibytes = Int(argument("--mib", default: "8")) ?? 8
let rounds = Int(argument("--rounds", default: "3")) ?? 3

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
