import FastCGI
import Foundation

/// .NET ticks (100 ns units since 0001-01-01 UTC), Smokeball's `UpdatedSince` and webhook time.
enum DotNetTicks {
    static let unixEpoch: Int64 = 621_355_968_000_000_000
    /// DateTime.MaxValue.
    static let maximum: Int64 = 3_155_378_975_999_999_999

    /// A query parameter in ticks (`UpdatedSince`): the spec's int64, within what .NET can turn
    /// into a DateTime (0 to DateTime.MaxValue), or a 400; nil when absent or empty.
    static func parameter(_ request: Request, _ name: String) throws -> Int64? {
        guard let text = request.queryValue(name), !text.isEmpty else { return nil }
        guard let ticks = Int64(text), (0...maximum).contains(ticks) else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "\(name) must be .NET ticks (an integer from 0 to \(maximum))")
        }
        return ticks
    }

    static func from(_ date: Date) -> Int64 {
        unixEpoch + Int64((date.timeIntervalSince1970 * 10_000_000).rounded(.down))
    }

    static func date(_ ticks: Int64) -> Date {
        Date(timeIntervalSince1970: Double(ticks - unixEpoch) / 10_000_000)
    }
}
