import FastCGI
import Foundation

/// Small helpers for answers built from `JSONSerialization` values.
enum JSONValues {
    static let timestampStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    static func timestamp(_ date: Date?) -> Any {
        guard let date else { return NSNull() }
        return date.formatted(timestampStyle)
    }

    static func orNull(_ value: Any?) -> Any { value ?? NSNull() }

    /// True for JSON booleans only (`JSONSerialization` also decodes 0/1 as NSNumber).
    static func isBool(_ value: Any) -> Bool { JSONBoolean.value(value) != nil }

    /// A JSON string value (not a number that bridges to String).
    static func string(_ value: Any) -> String? {
        value as? String
    }
}
