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
        var object: [String: Any] = [
            "ts": Self.timestamp(), "level": level, "event": event, "route": route, "pid": Int(getpid()),
        ]
        for (key, value) in fields { object[key] = value }
        guard JSONSerialization.isValidJSONObject(object),
            var data = try? JSONSerialization.data(
                withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        data.append(UInt8(ascii: "\n"))
        data.withUnsafeBytes { raw in
            // A single write(2) keeps lines from concurrent worker processes whole.
            _ = Glibc.write(STDERR_FILENO, raw.baseAddress, raw.count)
        }
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1_000_000)
    }
}
