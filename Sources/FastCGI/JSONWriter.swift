import Basics
import Foundation

/// Serialises the values `JSONSerialization` produces and accepts (dictionaries with String
/// keys, arrays, strings, numbers, booleans, `NSNull`) to compact JSON with keys sorted by
/// their Unicode scalars. Written here because Foundation's sorted-keys writer compares keys
/// through ICU collation and was the largest cost of a status answer (about 40% of a worker's
/// CPU under load); the output is the same JSON, byte for byte stable across runs.
public enum JSONWriter {
    public struct UnsupportedValue: Error, CustomStringConvertible {
        public let typeName: String
        public var description: String { "cannot encode a value of type \(typeName) as JSON" }
    }

    /// The JSON text of `value`; throws for values JSON cannot express (dates, non-finite
    /// numbers, non-String keys).
    public static func encode(_ value: Any) throws -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        try write(value, to: &output)
        return output
    }

    static func write(_ value: Any, to output: inout [UInt8]) throws {
        // Exact type comparisons first: they cost a pointer compare, while a conditional cast
        // such as `as? Bool` or `is NSNull` on a dictionary bridges it to NSDictionary to ask,
        // which profiles showed as the writer's main cost.
        let kind = type(of: value)
        if kind == String.self {
            writeString(value as! String, to: &output)
        } else if kind == Bool.self {
            output.append(contentsOf: ((value as! Bool) ? "true" : "false").utf8)
        } else if kind == NSNull.self {
            output.append(contentsOf: "null".utf8)
        } else if kind == Int.self {
            output.append(contentsOf: String(value as! Int).utf8)
        } else if kind == Int64.self {
            output.append(contentsOf: String(value as! Int64).utf8)
        } else if kind == Int32.self {
            output.append(contentsOf: String(value as! Int32).utf8)
        } else if kind == UInt64.self {
            output.append(contentsOf: String(value as! UInt64).utf8)
        } else if kind == UInt32.self {
            output.append(contentsOf: String(value as! UInt32).utf8)
        } else if kind == Double.self {
            try writeDouble(value as! Double, to: &output)
        } else if kind == Float.self {
            try writeDouble(Double(value as! Float), to: &output)
        } else if kind is NSNumber.Type, let number = value as? NSNumber {
            // What JSONSerialization decodes numbers and booleans to.
            try writeNumber(number, to: &output)
        } else if let object = value as? [String: Any] {
            output.append(UInt8(ascii: "{"))
            var first = true
            for key in object.keys.sorted(by: { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }) {
                if !first { output.append(UInt8(ascii: ",")) }
                first = false
                writeString(key, to: &output)
                output.append(UInt8(ascii: ":"))
                try write(object[key]!, to: &output)
            }
            output.append(UInt8(ascii: "}"))
        } else if let array = value as? [Any] {
            output.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                try write(element, to: &output)
            }
            output.append(UInt8(ascii: "]"))
        } else if let text = value as? String {
            // NSString and other types that bridge to String.
            writeString(text, to: &output)
        } else {
            throw UnsupportedValue(typeName: String(describing: kind))
        }
    }

    /// NSNumber as decoded by `JSONSerialization`: booleans keep their type code "c".
    static func writeNumber(_ number: NSNumber, to output: inout [UInt8]) throws {
        switch String(cString: number.objCType) {
        case "c", "B":
            output.append(contentsOf: (number.boolValue ? "true" : "false").utf8)
        case "f", "d":
            try writeDouble(number.doubleValue, to: &output)
        case "Q", "L", "I", "S", "C":
            output.append(contentsOf: String(number.uint64Value).utf8)
        default:
            output.append(contentsOf: String(number.int64Value).utf8)
        }
    }

    static func writeDouble(_ number: Double, to output: inout [UInt8]) throws {
        guard number.isFinite else { throw UnsupportedValue(typeName: "non-finite Double") }
        if number == number.rounded(.towardZero), abs(number) < 1e15 {
            output.append(contentsOf: String(Int64(number)).utf8)
        } else {
            output.append(contentsOf: String(number).utf8)
        }
    }

    static func writeString(_ text: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x00..<0x20, 0x7F:
                output.append(contentsOf: "\\u00".utf8)
                Hex.append(byte, to: &output)
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}
