import Basics
import CLibPQ
import Foundation

/// The rows of one statement. Owns its `PGresult` and clears it exactly once.
public final class QueryResult {
    private let handle: OpaquePointer
    public let rowCount: Int

    init(owning handle: OpaquePointer) {
        self.handle = handle
        self.rowCount = Int(PQntuples(handle))
    }

    deinit {
        PQclear(handle)
    }

    /// Rows affected by INSERT/UPDATE/DELETE.
    public var affectedRows: Int {
        Int(String(cString: PQcmdTuples(handle))) ?? 0
    }

    public var rows: [Row] { (0..<rowCount).map { Row(result: self, index: $0) } }

    /// The only row; throws `.noRows` when there is none and `.tooManyRows` when there are more.
    public func single() throws(DatabaseError) -> Row {
        guard rowCount >= 1 else { throw DatabaseError(.noRows) }
        guard rowCount == 1 else { throw DatabaseError(.tooManyRows) }
        return Row(result: self, index: 0)
    }

    public var first: Row? { rowCount > 0 ? Row(result: self, index: 0) : nil }

    /// Column names in order.
    public var columnNames: [String] {
        (0..<PQnfields(handle)).map { String(cString: PQfname(handle, $0)) }
    }

    /// Looked up in libpq's own column descriptors rather than a name index built for every
    /// result: most results are read once, a few columns each. Names match exactly (the first
    /// column of that name); PQfnumber's identifier folding is only a fast path.
    func column(_ name: String) throws(DatabaseError) -> (index: Int32, type: UInt32) {
        let column: Int32 = name.withCString { wanted in
            let guess = PQfnumber(handle, wanted)
            if guess >= 0, strcmp(PQfname(handle, guess), wanted) == 0 { return guess }
            for column in 0..<PQnfields(handle) where strcmp(PQfname(handle, column), wanted) == 0 { return column }
            return -1
        }
        guard column >= 0 else { throw DatabaseError(.unknownColumn, name: name) }
        return (column, UInt32(PQftype(handle, column)))
    }

    func isNull(row: Int, column: Int32) -> Bool { PQgetisnull(handle, Int32(row), column) == 1 }

    func text(row: Int, column: Int32) -> String {
        String(cString: PQgetvalue(handle, Int32(row), column))
    }

    /// A bytea value decoded straight from libpq's buffer (no String in between), or nil when
    /// it is not in hex form (`bytea_output = hex`, the default since 9.0: `\x0a1b...`).
    func bytea(row: Int, column: Int32) -> [UInt8]? {
        let length = Int(PQgetlength(handle, Int32(row), column))
        guard let value = PQgetvalue(handle, Int32(row), column) else { return nil }
        return UnsafeRawPointer(value).withMemoryRebound(to: UInt8.self, capacity: length) { text in
            Self.decodeBytea(UnsafeBufferPointer(start: text, count: length))
        }
    }
}

extension QueryResult {
    /// `\x0a1b...` to its bytes; nil if it is not in that form.
    static func decodeBytea(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard text.count >= 2, text[0] == UInt8(ascii: "\\"), text[1] == UInt8(ascii: "x") else { return nil }
        return Hex.decode(UnsafeBufferPointer(rebasing: text[2...]))
    }
}

/// Well-known type OIDs (`pg_type`), used to refuse reading a column as the wrong Swift type.
enum TypeOID {
    static let bool: UInt32 = 16
    static let bytea: UInt32 = 17
    static let name: UInt32 = 19
    static let int8: UInt32 = 20
    static let int2: UInt32 = 21
    static let int4: UInt32 = 23
    static let text: UInt32 = 25
    static let oid: UInt32 = 26
    static let json: UInt32 = 114
    static let float4: UInt32 = 700
    static let float8: UInt32 = 701
    static let bpchar: UInt32 = 1042
    static let varchar: UInt32 = 1043
    static let timestamp: UInt32 = 1114
    static let timestamptz: UInt32 = 1184
    static let numeric: UInt32 = 1700
    static let uuid: UInt32 = 2950
    static let jsonb: UInt32 = 3802
}

/// One row. Accessors throw on NULL (use the `optional…` forms where NULL is allowed) and on a
/// column whose type is not the one asked for.
public struct Row {
    let result: QueryResult
    let index: Int

    private func raw(_ name: String, accepting types: Set<UInt32>) throws(DatabaseError) -> String? {
        let column = try result.column(name)
        guard types.contains(column.type) else { throw DatabaseError(.typeMismatch, name: name) }
        if result.isNull(row: index, column: column.index) { return nil }
        return result.text(row: index, column: column.index)
    }

    private func required(_ name: String, accepting types: Set<UInt32>) throws(DatabaseError) -> String {
        guard let text = try raw(name, accepting: types) else { throw DatabaseError(.unexpectedNull, name: name) }
        return text
    }

    static let textTypes: Set<UInt32> = [TypeOID.text, TypeOID.varchar, TypeOID.bpchar, TypeOID.name]
    static let intTypes: Set<UInt32> = [TypeOID.int2, TypeOID.int4, TypeOID.int8, TypeOID.oid]
    static let doubleTypes: Set<UInt32> = [TypeOID.float4, TypeOID.float8, TypeOID.numeric]
    static let timeTypes: Set<UInt32> = [TypeOID.timestamptz, TypeOID.timestamp]
    static let jsonTypes: Set<UInt32> = [TypeOID.json, TypeOID.jsonb]

    public func isNull(_ name: String) throws(DatabaseError) -> Bool {
        let column = try result.column(name)
        return result.isNull(row: index, column: column.index)
    }

    public func string(_ name: String) throws(DatabaseError) -> String {
        try required(name, accepting: Self.textTypes)
    }

    public func optionalString(_ name: String) throws(DatabaseError) -> String? {
        try raw(name, accepting: Self.textTypes)
    }

    public func int(_ name: String) throws(DatabaseError) -> Int64 {
        try parseInt(name, required(name, accepting: Self.intTypes))
    }

    public func optionalInt(_ name: String) throws(DatabaseError) -> Int64? {
        guard let text = try raw(name, accepting: Self.intTypes) else { return nil }
        return try parseInt(name, text)
    }

    public func bool(_ name: String) throws(DatabaseError) -> Bool {
        try required(name, accepting: [TypeOID.bool]) == "t"
    }

    public func optionalBool(_ name: String) throws(DatabaseError) -> Bool? {
        try raw(name, accepting: [TypeOID.bool]).map { $0 == "t" }
    }

    public func double(_ name: String) throws(DatabaseError) -> Double {
        let text = try required(name, accepting: Self.doubleTypes)
        guard let value = Double(text) else { throw DatabaseError(.typeMismatch, name: name) }
        return value
    }

    public func uuid(_ name: String) throws(DatabaseError) -> UUID {
        let text = try required(name, accepting: [TypeOID.uuid])
        guard let value = UUID(uuidString: text) else { throw DatabaseError(.typeMismatch, name: name) }
        return value
    }

    public func optionalUUID(_ name: String) throws(DatabaseError) -> UUID? {
        guard let text = try raw(name, accepting: [TypeOID.uuid]) else { return nil }
        guard let value = UUID(uuidString: text) else { throw DatabaseError(.typeMismatch, name: name) }
        return value
    }

    public func date(_ name: String) throws(DatabaseError) -> Date {
        try parseTimestamp(name, required(name, accepting: Self.timeTypes))
    }

    public func optionalDate(_ name: String) throws(DatabaseError) -> Date? {
        guard let text = try raw(name, accepting: Self.timeTypes) else { return nil }
        return try parseTimestamp(name, text)
    }

    public func bytes(_ name: String) throws(DatabaseError) -> [UInt8] {
        guard let bytes = try optionalBytes(name) else { throw DatabaseError(.unexpectedNull, name: name) }
        return bytes
    }

    public func optionalBytes(_ name: String) throws(DatabaseError) -> [UInt8]? {
        let column = try result.column(name)
        guard column.type == TypeOID.bytea else { throw DatabaseError(.typeMismatch, name: name) }
        if result.isNull(row: index, column: column.index) { return nil }
        guard let bytes = result.bytea(row: index, column: column.index) else {
            throw DatabaseError(.typeMismatch, name: name)
        }
        return bytes
    }

    /// A json/jsonb column as its JSON text.
    public func jsonText(_ name: String) throws(DatabaseError) -> String {
        try required(name, accepting: Self.jsonTypes)
    }

    /// A json/jsonb column parsed with `JSONSerialization` (fragments allowed).
    public func json(_ name: String) throws(DatabaseError) -> Any {
        let text = try jsonText(name)
        guard let value = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        else { throw DatabaseError(.typeMismatch, name: name) }
        return value
    }

    public func optionalJSON(_ name: String) throws(DatabaseError) -> Any? {
        guard let text = try raw(name, accepting: Self.jsonTypes) else { return nil }
        guard let value = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        else { throw DatabaseError(.typeMismatch, name: name) }
        return value
    }

    private func parseInt(_ name: String, _ text: String) throws(DatabaseError) -> Int64 {
        guard let value = Int64(text) else { throw DatabaseError(.typeMismatch, name: name) }
        return value
    }

    /// `2026-11-22 18:23:09.123456+00` (the connection runs with TimeZone=UTC, DateStyle=ISO).
    private func parseTimestamp(_ name: String, _ text: String) throws(DatabaseError) -> Date {
        var body = Substring(text)
        if body.hasSuffix("+00") { body = body.dropLast(3) }
        let halves = body.split(separator: " ")
        guard halves.count == 2 else { throw DatabaseError(.typeMismatch, name: name) }
        let day = halves[0].split(separator: "-").compactMap { Int($0) }
        let timeParts = halves[1].split(separator: ":")
        guard day.count == 3, timeParts.count == 3, let hour = Int(timeParts[0]), let minute = Int(timeParts[1]),
            let seconds = Double(timeParts[2])
        else { throw DatabaseError(.typeMismatch, name: name) }
        var parts = tm()
        parts.tm_year = Int32(day[0] - 1900)
        parts.tm_mon = Int32(day[1] - 1)
        parts.tm_mday = Int32(day[2])
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = 0
        let whole = timegm(&parts)
        return Date(timeIntervalSince1970: Double(whole) + seconds)
    }
}
