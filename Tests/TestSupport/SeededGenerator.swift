import Basics
import Foundation

/// The tests' seeded generator is `Basics.SeededGenerator` (SplitMix64), with the helpers fuzz
/// tests use.
public typealias SeededGenerator = Basics.SeededGenerator

extension Basics.SeededGenerator {
    /// The seed from environment variable `name` (decimal, or hexadecimal with 0x), else `fallback`.
    public static func seed(environment name: String, default fallback: UInt64) -> UInt64 {
        guard let text = ProcessInfo.processInfo.environment[name], !text.isEmpty else { return fallback }
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) ?? fallback }
        return UInt64(text) ?? fallback
    }

    public mutating func pick<T>(_ choices: [T]) -> T { choices[Int.random(in: 0..<choices.count, using: &self)] }

    public mutating func chance(_ share: Double) -> Bool { Double.random(in: 0..<1, using: &self) < share }

    /// A random lowercase UUID string.
    public mutating func uuid() -> String {
        let hex = (0..<32).map { _ in String(Int.random(in: 0..<16, using: &self), radix: 16) }.joined()
        let characters = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(characters[$0]) }.joined(separator: "-")
    }
}
