import Basics
import FastCGI
import Foundation

/// Ticks as the sandbox's API takes them (the conversions are `Basics.DotNetTicks`).
extension DotNetTicks {
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
}
