/// `--name value` pairs from a command line, each name at most once, every name known. The one
/// parser behind the route executables' and `casehug-admin`'s flags.
public struct CommandLineOptions: Sendable {
    public struct UsageError: Error, Sendable, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }

        public init(message: String) {
            self.message = message
        }
    }

    private var values: [String: String] = [:]

    /// `allowed` names the flags without their dashes.
    public init(_ arguments: some Sequence<String>, allowed: Set<String>) throws(UsageError) {
        var iterator = arguments.makeIterator()
        while let flag = iterator.next() {
            let name = flag.hasPrefix("--") ? String(flag.dropFirst(2)) : ""
            guard allowed.contains(name) else { throw UsageError(message: "unknown argument \(flag)") }
            guard let value = iterator.next() else { throw UsageError(message: "\(flag) needs a value") }
            guard values[name] == nil else { throw UsageError(message: "\(flag) is given twice") }
            values[name] = value
        }
    }

    public subscript(_ name: String) -> String? { values[name] }

    /// A whole number within `range`, or nil when the flag is absent.
    public func integer(_ name: String, in range: ClosedRange<Int>) throws(UsageError) -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError(message: "--\(name) must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }
}
