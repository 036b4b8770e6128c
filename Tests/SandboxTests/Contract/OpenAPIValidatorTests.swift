import Foundation
import Testing

/// The validator the sandbox's contract tests rely on: checked against the real Smokeball spec,
/// plus a tiny inline spec for the keywords the real one does not use.
@Suite struct OpenAPIValidatorTests {
    static let spec = OpenAPIValidator.smokeball

    /// Parses JSON text the way a response body is parsed, so numbers and booleans are the
    /// NSNumbers JSONSerialization really produces.
    static func json(_ text: String) -> Any {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)) ?? "unparsable: \(text)"
    }

    /// The JSON paths the problems name, sorted: which values are wrong matters, not the order.
    static func paths(_ problems: [String]) -> [String] {
        problems.map { $0.components(separatedBy: ": ").first ?? $0 }.sorted()
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let schema: String
        let json: String
        let paths: [String]
        var testDescription: String { "\(schema) \(json)" }
    }

    @Test(arguments: [
        Case(
            schema: "ProblemDetails", json: #"{"type":"https://httpstatuses.io/404","title":"Not Found","status":404}"#,
            paths: []),
        Case(schema: "ProblemDetails", json: #"{"status":"404"}"#, paths: ["$.status"]),
        Case(schema: "ProblemDetails", json: #"{"status":true}"#, paths: ["$.status"]),
        Case(schema: "ProblemDetails", json: #"{"status":404.5}"#, paths: ["$.status"]),
        Case(schema: "ProblemDetails", json: #"{"status":404.0}"#, paths: []),
        Case(schema: "ProblemDetails", json: #"{"status":2147483648}"#, paths: ["$.status"]),
        Case(schema: "ProblemDetails", json: #"{"status":null,"title":null}"#, paths: []),
        Case(schema: "ProblemDetails", json: #"{"traceId":{"any":[1]}}"#, paths: []),
        Case(schema: "ProblemDetails", json: #"[]"#, paths: ["$"]),
        Case(schema: "Link", json: #"{"href":"x","bogus":1}"#, paths: ["$.bogus"]),
        Case(schema: "Link", json: #"{"href":1,"odd key":1}"#, paths: ["$.href", #"$["odd key"]"#]),
        Case(schema: "TypeCategory", json: "1", paths: []),
        Case(schema: "TypeCategory", json: "2", paths: ["$"]),
        Case(schema: "TypeCategory", json: #""0""#, paths: ["$"]),
        Case(schema: "TypeCategory", json: "false", paths: ["$"]),
        Case(schema: "FirmAccountStatus", json: #""Active""#, paths: []),
        Case(schema: "FirmAccountStatus", json: #""active""#, paths: ["$"]),
    ])
    func namedSchemas(_ example: Case) {
        let problems = Self.spec.problems(Self.json(example.json), schema: example.schema)
        #expect(Self.paths(problems) == example.paths.sorted(), "\(problems)")
    }

    @Test func problemsExplainThemselves() {
        #expect(
            Self.spec.problems(Self.json(#"{"href":"x","bogus":1}"#), schema: "Link") == ["$.bogus: unknown property"])
        #expect(
            Self.spec.problems(Self.json(#"{"status":"404"}"#), schema: "ProblemDetails")
                == ["$.status: expected integer, got string"])
        #expect(Self.spec.problems(Self.json("2"), schema: "TypeCategory") == ["$: 2 is not one of [0, 1]"])
        #expect(
            Self.spec.problems([:] as [String: Any], schema: "NoSuchSchema") == [
                "$: the spec has no schema named NoSuchSchema"
            ])
    }

    /// Swift literals bridge to NSNumber on Linux too; Bool must still not pass for an integer.
    @Test func swiftLiteralsKeepBooleansAndIntegersApart() {
        #expect(
            Self.spec.problems(["status": 404, "title": "Not Found"] as [String: Any], schema: "ProblemDetails").isEmpty
        )
        #expect(Self.paths(Self.spec.problems(["status": true], schema: "ProblemDetails")) == ["$.status"])
        #expect(Self.paths(Self.spec.problems(["isDeleted": 1], schema: "MatterTypeInfo")) == ["$.isDeleted"])
        #expect(Self.spec.problems(["isDeleted": false], schema: "MatterTypeInfo").isEmpty)
        #expect(Self.spec.problems(["status": Date()], schema: "ProblemDetails").count == 1)
    }

    // MARK: - The paged collection /mattertypes returns

    static let collectionText = """
        {
          "offset": 0, "limit": 500, "size": 1,
          "self": {"href": "https://api.smokeball.com/mattertypes"},
          "first": {"href": "https://api.smokeball.com/mattertypes?offset=0&limit=500", "relation": "first"},
          "next": null,
          "last": {"href": "https://api.smokeball.com/mattertypes?offset=0&limit=500", "relation": "last", "method": "GET"},
          "value": [{
            "id": "009f778f-83df-454a-b344-768a862a7e55",
            "versionId": "832e778f-83df-454a-b344-768a862a7e67",
            "name": "Personal Injury",
            "category": "Litigation",
            "type": 0,
            "representativeOptions": ["Plaintiff"],
            "location": "CA",
            "isDeleted": false
          }]
        }
        """

    /// `collectionText` with the value at a dotted path ("value.0.type") replaced by `json`, or removed when nil.
    static func collection(setting path: String, to json: String?) -> Any {
        func replace(_ node: Any, _ keys: ArraySlice<String>) -> Any? {
            guard let key = keys.first else { return json.map(Self.json) }
            if var array = node as? [Any], let index = Int(key), array.indices.contains(index) {
                array[index] = replace(array[index], keys.dropFirst()) ?? NSNull()
                return array
            }
            guard var object = node as? [String: Any] else { return node }
            object[key] = replace(object[key] ?? NSNull(), keys.dropFirst())
            return object
        }
        let document = Self.json(collectionText)
        return replace(document, ArraySlice(path.split(separator: ".").map(String.init))) ?? document
    }

    struct Change: Sendable, CustomTestStringConvertible {
        let path: String
        let json: String?
        let problems: [String]
        var testDescription: String { "\(path) = \(json ?? "(removed)")" }
    }

    @Test(arguments: [
        Change(path: "size", json: nil, problems: []),
        Change(path: "size", json: "null", problems: ["$.size"]),
        Change(path: "size", json: "true", problems: ["$.size"]),
        Change(path: "size", json: "9223372036854775807", problems: []),
        Change(path: "size", json: "9223372036854775808", problems: ["$.size"]),
        Change(path: "offset", json: "null", problems: []),
        Change(path: "self", json: "null", problems: []),
        Change(path: "next", json: #""x""#, problems: ["$.next"]),
        Change(path: "next", json: #"{"href":"x","bogus":1}"#, problems: ["$.next.bogus"]),
        Change(path: "unknown", json: "1", problems: ["$.unknown"]),
        Change(
            path: "value.0.representativeOptions", json: #""Plaintiff""#, problems: ["$.value[0].representativeOptions"]
        ),
        Change(
            path: "value.0.representativeOptions", json: #"["Plaintiff", 1]"#,
            problems: ["$.value[0].representativeOptions[1]"]),
        Change(path: "value.0.representativeOptions", json: "null", problems: []),
        Change(path: "value.0.type", json: #""0""#, problems: ["$.value[0].type"]),
        Change(path: "value.0.type", json: "2", problems: ["$.value[0].type"]),
        Change(path: "value.0.type", json: "null", problems: ["$.value[0].type"]),
        Change(path: "value.0.isDeleted", json: "0", problems: ["$.value[0].isDeleted"]),
        Change(path: "value.0.location", json: "5", problems: ["$.value[0].location"]),
        Change(path: "value", json: "{}", problems: ["$.value"]),
    ])
    func matterTypeCollection(_ change: Change) {
        let document = Self.collection(setting: change.path, to: change.json)
        let problems = Self.spec.problems(document, schema: "MatterTypeInfoPagedCollection")
        #expect(Self.paths(problems) == change.problems.sorted(), "\(problems)")
    }

    @Test func matterTypeSampleIsValidAndProblemsNameTheirValue() {
        #expect(Self.spec.problems(Self.json(Self.collectionText), schema: "MatterTypeInfoPagedCollection") == [])
        let wrong = Self.collection(setting: "value.0.location", to: "5")
        #expect(
            Self.spec.problems(wrong, schema: "MatterTypeInfoPagedCollection")
                == ["$.value[0].location: expected string, got number"])
    }

    // MARK: - Responses by path

    @Test(arguments: ["GET", "get"])
    func responsesResolveThroughPaths(method: String) {
        let valid = Self.json(Self.collectionText)
        #expect(Self.spec.problems(valid, path: "/mattertypes", method: method, status: 200) == [])
        let invalid = Self.collection(setting: "value.0.type", to: #""MatterType""#)
        #expect(
            Self.paths(Self.spec.problems(invalid, path: "/mattertypes", method: method, status: 200)) == [
                "$.value[0].type"
            ])
        // 400 is a ProblemDetails, which the paged collection is not.
        let problem = Self.json(#"{"title":"Bad Request","status":400,"errors":{}}"#)
        #expect(Self.spec.problems(problem, path: "/mattertypes", method: method, status: 400) == [])
        #expect(!Self.spec.problems(problem, path: "/mattertypes", method: method, status: 200).isEmpty)
    }

    @Test(arguments: [
        ("/nowhere", "GET", 200, "no operation GET /nowhere"),
        ("/mattertypes", "DELETE", 200, "no operation DELETE /mattertypes"),
        ("/mattertypes", "GET", 418, "no 418 response for GET /mattertypes"),
    ])
    func unknownResponsesAreOneProblem(path: String, method: String, status: Int, message: String) {
        let problems = Self.spec.problems(Self.json(Self.collectionText), path: path, method: method, status: status)
        #expect(problems.count == 1)
        #expect(problems.first?.contains(message) == true, "\(problems)")
    }

    @Test func theRealSpecUsesOnlySupportedKeywords() {
        #expect(Self.spec.unsupportedKeywords.isEmpty)
    }

    // MARK: - Keywords the real spec does not exercise

    static let inline: OpenAPIValidator? = try? OpenAPIValidator(
        specData: Data(
            #"""
            {"openapi": "3.0.1", "paths": {}, "components": {"schemas": {
              "Node": {"type": "object", "required": ["name"], "additionalProperties": {"type": "integer"},
                       "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 3, "pattern": "^[a-z]+$"},
                                      "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}},
              "Loop": {"allOf": [{"$ref": "#/components/schemas/Loop"}, {"type": "string"}]},
              "Stamp": {"type": "string", "format": "date-time"},
              "Id": {"type": "string", "format": "uuid"},
              "Amount": {"type": "number", "minimum": 0.01, "maximum": 10, "exclusiveMaximum": true},
              "Tags": {"type": "array", "uniqueItems": true, "minItems": 1, "items": {"type": "string"}},
              "Either": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "number", "maximum": 1}]},
              "Any": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
              "Odd": {"type": "integer", "multipleOf": 2}
            }}}
            """#.utf8))

    @Test(arguments: [
        Case(schema: "Node", json: #"{"name":"a","children":[{"name":"b","children":[]}]}"#, paths: []),
        Case(
            schema: "Node", json: #"{"children":[{"name":"b","children":[{"name":"1"}]}]}"#,
            paths: ["$.name", "$.children[0].children[0].name"]),
        Case(schema: "Node", json: #"{"name":"abcd","extra":1,"more":"x"}"#, paths: ["$.name", "$.more"]),
        Case(schema: "Node", json: #"{"name":"B1"}"#, paths: ["$.name"]),
        Case(schema: "Loop", json: #""fine""#, paths: []),
        Case(schema: "Loop", json: "1", paths: ["$"]),
        Case(schema: "Stamp", json: #""2024-05-01T10:20:30Z""#, paths: []),
        Case(schema: "Stamp", json: #""2024-05-01T10:20:30.1234567+10:00""#, paths: []),
        Case(schema: "Stamp", json: #""2024-02-29T00:00:00.5-05:00""#, paths: []),
        Case(schema: "Stamp", json: #""2023-02-29T00:00:00Z""#, paths: ["$"]),
        Case(schema: "Stamp", json: #""2024-05-01T10:20:30""#, paths: ["$"]),
        Case(schema: "Stamp", json: #""2024-05-01 10:20:30Z""#, paths: ["$"]),
        Case(schema: "Stamp", json: #""2024-05-01""#, paths: ["$"]),
        Case(schema: "Id", json: #""009f778f-83df-454a-b344-768a862a7e55""#, paths: []),
        Case(schema: "Id", json: #""009f778f""#, paths: ["$"]),
        Case(schema: "Amount", json: "0.01", paths: []),
        Case(schema: "Amount", json: "0", paths: ["$"]),
        Case(schema: "Amount", json: "10", paths: ["$"]),
        Case(schema: "Tags", json: #"["a","b"]"#, paths: []),
        Case(schema: "Tags", json: #"["a","a"]"#, paths: ["$"]),
        Case(schema: "Tags", json: "[]", paths: ["$"]),
        Case(schema: "Either", json: "7", paths: []),
        Case(schema: "Either", json: "0.5", paths: []),
        Case(schema: "Either", json: "1", paths: ["$"]),
        Case(schema: "Either", json: "true", paths: ["$"]),
        Case(schema: "Any", json: "false", paths: []),
        Case(schema: "Any", json: "null", paths: ["$"]),
        Case(schema: "Odd", json: "4", paths: ["$"]),
    ])
    func inlineSchemas(_ example: Case) throws {
        let validator = try #require(Self.inline)
        let problems = validator.problems(Self.json(example.json), schema: example.schema)
        #expect(Self.paths(problems) == example.paths.sorted(), "\(problems)")
    }

    @Test func unsupportedKeywordsAreReportedNotSkipped() throws {
        let validator = try #require(Self.inline)
        #expect(validator.unsupportedKeywords == ["multipleOf"])
        #expect(validator.problems(Self.json("4"), schema: "Odd") == ["$: schema uses unsupported keyword multipleOf"])
    }

    @Test func refsToUndefinedSchemasAreRejectedUpFront() {
        let spec = ##"{"paths": {}, "components": {"schemas": {"A": {"$ref": "#/components/schemas/B"}}}}"##
        #expect(throws: OpenAPIValidator.SpecError.self) { try OpenAPIValidator(specData: Data(spec.utf8)) }
    }
}
