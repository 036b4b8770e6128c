import Basics
import Foundation
import Testing

@Suite struct HexTests {
    @Test func roundTripsEitherCase() {
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff], uppercase: true) == "000FA0FF")
        #expect(Hex.decode("000fa0ff") == [0x00, 0x0f, 0xa0, 0xff])
        #expect(Hex.decode("000FA0FF") == [0x00, 0x0f, 0xa0, 0xff])
        #expect(Hex.decode("") == [])
        #expect(Hex.encode([UInt8]()) == "")
        let every = (0...255).map(UInt8.init)
        #expect(Hex.decode(Hex.encode(every)) == every)
    }

    @Test(arguments: ["0", "abc", "zz", "0x00", "g0", " 00", "0g", "é0"])
    func refusesWhatIsNotHex(text: String) {
        #expect(Hex.decode(text) == nil)
    }

    @Test func digitValues() {
        #expect(Hex.value(ofDigit: UInt8(ascii: "7")) == 7)
        #expect(Hex.value(ofDigit: UInt8(ascii: "b")) == 11)
        #expect(Hex.value(ofDigit: UInt8(ascii: "F")) == 15)
        #expect(Hex.value(ofDigit: UInt8(ascii: "G")) == nil)
        #expect(Hex.value(ofDigit: 0xFF) == nil)
    }
}

@Suite struct PercentEncodingTests {
    @Test func keepsOnlyUnreservedCharacters() {
        #expect(PercentEncoding.encode("AZaz09-._~") == "AZaz09-._~")
        #expect(PercentEncoding.encode("a b&c=d/é+") == "a%20b%26c%3Dd%2F%C3%A9%2B")
        #expect(PercentEncoding.encode("") == "")
    }

    @Test func decodesEscapesAndPlusAsSpace() {
        #expect(PercentEncoding.decode("a%20b+c%2B%C3%A9") == "a b c+é")
        #expect(PercentEncoding.decode("%41%4a%4A") == "AJJ")
    }

    @Test(arguments: ["%", "%4", "%zz", "%FF", "abc%G1"])
    func malformedEscapesOrBytesThatAreNotUTF8DoNotDecode(text: String) {
        #expect(PercentEncoding.decode(text) == nil)
    }

    @Test func everyStringRoundTrips() {
        for text in ["", "plain", "with space", "日本語 🙂", "\u{0}\r\n", "%25 literal", "+"] {
            #expect(PercentEncoding.decode(PercentEncoding.encode(text)) == text)
        }
    }

    @Test func queryItemsKeepOrderAndRepeatsAndSkipNamelessPairs() {
        let items = QueryString.items("b=x%20y&a=1&&=novalue&flag&a=2&bad=%zz&%zz=1")
        #expect(items.map(\.0) == ["b", "a", "flag", "a", "bad"])
        #expect(items.map(\.1) == ["x y", "1", "", "2", ""])
        #expect(QueryString.dictionary("a=1&a=2&b=") == ["a": "1", "b": ""])
    }

    @Test func formBodiesAndQueriesAreBuiltFromPairs() {
        #expect(FormURLEncoding.encode([("a b", "c&d"), ("e", "")]) == "a%20b=c%26d&e=")
        #expect(URLQuery.build(base: "https://x.test/p", [("q", "1")]) == "https://x.test/p?q=1")
        #expect(URLQuery.build(base: "https://x.test/p?a=b", [("q", "1")]) == "https://x.test/p?a=b&q=1")
        #expect(URLQuery.build(base: "https://x.test/p?#f", [("q", "1")]) == "https://x.test/p?q=1#f")
        #expect(URLQuery.build(base: "https://x.test/p", []) == "https://x.test/p")
    }
}

@Suite struct TimestampTests {
    @Test func iso8601InUTCWithTheFractionAsked() {
        let date = Date(timeIntervalSince1970: 1_800_000_000.123456)
        #expect(Timestamp.iso8601(date) == "2027-01-15T08:00:00.123Z")
        #expect(Timestamp.iso8601(date, fractionDigits: 0) == "2027-01-15T08:00:00Z")
        #expect(Timestamp.iso8601(date, fractionDigits: 6) == "2027-01-15T08:00:00.123456Z")
        #expect(Timestamp.postgres(date) == "2027-01-15 08:00:00.123456+00")
    }

    @Test func datesBeforeTheEpochKeepTheirFraction() {
        let date = Date(timeIntervalSince1970: -0.25)
        #expect(Timestamp.iso8601(date) == "1969-12-31T23:59:59.750Z")
        #expect(Timestamp.postgres(date) == "1969-12-31 23:59:59.750000+00")
    }

    /// Against Foundation's own formatter, over a spread of dates. Each sits 0.4 ms past a whole
    /// millisecond: Foundation truncates the Double (so 0.41 s, stored as 0.40999…, prints .409)
    /// where this rounds to the microsecond first, and only mid-millisecond dates print alike.
    @Test func agreesWithFoundationAcrossCenturies() {
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var state: UInt64 = 0x7153_2026_1129
        for _ in 0..<500 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let millis = Int64(bitPattern: state >> 1) % 7_258_118_400_000  // 1970...2200
            let date = Date(timeIntervalSince1970: Double(millis) / 1000 + 0.0004)
            #expect(Timestamp.iso8601(date) == date.formatted(style))
        }
    }

    @Test func nowIsTodayInUTC() {
        let text = Timestamp.now()
        #expect(text.count == 24 && text.hasSuffix("Z"))
        #expect(text.hasPrefix(String(Timestamp.iso8601(Date()).prefix(10))))
    }
}

@Suite struct CommandLineOptionsTests {
    @Test func readsKnownFlagsWithTheirValues() throws {
        let options = try CommandLineOptions(["--a", "1", "--bee", "--x"], allowed: ["a", "bee"])
        #expect(options["a"] == "1")
        #expect(options["bee"] == "--x")
        #expect(options["c"] == nil)
        #expect(try options.integer("a", in: 1...3) == 1)
        #expect(try options.integer("missing", in: 1...3) == nil)
    }

    @Test(arguments: [
        (["--c", "1"], "unknown argument --c"),
        (["value"], "unknown argument value"),
        (["-a", "1"], "unknown argument -a"),
        (["--"], "unknown argument --"),
        (["--a"], "--a needs a value"),
        (["--a", "1", "--a", "2"], "--a is given twice"),
    ])
    func refusesWhatItCannotReadUnambiguously(arguments: [String], message: String) {
        #expect(throws: CommandLineOptions.UsageError(message: message)) {
            try CommandLineOptions(arguments, allowed: ["a"])
        }
    }

    @Test func numbersOutsideTheirRangeAreUsageErrors() throws {
        let options = try CommandLineOptions(["--n", "0", "--m", "abc"], allowed: ["n", "m"])
        #expect(throws: CommandLineOptions.UsageError(message: "--n must be a number from 1 to 9")) {
            try options.integer("n", in: 1...9)
        }
        #expect(throws: CommandLineOptions.UsageError.self) { try options.integer("m", in: 1...9) }
    }
}

@Suite struct JSONBooleanTests {
    @Test func onlyJSONBooleansAreBooleans() throws {
        let parsed = try #require(
            try JSONSerialization.jsonObject(with: Data(#"[true, false, 1, 0, "true", null]"#.utf8)) as? [Any])
        #expect(parsed.map { JSONBoolean.value($0) } == [true, false, nil, nil, nil, nil])
        #expect(JSONBoolean.value(true) == true)
        #expect(JSONBoolean.value(1) == nil)
    }
}

@Suite struct ASCIICaseTests {
    @Test(
        "ASCII letters compare without regard to case; every other byte, and the length, must match",
        arguments: [
            ("Content-Type", "content-type", true), ("X-ACCEL-", "x-accel-", true), ("", "", true),
            ("Status", "Statu", false), ("Status", "Status ", false), ("A", "B", false), ("[", "{", false),
            ("É", "é", false), ("é", "é", true), ("@", "`", false),
        ])
    func comparesASCIICaseInsensitively(a: String, b: String, equal: Bool) {
        #expect(ASCIICase.equal(a, b) == equal)
        #expect(ASCIICase.equal(b, a) == equal)
    }
}
