import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// UTC timestamps as text, formatted by hand from `gmtime_r`: `String(format:)` and Foundation's
/// format styles cost more than the rest of a log line or a small answer.
public enum Timestamp {
    /// ISO 8601 / RFC 3339 in UTC: `2026-11-22T20:51:22.691Z` with `fractionDigits` 3 (0 to 6).
    public static func iso8601(_ date: Date, fractionDigits: Int = 3) -> String {
        format(date, dateTimeSeparator: UInt8(ascii: "T"), fractionDigits: fractionDigits, zone: "Z")
    }

    /// PostgreSQL's ISO output in UTC, with microseconds: `2026-11-22 20:51:22.691234+00`.
    public static func postgres(_ date: Date) -> String {
        format(date, dateTimeSeparator: UInt8(ascii: " "), fractionDigits: 6, zone: "+00")
    }

    /// The current time as `iso8601`.
    public static func now(fractionDigits: Int = 3) -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return iso8601(
            Date(timeIntervalSince1970: Double(now.tv_sec) + Double(now.tv_nsec) / 1e9), fractionDigits: fractionDigits)
    }

    static func format(_ date: Date, dateTimeSeparator: UInt8, fractionDigits: Int, zone: String) -> String {
        let digits = max(0, min(6, fractionDigits))
        // Whole microseconds, rounded once, so the seconds and the fraction agree; floor division
        // keeps dates before 1970 right.
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let wholeSeconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        var fraction = micros - wholeSeconds * 1_000_000
        for _ in digits..<6 { fraction /= 10 }
        var seconds = time_t(wholeSeconds)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var text = [UInt8]()
        text.reserveCapacity(32)
        func append(_ value: Int, width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 {
                text.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                divisor /= 10
            }
        }
        append(Int(parts.tm_year) + 1900, width: 4)
        text.append(UInt8(ascii: "-"))
        append(Int(parts.tm_mon) + 1, width: 2)
        text.append(UInt8(ascii: "-"))
        append(Int(parts.tm_mday), width: 2)
        text.append(dateTimeSeparator)
        append(Int(parts.tm_hour), width: 2)
        text.append(UInt8(ascii: ":"))
        append(Int(parts.tm_min), width: 2)
        text.append(UInt8(ascii: ":"))
        append(Int(parts.tm_sec), width: 2)
        if digits > 0 {
            text.append(UInt8(ascii: "."))
            append(Int(fraction), width: digits)
        }
        text.append(contentsOf: zone.utf8)
        return String(decoding: text, as: UTF8.self)
    }
}
