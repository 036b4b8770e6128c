import Foundation

/// .NET ticks (100 ns units since 0001-01-01 UTC): Smokeball's `UpdatedSince`, its webhook
/// `timestamp` and `Timestamp` header. `ticks = unix_seconds * 10_000_000 + 621_355_968_000_000_000`.
public enum DotNetTicks {
    public static let unixEpoch: Int64 = 621_355_968_000_000_000
    /// DateTime.MaxValue.
    public static let maximum: Int64 = 3_155_378_975_999_999_999

    public static func from(_ date: Date) -> Int64 {
        unixEpoch + Int64((date.timeIntervalSince1970 * 10_000_000).rounded(.down))
    }

    public static func date(_ ticks: Int64) -> Date {
        Date(timeIntervalSince1970: Double(ticks - unixEpoch) / 10_000_000)
    }
}
