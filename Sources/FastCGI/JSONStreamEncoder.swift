import Basics
import Foundation

/// Encodes an `Encodable` answer to compact JSON in one pass, straight into bytes: no
/// intermediate tree and no Foundation bridging, which is what makes Foundation's `JSONEncoder`
/// (and `[String: Any]` answers) cost more than the answer itself on a small route. Keys come in
/// the order the type encodes them (a synthesized `Encodable` follows its declaration), except
/// `[String: V]` dictionaries, whose keys are sorted so answers stay byte-for-byte stable.
/// Dates are ISO 8601 strings with fractional seconds, in UTC. An optional property that is nil
/// is written as `null`, never left out: an answer's shape does not depend on its values.
///
/// The `Encoder` protocol never says when a container is finished, so each container is closed
/// when its value's `encode(to:)` returns, or when an enclosing container writes again (a nested
/// container is used before its parent moves on).
public enum JSONStreamEncoder {
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        let sink = Sink()
        try sink.encodeValue(value)
        sink.close(downTo: 0)
        return sink.bytes
    }
}

/// Dictionaries with String keys, written with sorted keys (the standard library would write
/// them in hash order, which changes between processes).
private protocol SortedKeysEncodable {
    func encodeSorted(into sink: Sink) throws
}

extension Dictionary: SortedKeysEncodable where Key == String, Value: Encodable {
    fileprivate func encodeSorted(into sink: Sink) throws {
        sink.bytes.append(UInt8(ascii: "{"))
        var first = true
        for key in keys.sorted(by: { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }) {
            if !first { sink.bytes.append(UInt8(ascii: ",")) }
            first = false
            JSONWriter.writeString(key, to: &sink.bytes)
            sink.bytes.append(UInt8(ascii: ":"))
            try sink.encodeValue(self[key]!)
        }
        sink.bytes.append(UInt8(ascii: "}"))
    }
}

private final class Sink {
    enum Kind {
        case object
        case array
    }

    struct Frame {
        let kind: Kind
        var count: Int
    }

    var bytes: [UInt8] = []
    var frames: [Frame] = []

    init() { bytes.reserveCapacity(512) }

    /// Closes every container opened deeper than `depth`.
    func close(downTo depth: Int) {
        while frames.count > depth {
            bytes.append(frames.removeLast().kind == .object ? UInt8(ascii: "}") : UInt8(ascii: "]"))
        }
    }

    func open(_ kind: Kind, at depth: Int) {
        close(downTo: depth)
        bytes.append(kind == .object ? UInt8(ascii: "{") : UInt8(ascii: "["))
        frames.append(Frame(kind: kind, count: 0))
    }

    /// Before an element of the container at `index`: closes what a previous element left open
    /// and writes the separator.
    func beginElement(of index: Int) {
        close(downTo: index + 1)
        if frames[index].count > 0 { bytes.append(UInt8(ascii: ",")) }
        frames[index].count += 1
    }

    func beginKey(_ key: some CodingKey, of index: Int) {
        beginElement(of: index)
        JSONWriter.writeString(key.stringValue, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    /// Scalars are told apart by comparing metatypes, a pointer compare each: a conditional cast
    /// (`as? String`) per value cost more than writing the whole answer.
    func encodeValue<T: Encodable>(_ value: T) throws {
        if T.self == String.self {
            JSONWriter.writeString(unsafeBitCast(value, to: String.self), to: &bytes)
        } else if T.self == Bool.self {
            bytes.append(contentsOf: (unsafeBitCast(value, to: Bool.self) ? "true" : "false").utf8)
        } else if T.self == Int.self {
            bytes.append(contentsOf: String(unsafeBitCast(value, to: Int.self)).utf8)
        } else if T.self == UUID.self {
            JSONWriter.writeString(unsafeBitCast(value, to: UUID.self).uuidString.lowercased(), to: &bytes)
        } else if T.self == Date.self {
            JSONWriter.writeString(Timestamp.iso8601(unsafeBitCast(value, to: Date.self)), to: &bytes)
        } else if T.self == Double.self {
            try JSONWriter.writeDouble(unsafeBitCast(value, to: Double.self), to: &bytes)
        } else if T.self == Float.self {
            try JSONWriter.writeDouble(Double(unsafeBitCast(value, to: Float.self)), to: &bytes)
        } else if let text = Self.integerText(value) {
            bytes.append(contentsOf: text.utf8)
        } else if let dictionary = value as? SortedKeysEncodable {
            try dictionary.encodeSorted(into: self)
        } else {
            let depth = frames.count
            let start = bytes.count
            try value.encode(to: StreamEncoder(sink: self, depth: depth))
            close(downTo: depth)
            // A value that asked for no container encodes as an empty object, as JSONEncoder does.
            if bytes.count == start { bytes.append(contentsOf: "{}".utf8) }
        }
    }
}

extension Sink {
    /// The other integer types, by metatype too (their own `encode(to:)` would come back here).
    static func integerText<T>(_ value: T) -> String? {
        switch T.self {
        case is Int64.Type: String(unsafeBitCast(value, to: Int64.self))
        case is Int32.Type: String(unsafeBitCast(value, to: Int32.self))
        case is Int16.Type: String(unsafeBitCast(value, to: Int16.self))
        case is Int8.Type: String(unsafeBitCast(value, to: Int8.self))
        case is UInt.Type: String(unsafeBitCast(value, to: UInt.self))
        case is UInt64.Type: String(unsafeBitCast(value, to: UInt64.self))
        case is UInt32.Type: String(unsafeBitCast(value, to: UInt32.self))
        case is UInt16.Type: String(unsafeBitCast(value, to: UInt16.self))
        case is UInt8.Type: String(unsafeBitCast(value, to: UInt8.self))
        default: nil
        }
    }
}

private struct StreamEncoder: Encoder {
    let sink: Sink
    let depth: Int
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        sink.open(.object, at: depth)
        return KeyedEncodingContainer(KeyedContainer<Key>(sink: sink, index: depth))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        sink.open(.array, at: depth)
        return UnkeyedContainer(sink: sink, index: depth)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueContainer(sink: sink, depth: depth)
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let sink: Sink
    let index: Int
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil(forKey key: Key) throws {
        sink.beginKey(key, of: index)
        sink.bytes.append(contentsOf: "null".utf8)
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        sink.beginKey(key, of: index)
        try sink.encodeValue(value)
    }

    /// What synthesized `Encodable` calls for optional properties: nil becomes `null`. The
    /// protocol's defaults (which leave the key out) exist per type, so each is replaced.
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
        guard let value else { return try encodeNil(forKey: key) }
        try encode(value, forKey: key)
    }
    mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Float?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) throws { try encodeOrNull(value, key) }
    mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) throws { try encodeOrNull(value, key) }

    private mutating func encodeOrNull<T: Encodable>(_ value: T?, _ key: Key) throws {
        guard let value else { return try encodeNil(forKey: key) }
        try encode(value, forKey: key)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        sink.beginKey(key, of: index)
        return StreamEncoder(sink: sink, depth: index + 1).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        sink.beginKey(key, of: index)
        return StreamEncoder(sink: sink, depth: index + 1).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        sink.beginKey(SuperKey(), of: index)
        return StreamEncoder(sink: sink, depth: index + 1)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        sink.beginKey(key, of: index)
        return StreamEncoder(sink: sink, depth: index + 1)
    }
}

private struct SuperKey: CodingKey {
    var stringValue: String { "super" }
    var intValue: Int? { nil }
    init() {}
    init?(stringValue: String) { nil }
    init?(intValue: Int) { nil }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let sink: Sink
    let index: Int
    var codingPath: [any CodingKey] { [] }
    var count: Int { sink.frames.count > index ? sink.frames[index].count : 0 }

    mutating func encodeNil() throws {
        sink.beginElement(of: index)
        sink.bytes.append(contentsOf: "null".utf8)
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
        sink.beginElement(of: index)
        try sink.encodeValue(value)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
        -> KeyedEncodingContainer<NestedKey>
    {
        sink.beginElement(of: index)
        return StreamEncoder(sink: sink, depth: index + 1).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        sink.beginElement(of: index)
        return StreamEncoder(sink: sink, depth: index + 1).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        sink.beginElement(of: index)
        return StreamEncoder(sink: sink, depth: index + 1)
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let sink: Sink
    let depth: Int
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil() throws {
        sink.close(downTo: depth)
        sink.bytes.append(contentsOf: "null".utf8)
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
        sink.close(downTo: depth)
        try sink.encodeValue(value)
    }
}
