import Basics
import FastCGI
import Foundation

/// A request body's shape, from the spec's *Dto schemas, checked as strictly as their
/// `additionalProperties: false`: property names match without regard to case (as ASP.NET binds
/// them) and come out spelled as the spec spells them; an unknown property or a value of the
/// wrong JSON type is a 400 naming it. Every property is nullable except `flag`s and
/// `integer`s (the spec's non-nullable booleans and int64s); array items never are.
indirect enum BodyShape: Sendable {
    case string, dateTime, boolean, flag, number, integer, managedBy
    /// Any JSON value (the spec's `additionalProperties: {nullable: true}`).
    case any
    case list(BodyShape)
    case object([String: BodyShape])
    /// An object with free keys whose values share one shape (`additionalProperties: {schema}`).
    case map(BodyShape)
    /// A shape that contains itself (MatterItemDto's `subItems`).
    case recursive(@Sendable () -> BodyShape)

    static func strings(_ names: [String]) -> [String: BodyShape] {
        Dictionary(uniqueKeysWithValues: names.map { ($0, BodyShape.string) })
    }

    /// A DTO's properties: `names` are nullable strings, `more` the others.
    static func properties(_ names: [String], _ more: [String: BodyShape] = [:]) -> [String: BodyShape] {
        strings(names).merging(more) { $1 }
    }

    static func object(_ names: [String], _ more: [String: BodyShape] = [:]) -> BodyShape {
        .object(properties(names, more))
    }

    static func badRequest(_ detail: String) -> SandboxFailure { .problem(.badRequest, "Bad Request", detail) }

    /// A top-level body checked against the DTO `name` with these `properties`.
    static func check(_ body: [String: Any], _ name: String, _ properties: [String: BodyShape]) throws
        -> [String: Any]
    {
        var out: [String: Any] = [:]
        for (key, member) in body {
            guard let known = properties.first(where: { $0.key.caseInsensitiveCompare(key) == .orderedSame }) else {
                throw badRequest("\(key) is not a property of \(name)")
            }
            out[known.key] = try normalise(member, known.value, at: known.key)
        }
        return out
    }

    static func isString(_ value: Any) -> String? {
        value is NSNumber ? nil : value as? String
    }

    /// The value in the stored form (keys spelled as in the spec, dates normalised), nulls kept
    /// so an update can clear a field. Throws a 400 naming the offending property.
    static func normalise(_ value: Any, _ shape: BodyShape, at path: String) throws -> Any {
        if value is NSNull {
            switch shape {
            case .flag: throw badRequest("\(path) must be true or false")
            case .integer: throw badRequest("\(path) must be an integer")
            case .recursive(let inner): return try normalise(value, inner(), at: path)
            default: return NSNull()
            }
        }
        switch shape {
        case .string:
            guard let text = isString(value) else { throw badRequest("\(path) must be a string") }
            return text
        case .dateTime:
            guard let text = isString(value), let date = parseDate(text) else {
                throw badRequest("\(path) must be an ISO 8601 date-time")
            }
            return Timestamp.iso8601(date, fractionDigits: 0)
        case .boolean, .flag:
            guard let flag = JSONBoolean.value(value) else { throw badRequest("\(path) must be true or false") }
            return flag
        case .number:
            guard let number = value as? NSNumber, JSONBoolean.value(value) == nil else {
                throw badRequest("\(path) must be a number")
            }
            return number
        case .integer:
            guard let number = value as? NSNumber, JSONBoolean.value(value) == nil,
                number.doubleValue.rounded() == number.doubleValue,
                abs(number.doubleValue) < 9.2e18
            else { throw badRequest("\(path) must be an integer") }
            return number.int64Value
        case .managedBy:
            // CompanyManagedBy is 0 (Members) or 1 (Managers); its description names the values.
            let names = ["Members", "Managers"]
            if JSONBoolean.value(value) == nil, let number = value as? NSNumber,
                number.doubleValue == 0 || number.doubleValue == 1
            {
                return names[number.intValue]
            }
            if let text = isString(value),
                let name = names.first(where: { $0.caseInsensitiveCompare(text) == .orderedSame })
            {
                return name
            }
            throw badRequest("\(path) must be 0 (Members) or 1 (Managers)")
        case .any:
            return value
        case .list(let element):
            guard let array = value as? [Any] else { throw badRequest("\(path) must be an array") }
            return try array.enumerated().map { index, item in
                let at = "\(path)[\(index)]"
                guard !(item is NSNull) else { throw badRequest("\(at) must not be null") }
                return try normalise(item, element, at: at)
            }
        case .object(let properties):
            guard let object = value as? [String: Any] else { throw badRequest("\(path) must be an object") }
            var out: [String: Any] = [:]
            for (key, member) in object {
                guard let known = properties.first(where: { $0.key.caseInsensitiveCompare(key) == .orderedSame })
                else { throw badRequest("\(path).\(key) is not a known property") }
                out[known.key] = try normalise(member, known.value, at: "\(path).\(known.key)")
            }
            return out
        case .map(let element):
            guard let object = value as? [String: Any] else { throw badRequest("\(path) must be an object") }
            return try object.reduce(into: [String: Any]()) { out, member in
                out[member.key] = try normalise(member.value, element, at: "\(path).\(member.key)")
            }
        case .recursive(let inner):
            return try normalise(value, inner(), at: path)
        }
    }

    /// ISO 8601 as .NET reads it: with or without fractional seconds and offset, or a date alone.
    static func parseDate(_ text: String) -> Date? {
        let styles: [Date.ISO8601FormatStyle] = [
            Date.ISO8601FormatStyle(), Date.ISO8601FormatStyle(includingFractionalSeconds: true),
            Date.ISO8601FormatStyle().year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false)
                .timeSeparator(.colon),
            Date.ISO8601FormatStyle().year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true)
                .timeSeparator(.colon),
            Date.ISO8601FormatStyle().year().month().day().dateSeparator(.dash),
        ]
        for style in styles {
            if let date = try? style.parse(text) { return date }
        }
        return nil
    }
}
