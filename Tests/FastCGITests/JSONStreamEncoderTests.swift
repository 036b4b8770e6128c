import FastCGI
import Foundation
import TestSupport
import Testing

/// The streaming encoder against Foundation: the same JSON (parsed), for hand-picked shapes and
/// for a seeded random corpus. `JSONSTREAM_FUZZ_SEED` replays a run.
@Suite struct JSONStreamEncoderTests {
    struct Person: Codable, Equatable {
        enum Kind: String, Codable { case client, staff }
        var name: String
        var age: Int
        var kind: Kind
        var tags: [String]
        var scores: [String: Double]
        var reports: [Person]
        var nickname: String?
        var id: UUID
    }

    static func parsed(_ bytes: [UInt8]) throws -> NSObject {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as? NSObject)
    }

    static func foundation(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return [UInt8](try encoder.encode(value))
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func aNestedStructEncodesAsFoundationWouldWithNullsForAbsentValues() throws {
        let boss = Person(
            name: "Dana \"Boss\" O'Neil\n\\/", age: 51, kind: .staff, tags: [], scores: [:], reports: [],
            nickname: "D", id: UUID())
        let person = Person(
            name: "Avery é 😀 \u{1}", age: -3, kind: .client, tags: ["a", "", "b,c"],
            scores: ["z": 1.5, "a": -0.25, "m": 1e21], reports: [boss], nickname: nil, id: UUID())
        let ours = try JSONStreamEncoder.encode(person)
        let theirs = try Self.foundation(person)
        // Foundation leaves nil out where ours writes null; otherwise the documents are equal.
        var expected = try #require(try Self.parsed(theirs) as? [String: Any])
        expected["nickname"] = NSNull()
        // UUIDs are written lowercase, as every id in our answers is (Foundation writes uppercase).
        expected["id"] = person.id.uuidString.lowercased()
        expected["reports"] = [
            try #require((expected["reports"] as? [[String: Any]])?.first).merging([
                "id": boss.id.uuidString.lowercased()
            ]) {
                $1
            }
        ]
        #expect(try Self.parsed(ours) == expected as NSDictionary)
        #expect(Self.text(ours).contains(#""nickname":null"#))
        // Declaration order, and a dictionary's keys sorted.
        #expect(Self.text(ours).hasPrefix(#"{"name":"#))
        #expect(Self.text(ours).contains(#""scores":{"a":-0.25,"m":1e+21,"z":1.5}"#))
        #expect(try JSONDecoder().decode(Person.self, from: Data(ours)) == person)
    }

    @Test func datesAreISO8601WithFractionalSecondsInUTC() throws {
        let date = Date(timeIntervalSince1970: 1_800_000_000.125)
        #expect(Self.text(try JSONStreamEncoder.encode([date])) == #"["2027-01-15T08:00:00.125Z"]"#)
    }

    @Test func topLevelScalarsAndEmptyContainers() throws {
        #expect(Self.text(try JSONStreamEncoder.encode("x")) == #""x""#)
        #expect(Self.text(try JSONStreamEncoder.encode(Optional<Int>.none)) == "null")
        #expect(Self.text(try JSONStreamEncoder.encode([Int]())) == "[]")
        #expect(Self.text(try JSONStreamEncoder.encode([String: Int]())) == "{}")
        #expect(Self.text(try JSONStreamEncoder.encode([[1], [], [2, 3]])) == "[[1],[],[2,3]]")
        #expect(Self.text(try JSONStreamEncoder.encode([Int8(-8), Int8(7)])) == "[-8,7]")
        #expect(Self.text(try JSONStreamEncoder.encode([UInt64.max])) == "[18446744073709551615]")
        #expect(Self.text(try JSONStreamEncoder.encode([Float(0.5)])) == "[0.5]")
        #expect(throws: (any Error).self) { try JSONStreamEncoder.encode([Double.nan]) }
    }

    /// A hand-written `encode(to:)` that opens nested containers and moves on without closing
    /// them, which the protocol allows: each must be closed before its parent writes again.
    struct Manual: Encodable {
        enum Keys: String, CodingKey { case first, list, last, deep }
        enum Inner: String, CodingKey { case x, y }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            var first = container.nestedContainer(keyedBy: Inner.self, forKey: .first)
            try first.encode(1, forKey: .x)
            var list = container.nestedUnkeyedContainer(forKey: .list)
            try list.encode("a")
            var nested = list.nestedContainer(keyedBy: Inner.self)
            try nested.encodeNil(forKey: .y)
            try list.encode("b")
            try container.encode(true, forKey: .last)
            var deep = container.nestedUnkeyedContainer(forKey: .deep)
            var deeper = deep.nestedUnkeyedContainer()
            try deeper.encode(2)
        }
    }

    @Test func nestedContainersLeftOpenAreClosedBeforeTheParentWritesAgain() throws {
        #expect(
            Self.text(try JSONStreamEncoder.encode(Manual()))
                == #"{"first":{"x":1},"list":["a",{"y":null},"b"],"last":true,"deep":[[2]]}"#)
        #expect(try Self.parsed(try JSONStreamEncoder.encode(Manual())) == Self.parsed(try Self.foundation(Manual())))
    }

    /// Any JSON document, for the random corpus.
    indirect enum Tree: Encodable {
        case string(String)
        case int(Int)
        case double(Double)
        case bool(Bool)
        case null
        case array([Tree])
        case object([String: Tree])

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let value): try container.encode(value)
            case .int(let value): try container.encode(value)
            case .double(let value): try container.encode(value)
            case .bool(let value): try container.encode(value)
            case .null: try container.encodeNil()
            case .array(let value): try container.encode(value)
            case .object(let value): try container.encode(value)
            }
        }
    }

    static func randomTree(_ random: inout SeededGenerator, depth: Int) -> Tree {
        let alphabet = Array("aZ09 \"\\/\n\t\u{0}\u{1F}é€😀<>&")
        func string() -> String {
            String((0..<Int.random(in: 0...8, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
        }
        switch Int.random(in: 0..<(depth > 3 ? 5 : 7), using: &random) {
        case 0: return .string(string())
        case 1: return .int(Int.random(in: Int.min...Int.max, using: &random))
        case 2: return .double(Double.random(in: -1e6...1e6, using: &random))
        case 3: return .bool(Bool.random(using: &random))
        case 4: return .null
        case 5:
            return .array(
                (0..<Int.random(in: 0...4, using: &random)).map { _ in randomTree(&random, depth: depth + 1) })
        default:
            var object: [String: Tree] = [:]
            for _ in 0..<Int.random(in: 0...4, using: &random) {
                object[string()] = randomTree(&random, depth: depth + 1)
            }
            return .object(object)
        }
    }

    @Test func aSeededRandomCorpusEncodesToTheSameDocumentsAsFoundation() throws {
        let seed =
            SeededGenerator.seed(environment: "JSONSTREAM_FUZZ_SEED", default: 0x5EED_2026_1129)
        var random = SeededGenerator(seed: seed)
        for index in 0..<300 {
            let tree = Self.randomTree(&random, depth: 0)
            let ours = try JSONStreamEncoder.encode(tree)
            let theirs = try Self.foundation(tree)
            #expect(
                try Self.parsed(ours) == Self.parsed(theirs),
                "case \(index) of seed \(String(seed, radix: 16)): \(Self.text(ours)) vs \(Self.text(theirs))")
        }
    }
}
