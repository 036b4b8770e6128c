import Foundation

/// A value bound to a `$n` parameter. Values travel separately from the SQL text, in
/// PostgreSQL's text format, so no value can change the meaning of a statement.
public enum SQLValue: Sendable, Equatable {
    case null
    case text(String)
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case uuid(UUID)
    case timestamp(Date)
    case bytes([UInt8])
    /// JSON text, bound as `jsonb` by a cast in the statement (`$1::jsonb`).
    case json(String)

    /// The text-format wire representation; `nil` is SQL NULL.
    var wireText: String? {
        switch self {
        case .null: return nil
        case .text(let value): return value
        case .int(let value): return String(value)
        case .bool(let value): return value ? "t" : "f"
        case .double(let value): return String(value)
        case .uuid(let value): return value.uuidString.lowercased()
        case .timestamp(let value): return SQLValue.formatTimestamp(value)
        case .bytes(let value): return "\\x" + value.map { String(format: "%02x", $0) }.joined()
        case .json(let value): return value
        }
    }

    static func formatTimestamp(_ date: Date) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        var seconds = time_t(micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000)
        let fraction = micros - Int64(seconds) * 1_000_000
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec, fraction)
    }
}

/// Swift values usable as statement parameters.
public protocol SQLValueConvertible: Sendable {
    var sqlValue: SQLValue { get }
}

extension SQLValue: SQLValueConvertible {
    public var sqlValue: SQLValue { self }
}

extension String: SQLValueConvertible {
    public var sqlValue: SQLValue { .text(self) }
}

extension Int: SQLValueConvertible {
    public var sqlValue: SQLValue { .int(Int64(self)) }
}

extension Int64: SQLValueConvertible {
    public var sqlValue: SQLValue { .int(self) }
}

extension Bool: SQLValueConvertible {
    public var sqlValue: SQLValue { .bool(self) }
}

extension Double: SQLValueConvertible {
    public var sqlValue: SQLValue { .double(self) }
}

extension UUID: SQLValueConvertible {
    public var sqlValue: SQLValue { .uuid(self) }
}

extension Date: SQLValueConvertible {
    public var sqlValue: SQLValue { .timestamp(self) }
}

extension Array: SQLValueConvertible where Element == UInt8 {
    public var sqlValue: SQLValue { .bytes(self) }
}

extension Optional: SQLValueConvertible where Wrapped: SQLValueConvertible {
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}
