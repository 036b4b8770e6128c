import Foundation
import Testing

@testable import FastCGI

/// The JSON writer behind every answer and log line: valid JSON that Foundation reads back to
/// the same value, keys sorted by Unicode scalars, nothing JSON cannot express let through.
@Suite struct JSONWriterTests {
    static func text(_ value: Any) throws -> String {
        String(decoding: try JSONWriter.encode(value), as: UTF8.self)
    }

    @Test(arguments: [
        ("plain", #""plain""#),
        ("quote \" and \\ backslash", #""quote \" and \\ backslash""#),
        ("line\nbreak\ttab\rcr", #""line\nbreak\ttab\rcr""#),
        ("nul \u{0} bell \u{7} del \u{7F}", #""nul \u0000 bell \u0007 del \u007f""#),
        ("a/b", #""a/b""#),
        ("naïve café ✓ 😀", "\"naïve café ✓ 😀\""),
    ])
    func stringsAreEscaped(value: String, expected: String) throws {
        #expect(try Self.text(value) == expected)
        let decoded = try JSONSerialization.jsonObject(with: Data(expected.utf8), options: [.fragmentsAllowed])
        #expect(decoded as? String == value)
    }

    @Test func scalarsOfEveryKind() throws {
        #expect(try Self.text(true) == "true")
        #expect(try Self.text(false) == "false")
        #expect(try Self.text(NSNull()) == "null")
        #expect(try Self.text(42) == "42")
        #expect(try Self.text(Int64(-7)) == "-7")
        #expect(try Self.text(UInt32(7)) == "7")
        #expect(try Self.text(2.5) == "2.5")
        #expect(try Self.text(3.0) == "3")
        #expect(try Self.text(Float(0.5)) == "0.5")
    }

    @Test func numbersDecodedByFoundationKeepTheirKind() throws {
        let decoded = try JSONSerialization.jsonObject(with: Data(#"{"b":true,"i":1,"d":1.5,"n":null}"#.utf8))
        #expect(try Self.text(decoded) == #"{"b":true,"d":1.5,"i":1,"n":null}"#)
    }

    @Test func keysAreSortedByUnicodeScalarsAtEveryLevel() throws {
        let value: [String: Any] = ["b": 1, "B": 2, "a": ["z": [3, "x"], "é": false, "e": NSNull()], "_": []]
        #expect(try Self.text(value) == #"{"B":2,"_":[],"a":{"e":null,"z":[3,"x"],"é":false},"b":1}"#)
    }

    @Test func outputReadsBackAsTheSameValue() throws {
        let value: [String: Any] = [
            "settings": ["auto_sync_on_approval": true, "case_type_mappings": ["asylum": "Asylum"]],
            "last_sync": NSNull(), "counts": [1, 2, 3], "ratio": 0.25, "name": "Demo \"Law\" Group",
        ]
        let decoded = try #require(
            try JSONSerialization.jsonObject(with: Data(try JSONWriter.encode(value))) as? NSDictionary)
        #expect(decoded == value as NSDictionary)
    }

    @Test(arguments: [Double.nan, Double.infinity, -Double.infinity])
    func nonFiniteNumbersAreRefused(number: Double) {
        #expect(throws: JSONWriter.UnsupportedValue.self) { try JSONWriter.encode(["x": number]) }
    }

    @Test func unsupportedValuesAreRefusedNotDropped() {
        #expect(throws: JSONWriter.UnsupportedValue.self) { try JSONWriter.encode(["when": Date()]) }
        #expect(throws: JSONWriter.UnsupportedValue.self) { try JSONWriter.encode([1: "non-string key"]) }
    }

    @Test func responseJSONAnswers500ForAnUnencodableValue() {
        let response = Response.json(["when": Date()])
        #expect(response.status == .internalServerError)
        #expect(String(decoding: response.body, as: UTF8.self).contains("internal_error"))
    }
}

@Suite struct LoggerTimestampTests {
    @Test func timestampIsISO8601UTCWithMilliseconds() throws {
        let text = Logger.timestamp()
        #expect(text.utf8.count == 24)
        let parsed = try #require(try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        #expect(abs(parsed.timeIntervalSinceNow) < 5)
    }
}

@Suite struct LoggerLineTests {
    static func parse(_ line: [UInt8]) throws -> [String: Any] {
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(line.filter { $0 == UInt8(ascii: "\n") }.count == 1)
        return try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
    }

    @Test("A log line is one JSON object: the base keys, then the fields")
    func lineHoldsBaseKeysAndFields() throws {
        let line = Logger(route: "webhooks").line(
            level: "info", event: "request", fields: ["status": 200, "path": "/a\"b\n", "ratio": 0.5],
            timestamp: "2026-11-30T04:00:00.000Z", pid: 42)
        let object = try Self.parse(line)
        #expect(object["ts"] as? String == "2026-11-30T04:00:00.000Z")
        #expect(object["level"] as? String == "info")
        #expect(object["event"] as? String == "request")
        #expect(object["route"] as? String == "webhooks")
        #expect(object["pid"] as? Int == 42)
        #expect(object["status"] as? Int == 200)
        #expect(object["path"] as? String == "/a\"b\n")
        #expect(object["ratio"] as? Double == 0.5)
        #expect(object.count == 8)
    }

    @Test("A field named like a base key replaces it, and a field JSON cannot express drops the fields, not the line")
    func overridesAndDroppedFields() throws {
        let logger = Logger(route: "status")
        let replaced = try Self.parse(
            logger.line(level: "info", event: "request", fields: ["route": "other"], timestamp: "t", pid: 1))
        #expect(replaced["route"] as? String == "other")
        #expect(replaced.count == 5)
        let dropped = try Self.parse(
            logger.line(
                level: "warning", event: "odd", fields: ["value": Double.nan, "kept": "no"], timestamp: "t", pid: 1))
        #expect(dropped["fields_dropped"] as? Bool == true)
        #expect(dropped["event"] as? String == "odd")
        #expect(dropped["value"] == nil && dropped["kept"] == nil)
    }
}
