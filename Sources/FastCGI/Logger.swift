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
        let line = line(level: level, event: event, fields: fields, timestamp: Self.timestamp(), pid: Int(getpid()))
        line.withUnsafeBytes { raw in
            // A single write(2) keeps lines from concurrent worker processes whole.
            _ = Glibc.write(STDERR_FILENO, raw.baseAddress, raw.count)
        }
    }

    /// One log line, newline included.
    func line(level: String, event: String, fields: [String: any Sendable], timestamp: String, pid: Int) -> [UInt8] {
        // Written straight to bytes (the base keys, then the fields by key): a line per request
        // is on every route's hot path. A field JSON cannot express must not cost the whole
        // line: the event is kept and the fields dropped. A field named like a base key
        // replaces it, as a merged dictionary would.
        var line: [UInt8] = []
        line.reserveCapacity(256)
        func base(_ key: String, _ value: any Sendable) throws {
            guard fields[key] == nil else { return }
            JSONWriter.writeString(key, to: &line)
            line.append(UInt8(ascii: ":"))
            try JSONWriter.write(value, to: &line)
            line.append(UInt8(ascii: ","))
        }
        do {
            line.append(UInt8(ascii: "{"))
            try base("ts", timestamp)
            try base("level", level)
            try base("event", event)
            try base("route", route)
            try base("pid", pid)
            for key in fields.keys.sorted(by: { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }) {
                JSONWriter.writeString(key, to: &line)
                line.append(UInt8(ascii: ":"))
                try JSONWriter.write(fields[key]!, to: &line)
                line.append(UInt8(ascii: ","))
            }
            line[line.count - 1] = UInt8(ascii: "}")
        } catch {
            let fallback: [String: Any] = [
                "ts": timestamp, "level": level, "event": event, "route": route, "pid": pid, "fields_dropped": true,
            ]
            line = (try? JSONWriter.encode(fallback)) ?? Array(#"{"fields_dropped":true}"#.utf8)
        }
        line.append(UInt8(ascii: "\n"))
        return line
    }

    /// `2026-11-22T20:51:22.691Z`.
    static func timestamp() -> String { Timestamp.now() }
}
