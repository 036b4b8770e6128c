import Basics
import Foundation

/// A value bound to a `$n` parameter. Values travel separately from the SQL text, so no value
/// can change the meaning of a statement: bytes in PostgreSQL's binary format, the rest as text.
public enum SQLValue: Sendable, Equatable {
    case null
    case text(String)
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case uuid(UUID)
    case timestamp(Date)
    case bytes([UInt8])
    /// JSON text, bound as `jsonb` by a cast in the statement (`$1::jsonb`).
    case json(String)

    /// The text-format wire representation; `nil` is SQL NULL or bytes (sent in binary).
    var wireText: String? {
        switch self {
        case .null, .bytes: return nil
        case .text(let value): return value
        case .int(let value): return String(value)
        case .bool(let value): return value ? "t" : "f"
        case .double(let value): return String(value)
        case .uuid(let value): return value.uuidString.lowercased()
        case .timestamp(let value): return Timestamp.postgres(value)
        case .json(let value): return value
        }
    }
}

/// Statement parameters laid out for libpq: every value back to back in one buffer, with the
/// pointer, length and format (0 text, 1 binary) of each. Bytes go in binary, as they are:
/// no hex text to build, send or parse.
struct EncodedParameters {
    private var storage: [UInt8] = []
    /// Where each value starts in `storage`; nil is SQL NULL.
    private var offsets: [Int?] = []
    private var lengths: [Int32] = []
    private var formats: [Int32] = []

    /// Throws `.invalidParameter` naming the position (`$2`), never the value, for text that
    /// holds a NUL (PostgreSQL text cannot, and libpq would silently cut it there) or bytes
    /// beyond libpq's 2 GiB length.
    init(_ parameters: [any SQLValueConvertible]) throws(DatabaseError) {
        let values = parameters.map(\.sqlValue)
        var texts: [String?] = []
        var size = 0
        for (index, value) in values.enumerated() {
            let text = value.wireText
            if let text {
                guard !text.utf8.contains(0) else { throw DatabaseError(.invalidParameter, name: "$\(index + 1)") }
                size += text.utf8.count + 1
            } else if case .bytes(let bytes) = value {
                // libpq lengths are Int32 (and a bytea holds at most 1 GB anyway).
                guard bytes.count <= Int(Int32.max) else {
                    throw DatabaseError(.invalidParameter, name: "$\(index + 1)")
                }
                size += bytes.count
            }
            texts.append(text)
        }
        storage.reserveCapacity(size + 1)
        for (value, text) in zip(values, texts) {
            if let text {
                offsets.append(storage.count)
                lengths.append(Int32(text.utf8.count))
                formats.append(0)
                storage.append(contentsOf: text.utf8)
                storage.append(0)
            } else if case .bytes(let bytes) = value {
                offsets.append(storage.count)
                lengths.append(Int32(bytes.count))
                formats.append(1)
                storage.append(contentsOf: bytes)
            } else {
                offsets.append(nil)
                lengths.append(0)
                formats.append(0)
            }
        }
        // Never empty, so empty bytes still get a non-NULL pointer (NULL would mean SQL NULL).
        storage.append(0)
    }

    var count: Int32 { Int32(offsets.count) }
    /// Formats as sent (tests check bytes go in binary).
    var parameterFormats: [Int32] { formats }

    /// Calls `body` with libpq's `nParams`, `paramValues`, `paramLengths`, `paramFormats`.
    func withPointers<R>(
        _ body: (
            Int32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?
        ) -> R
    ) -> R {
        guard !offsets.isEmpty else { return body(0, nil, nil, nil) }
        return storage.withUnsafeBytes { buffer in
            let pointers: [UnsafePointer<CChar>?] = offsets.map { offset in
                offset.map { (buffer.baseAddress! + $0).assumingMemoryBound(to: CChar.self) }
            }
            return pointers.withUnsafeBufferPointer { values in
                lengths.withUnsafeBufferPointer { lengths in
                    formats.withUnsafeBufferPointer { formats in
                        body(count, values.baseAddress, lengths.baseAddress, formats.baseAddress)
                    }
                }
            }
        }
    }
}

/// Swift values usable as statement parameters.
public protocol SQLValueConvertible: Sendable {
    var sqlValue: SQLValue { get }
}

extension SQLValue: SQLValueConvertible {
    public var sqlValue: SQLValue { self }
}

extension String: SQLValueConvertible {
    public var sqlValue: SQLValue { .text(self) }
}

extension Int: SQLValueConvertible {
    public var sqlValue: SQLValue { .int(Int64(self)) }
}

extension Int64: SQLValueConvertible {
    public var sqlValue: SQLValue { .int(self) }
}

extension Bool: SQLValueConvertible {
    public var sqlValue: SQLValue { .bool(self) }
}

extension Double: SQLValueConvertible {
    public var sqlValue: SQLValue { .double(self) }
}

extension UUID: SQLValueConvertible {
    public var sqlValue: SQLValue { .uuid(self) }
}

extension Date: SQLValueConvertible {
    public var sqlValue: SQLValue { .timestamp(self) }
}

extension Array: SQLValueConvertible where Element == UInt8 {
    public var sqlValue: SQLValue { .bytes(self) }
}

extension Optional: SQLValueConvertible where Wrapped: SQLValueConvertible {
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}
