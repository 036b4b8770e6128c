import Basics
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One JSON object per line on stderr. Callers pass only fields that are safe to log: never
/// bodies, tokens, query strings or personal data.
public struct Logger: Sendable {
    public let route: String

    public init(route: String) {
        self.route = route
    }

    public func info(_ event: String, _ fields: [String: any Sendable] = [:]) {
        write(level: "info", event: event, fields: fields)
    }

    public func warning(_ event: String, _ fields: [String: any Sendable] = [:]) {
        write(level: "warning", event: event, fields: fields)
    }

    public func error(_ event: String, _ fields: [String: any Sendable] = [:]) {
        write(level: "error", event: event, fields: fields)
    }

    func write(level: String, event: String, fields: [String: any Sendable]) {
        let base: [String: Any] = [
            "ts": Self.timestamp(), "level": level, "event": event, "route": route, "pid": Int(getpid()),
        ]
        var object = base
        for (key, value) in fields { object[key] = value }
        // A field JSON cannot express must not cost the whole line: keep the event, drop fields.
        guard
            var line = (try? JSONWriter.encode(object))
                ?? (try? JSONWriter.encode(base.merging(["fields_dropped": true]) { $1 }))
        else { return }
        line.append(UInt8(ascii: "\n"))
        line.withUnsafeBytes { raw in
            // A single write(2) keeps lines from concurrent worker processes whole.
            _ = Glibc.write(STDERR_FILENO, raw.baseAddress, raw.count)
        }
    }

    /// `2026-11-22T20:51:22.691Z`.
    static func timestamp() -> String { Timestamp.now() }
}
