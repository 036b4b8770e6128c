// A small OpenAPI 3.0 schema validator, so tests can check the sandbox's JSON against Smokeball's
// published spec (Fixtures/smokeball-swagger.json).
//
// It also reads a folder of JSON Schema files (draft 2020-12, the subset below) through
// `init(schemaDirectory:)`: there a schema is named by its file name, `$ref` may name a sibling
// file ("link.json"), and `type` may list several types (["string", "null"]).
//
// Supported keywords: $ref (#/components/schemas/X, or a sibling file; resolved lazily, so cycles are safe),
// allOf, oneOf, anyOf, nullable, type (object, array, string, integer, number, boolean), format
// (int32 and int64 ranges, date-time as RFC 3339 with or without fractional seconds and with Z or
// an offset, uuid), enum, properties, required, additionalProperties (false, true, {} or a
// schema), items, minItems, maxItems, uniqueItems, minimum, maximum, exclusiveMinimum,
// exclusiveMaximum, minLength, maxLength, pattern (NSRegularExpression, unanchored as in JSON
// Schema).
//
// Ignored because they never change what is valid: description, example, default, deprecated,
// title, readOnly, writeOnly, externalDocs, xml, discriminator (a hint for oneOf, which is checked
// anyway) and x- extensions; formats other than the ones above (double, float, ...), which
// OpenAPI treats as annotations; keywords beside a $ref, which OpenAPI 3.0 says to ignore.
//
// Skipped but reported: any other keyword (not, multipleOf, minProperties, ...). A schema that
// uses one yields a problem whenever a value is checked against it, so it never passes silently;
// `unsupportedKeywords` lists them, and the fixture uses none.

import Foundation

struct OpenAPIValidator: Sendable {
    static let smokeball: OpenAPIValidator = {
        do {
            guard let url = Bundle.module.url(forResource: "Fixtures/smokeball-swagger", withExtension: "json") else {
                throw SpecError("Fixtures/smokeball-swagger.json is missing from the test bundle")
            }
            return try OpenAPIValidator(specData: Data(contentsOf: url))
        } catch {
            // Every test that validates against the spec depends on it; there is nothing to fall back to.
            fatalError("cannot load the Smokeball spec: \(error)")
        }
    }()

    struct SpecError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Keywords found in the spec's schemas that this validator does not implement.
    let unsupportedKeywords: Set<String>
    private let schemas: [String: Schema]
    private let paths: [String: JSON]

    init(specData: Data) throws {
        let spec = try JSON(any: JSONSerialization.jsonObject(with: specData), at: "#")
        guard case .object(let components)? = spec["components"], case .object(let schemas)? = components["schemas"]
        else { throw SpecError("the spec has no components.schemas") }
        var compiler = SchemaCompiler()
        var compiled: [String: Schema] = [:]
        for (name, schema) in schemas {
            compiled[name] = try compiler.compile(schema, at: "#/components/schemas/\(name)")
        }
        guard case .object(let paths)? = spec["paths"] else { throw SpecError("the spec has no paths") }
        // Response schemas may be inline, so compile them all once to find their refs and keywords too.
        for (path, item) in paths {
            guard case .object(let operations) = item else { continue }
            for (method, operation) in operations {
                guard case .object(let responses)? = operation["responses"] else { continue }
                for (status, response) in responses {
                    if let schema = response["content"]?["application/json"]?["schema"] {
                        _ = try compiler.compile(schema, at: "#/paths/\(path)/\(method)/responses/\(status)")
                    }
                }
            }
        }
        if let missing = compiler.references.subtracting(compiled.keys).sorted().first {
            throw SpecError("$ref to #/components/schemas/\(missing), which the spec does not define")
        }
        self.schemas = compiled
        self.paths = paths
        self.unsupportedKeywords = compiler.unsupported
    }

    /// The JSON Schema files (`*.json`) of a folder, each named by its file name.
    init(schemaDirectory: URL) throws {
        var compiler = SchemaCompiler()
        var compiled: [String: Schema] = [:]
        let files = try FileManager.default.contentsOfDirectory(atPath: schemaDirectory.path)
        for file in files.sorted() where file.hasSuffix(".json") {
            let data = try Data(contentsOf: schemaDirectory.appendingPathComponent(file))
            let json = try JSON(any: JSONSerialization.jsonObject(with: data), at: file)
            compiled[file] = try compiler.compile(json, at: file)
        }
        if let missing = compiler.references.subtracting(compiled.keys).sorted().first {
            throw SpecError("$ref to \(missing), which \(schemaDirectory.lastPathComponent) does not hold")
        }
        schemas = compiled
        paths = [:]
        unsupportedKeywords = compiler.unsupported
    }

    /// Problems found validating `value` (a JSONSerialization result) against components.schemas[name];
    /// empty means valid. Each problem starts with the JSON path of the offending value.
    func problems(_ value: Any, schema name: String) -> [String] {
        guard let schema = schemas[name] else { return ["$: the spec has no schema named \(name)"] }
        return problems(value, schema)
    }

    /// Same, for paths[path][method].responses[status].content["application/json"].schema.
    func problems(_ value: Any, path: String, method: String, status: Int) -> [String] {
        let operation = "\(method.uppercased()) \(path)"
        guard let responses = paths[path]?[method.lowercased()]?["responses"] else {
            return ["$: the spec has no operation \(operation)"]
        }
        guard let response = responses[String(status)] ?? responses["default"] else {
            return ["$: the spec has no \(status) response for \(operation)"]
        }
        guard let json = response["content"]?["application/json"]?["schema"] else {
            return ["$: the \(status) response for \(operation) has no application/json schema"]
        }
        // init compiled this schema once already (to check its refs), so this cannot fail in practice.
        var compiler = SchemaCompiler()
        guard let schema = try? compiler.compile(json, at: "#") else {
            return ["$: the \(status) response for \(operation) has an invalid schema"]
        }
        return problems(value, schema)
    }

    private func problems(_ value: Any, _ schema: Schema) -> [String] {
        do {
            let found = check(try JSON(any: value, at: "$"), schema, at: "$", expanding: [])
            var seen = Set<String>()
            // allOf branches can repeat a problem (say, a shared base schema); report it once.
            return found.filter { seen.insert($0).inserted }
        } catch {
            return ["\(error)"]
        }
    }

    // MARK: - Checking

    /// `expanding` holds the refs already followed at this value, so a schema that refers to itself
    /// without descending into the value (A: allOf[A]) adds nothing instead of recursing forever.
    private func check(_ value: JSON, _ schema: Schema, at path: String, expanding: Set<String>) -> [String] {
        if let ref = schema.ref {
            guard !expanding.contains(ref) else { return [] }
            // init rejects refs to undefined schemas, so this is only a guard.
            guard let target = schemas[ref] else { return ["\(path): unresolved $ref \(ref)"] }
            return check(value, target, at: path, expanding: expanding.union([ref]))
        }
        if value == .null && schema.nullable { return [] }

        var problems = schema.unsupported.map { "\(path): schema uses unsupported keyword \($0)" }
        if let types = schema.types, !types.contains(where: value.isA) {
            // A value of the wrong type makes its other keywords meaningless; one problem is enough.
            return problems + ["\(path): expected \(types.joined(separator: " or ")), got \(value.typeName)"]
        }
        if let allowed = schema.enumValues, !allowed.contains(value) {
            problems.append("\(path): \(value.rendered) is not one of \(JSON.array(allowed).rendered)")
        }
        for part in schema.allOf {
            problems += check(value, part, at: path, expanding: expanding)
        }
        if !schema.anyOf.isEmpty {
            let matches = schema.anyOf.filter { check(value, $0, at: path, expanding: expanding).isEmpty }.count
            if matches == 0 { problems.append("\(path): matches none of the anyOf schemas") }
        }
        if !schema.oneOf.isEmpty {
            let matches = schema.oneOf.filter { check(value, $0, at: path, expanding: expanding).isEmpty }.count
            if matches != 1 { problems.append("\(path): matches \(matches) of the oneOf schemas, expected exactly 1") }
        }

        switch value {
        case .object(let members): problems += checkObject(members, schema, at: path)
        case .array(let elements): problems += checkArray(elements, schema, at: path)
        case .string(let string): problems += checkString(string, schema, at: path)
        case .integer(let integer): problems += checkNumber(Double(integer), exact: integer, schema, at: path)
        case .number(let number): problems += checkNumber(number, exact: nil, schema, at: path)
        case .null, .bool: break
        }
        return problems
    }

    private func checkObject(_ members: [String: JSON], _ schema: Schema, at path: String) -> [String] {
        var problems = schema.required.filter { members[$0] == nil }.map {
            "\(memberPath($0, of: path)): missing required property"
        }
        for (key, member) in members.sorted(by: { $0.key < $1.key }) {
            let child = memberPath(key, of: path)
            if let property = schema.properties[key] {
                problems += check(member, property, at: child, expanding: [])
            } else {
                switch schema.additionalProperties {
                case .allowed: break
                case .forbidden: problems.append("\(child): unknown property")
                case .schema(let additional): problems += check(member, additional, at: child, expanding: [])
                }
            }
        }
        return problems
    }

    private func checkArray(_ elements: [JSON], _ schema: Schema, at path: String) -> [String] {
        var problems: [String] = []
        if let minItems = schema.minItems, elements.count < minItems {
            problems.append("\(path): \(elements.count) items, fewer than minItems \(minItems)")
        }
        if let maxItems = schema.maxItems, elements.count > maxItems {
            problems.append("\(path): \(elements.count) items, more than maxItems \(maxItems)")
        }
        if schema.uniqueItems && Set(elements).count != elements.count {
            problems.append("\(path): items are not unique")
        }
        if let items = schema.items {
            for (index, element) in elements.enumerated() {
                problems += check(element, items, at: "\(path)[\(index)]", expanding: [])
            }
        }
        return problems
    }

    private func checkString(_ string: String, _ schema: Schema, at path: String) -> [String] {
        var problems: [String] = []
        // JSON Schema counts code points, not grapheme clusters.
        let length = string.unicodeScalars.count
        if let minLength = schema.minLength, length < minLength {
            problems.append("\(path): length \(length) is less than minLength \(minLength)")
        }
        if let maxLength = schema.maxLength, length > maxLength {
            problems.append("\(path): length \(length) is more than maxLength \(maxLength)")
        }
        if let pattern = schema.pattern {
            let whole = NSRange(string.startIndex..., in: string)
            if pattern.firstMatch(in: string, range: whole) == nil {
                problems.append("\(path): \(JSON.string(string).rendered) does not match pattern \(pattern.pattern)")
            }
        }
        switch schema.format {
        case "date-time" where !Self.isDateTime(string):
            problems.append("\(path): \(JSON.string(string).rendered) is not a date-time")
        case "uuid" where UUID(uuidString: string) == nil:
            problems.append("\(path): \(JSON.string(string).rendered) is not a uuid")
        default: break
        }
        return problems
    }

    /// `exact` carries whole numbers as Int64, since a Double cannot hold every int64.
    private func checkNumber(_ number: Double, exact: Int64?, _ schema: Schema, at path: String) -> [String] {
        var problems: [String] = []
        let rendered = exact.map(String.init) ?? String(number)
        if let minimum = schema.minimum {
            if schema.exclusiveMinimum ? number <= minimum : number < minimum {
                let bound = schema.exclusiveMinimum ? "exclusive minimum" : "minimum"
                problems.append("\(path): \(rendered) is below the \(bound) \(minimum)")
            }
        }
        if let maximum = schema.maximum {
            if schema.exclusiveMaximum ? number >= maximum : number > maximum {
                let bound = schema.exclusiveMaximum ? "exclusive maximum" : "maximum"
                problems.append("\(path): \(rendered) is above the \(bound) \(maximum)")
            }
        }
        if let format = schema.format, format == "int32" || format == "int64" {
            // `exact` is nil for fractions and for whole numbers beyond Int64.
            let fits = format == "int32" ? exact.flatMap(Int32.init(exactly:)) != nil : exact != nil
            if !fits { problems.append("\(path): \(rendered) is not an \(format)") }
        }
        return problems
    }

    /// RFC 3339 date-time: a date, "T", a time with optional fraction, then Z or a ±hh:mm offset.
    static func isDateTime(_ string: String) -> Bool {
        let shape = /([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?/
        let zone = /[Zz]|[+-]([0-9]{2}):([0-9]{2})/
        guard let match = string.prefixMatch(of: shape),
            let offset = string[match.range.upperBound...].wholeMatch(of: zone)
        else { return false }
        let numbers = [match.1, match.2, match.3, match.4, match.5, match.6].compactMap { Int($0) }
        guard numbers.count == 6 else { return false }
        let (year, month, day, hour, minute, second) = (
            numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5]
        )
        guard (1...12).contains(month), hour < 24, minute < 60, second <= 60 else { return false }
        let isLeap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, isLeap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard (1...days).contains(day) else { return false }
        if let hours = offset.1.flatMap({ Int($0) }), let minutes = offset.2.flatMap({ Int($0) }) {
            return hours < 24 && minutes < 60
        }
        return true
    }

}

/// `$.name` for plain keys, `$["odd key"]` for the rest, so paths stay unambiguous.
private func memberPath(_ key: String, of path: String) -> String {
    let plain =
        key.first.map { $0.isLetter || $0 == "_" } == true
        && key.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
    return plain ? "\(path).\(key)" : "\(path)[\(JSON.string(key).rendered)]"
}

// MARK: - JSON values

/// A JSON value, used for both the spec and the values under test, so that comparisons (enum,
/// uniqueItems) are plain equality. Whole numbers that fit Int64 are always `.integer`, so 1 and
/// 1.0 compare equal.
private enum JSON: Hashable, Sendable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    struct NotJSON: Error, CustomStringConvertible {
        let description: String
    }

    /// Converts a JSONSerialization result (or the equivalent Swift literals); `path` names the
    /// offending value if part of it is not JSON.
    init(any value: Any, at path: String) throws {
        switch value {
        case is NSNull: self = .null
        // Before String and Bool: on Linux an NSNumber also casts to Bool, whatever it holds.
        case let number as NSNumber: self = try Self.number(number, at: path)
        case let string as String: self = .string(string)
        case let array as [Any]:
            self = .array(try array.enumerated().map { try JSON(any: $1, at: "\(path)[\($0)]") })
        case let object as [String: Any]:
            self = .object(
                try object.reduce(into: [:]) { $0[$1.key] = try JSON(any: $1.value, at: memberPath($1.key, of: path)) })
        default: throw NotJSON(description: "\(path): \(type(of: value)) is not a JSON value")
        }
    }

    private static func number(_ number: NSNumber, at path: String) throws -> JSON {
        if number is NSDecimalNumber {
            // JSONSerialization uses decimals for integers too big for Int; keep them exact when possible.
            if let integer = Int64(number.stringValue) { return .integer(integer) }
            return try real(number.doubleValue, at: path)
        }
        switch String(cString: number.objCType) {
        case "c", "B": return .bool(number.boolValue)
        case "f", "d": return try real(number.doubleValue, at: path)
        case "C", "S", "I", "L", "Q":
            let unsigned = number.uint64Value
            return Int64(exactly: unsigned).map(JSON.integer) ?? .number(Double(unsigned))
        default: return .integer(number.int64Value)
        }
    }

    private static func real(_ double: Double, at path: String) throws -> JSON {
        guard double.isFinite else { throw NotJSON(description: "\(path): \(double) is not a JSON number") }
        return Int64(exactly: double).map(JSON.integer) ?? .number(double)
    }

    subscript(key: String) -> JSON? {
        guard case .object(let members) = self else { return nil }
        return members[key]
    }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .integer, .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    func isA(_ type: String) -> Bool {
        switch (type, self) {
        case ("integer", .integer): true
        // Whole numbers beyond Int64 are still integers; int64 formats reject them by range.
        case ("integer", .number(let number)): number.rounded() == number
        case ("number", .integer), ("number", .number): true
        default: type == typeName
        }
    }

    /// Compact JSON text for problem messages.
    var rendered: String {
        switch self {
        case .null: "null"
        case .bool(let bool): String(bool)
        case .integer(let integer): String(integer)
        case .number(let number): String(number)
        case .string(let string):
            (try? JSONSerialization.data(withJSONObject: string, options: .fragmentsAllowed))
                .flatMap { String(data: $0, encoding: .utf8) } ?? string
        case .array(let elements): "[" + elements.map(\.rendered).joined(separator: ", ") + "]"
        case .object(let members):
            "{"
                + members.keys.sorted().map { "\(JSON.string($0).rendered): \(members[$0]?.rendered ?? "")" }
                .joined(separator: ", ") + "}"
        }
    }
}

// MARK: - Schemas

/// One compiled schema object. A class because schemas nest; immutable, so Sendable.
private final class Schema: Sendable {
    enum Additional {
        case allowed
        case forbidden
        case schema(Schema)
    }

    let ref: String?
    /// `type`: one name, or (JSON Schema) a list of them.
    let types: [String]?
    let format: String?
    let nullable: Bool
    let enumValues: [JSON]?
    let allOf: [Schema]
    let anyOf: [Schema]
    let oneOf: [Schema]
    let properties: [String: Schema]
    let required: [String]
    let additionalProperties: Additional
    let items: Schema?
    let minItems: Int?
    let maxItems: Int?
    let uniqueItems: Bool
    let minimum: Double?
    let maximum: Double?
    let exclusiveMinimum: Bool
    let exclusiveMaximum: Bool
    let minLength: Int?
    let maxLength: Int?
    let pattern: NSRegularExpression?
    let unsupported: [String]

    init(
        ref: String? = nil, members: [String: JSON] = [:], allOf: [Schema] = [], anyOf: [Schema] = [],
        oneOf: [Schema] = [], properties: [String: Schema] = [:], additionalProperties: Additional = .allowed,
        items: Schema? = nil, pattern: NSRegularExpression? = nil, unsupported: [String] = []
    ) {
        func string(_ key: String) -> String? {
            if case .string(let value)? = members[key] { value } else { nil }
        }
        func bool(_ key: String) -> Bool { members[key] == .bool(true) }
        func double(_ key: String) -> Double? {
            switch members[key] {
            case .integer(let value)?: Double(value)
            case .number(let value)?: value
            default: nil
            }
        }
        func int(_ key: String) -> Int? {
            if case .integer(let value)? = members[key] { Int(exactly: value) } else { nil }
        }
        self.ref = ref
        switch members["type"] {
        case .string(let type)?: self.types = [type]
        case .array(let types)?: self.types = types.compactMap { if case .string(let type) = $0 { type } else { nil } }
        default: self.types = nil
        }
        self.format = string("format")
        self.nullable = bool("nullable")
        if case .array(let values)? = members["enum"] { self.enumValues = values } else { self.enumValues = nil }
        self.allOf = allOf
        self.anyOf = anyOf
        self.oneOf = oneOf
        self.properties = properties
        if case .array(let names)? = members["required"] {
            self.required = names.compactMap { if case .string(let name) = $0 { name } else { nil } }
        } else {
            self.required = []
        }
        self.additionalProperties = additionalProperties
        self.items = items
        self.minItems = int("minItems")
        self.maxItems = int("maxItems")
        self.uniqueItems = bool("uniqueItems")
        self.minimum = double("minimum")
        self.maximum = double("maximum")
        self.exclusiveMinimum = bool("exclusiveMinimum")
        self.exclusiveMaximum = bool("exclusiveMaximum")
        self.minLength = int("minLength")
        self.maxLength = int("maxLength")
        self.pattern = pattern
        self.unsupported = unsupported
    }
}

/// Turns the spec's JSON into `Schema`s, collecting the refs to check and the keywords it skips.
private struct SchemaCompiler {
    static let scalarKeywords: Set<String> = [
        "type", "format", "nullable", "enum", "required", "minItems", "maxItems", "uniqueItems", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    ]
    static let nestedKeywords: Set<String> = [
        "$ref", "allOf", "anyOf", "oneOf", "properties", "additionalProperties", "items", "pattern",
    ]
    static let annotations: Set<String> = [
        "description", "example", "default", "deprecated", "title", "readOnly", "writeOnly", "externalDocs", "xml",
        "discriminator", "$schema", "$id", "$comment",
    ]

    private(set) var references: Set<String> = []
    private(set) var unsupported: Set<String> = []

    mutating func compile(_ json: JSON, at pointer: String) throws -> Schema {
        guard case .object(let members) = json else { throw OpenAPIValidator.SpecError("\(pointer) is not a schema") }
        if case .string(let ref)? = members["$ref"] {
            let prefix = "#/components/schemas/"
            if ref.hasSuffix(".json") && !ref.contains("/") && !ref.contains("#") {
                references.insert(ref)
                return Schema(ref: ref)
            }
            guard ref.hasPrefix(prefix) else { throw OpenAPIValidator.SpecError("\(pointer): unsupported $ref \(ref)") }
            let name = String(ref.dropFirst(prefix.count))
                .replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            references.insert(name)
            return Schema(ref: name)
        }
        let skipped = members.keys.filter {
            !Self.scalarKeywords.contains($0) && !Self.nestedKeywords.contains($0) && !Self.annotations.contains($0)
                && !$0.hasPrefix("x-")
        }.sorted()
        unsupported.formUnion(skipped)

        func list(_ key: String) throws -> [Schema] {
            guard case .array(let schemas)? = members[key] else { return [] }
            return try schemas.enumerated().map { try compile($1, at: "\(pointer)/\(key)/\($0)") }
        }
        var properties: [String: Schema] = [:]
        if case .object(let declared)? = members["properties"] {
            for (name, schema) in declared {
                properties[name] = try compile(schema, at: "\(pointer)/properties/\(name)")
            }
        }
        let additional: Schema.Additional
        switch members["additionalProperties"] {
        case nil, .bool(true)?: additional = .allowed
        case .bool(false)?: additional = .forbidden
        case .object(let schema)? where schema.isEmpty: additional = .allowed
        case let schema?: additional = .schema(try compile(schema, at: "\(pointer)/additionalProperties"))
        }
        var pattern: NSRegularExpression?
        if case .string(let source)? = members["pattern"] {
            do { pattern = try NSRegularExpression(pattern: source) } catch {
                throw OpenAPIValidator.SpecError("\(pointer): invalid pattern \(source)")
            }
        }
        return Schema(
            members: members, allOf: try list("allOf"), anyOf: try list("anyOf"), oneOf: try list("oneOf"),
            properties: properties, additionalProperties: additional,
            items: try members["items"].map { try compile($0, at: "\(pointer)/items") }, pattern: pattern,
            unsupported: skipped)
    }
}
