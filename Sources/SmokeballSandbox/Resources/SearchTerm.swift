import Foundation

/// One `Search` term, `field<op>value`: fields email, phone, name; ops `:` `:!` `:>` `:>=` `:<`
/// `:<=`; `*` is a wildcard for `:` and `:!`; comparisons ignore case.
struct SearchTerm {
    let column: String
    let op: String
    let value: String
    let wildcard: Bool

    static let columns = ["email": "email", "phone": "phone", "name": "name"]

    init(_ text: String) throws {
        guard let colon = text.firstIndex(of: ":") else {
            throw Contacts.badRequest("Search term '\(text)' must look like field:value (fields: email, phone, name)")
        }
        let field = text[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        guard let column = Self.columns[field] else {
            throw Contacts.badRequest("Search field '\(field)' is not one of email, phone, name")
        }
        var rest = text[text.index(after: colon)...]
        var op = ":"
        for candidate in ["!", ">=", "<=", ">", "<"] where rest.hasPrefix(candidate) {
            op += candidate
            rest = rest.dropFirst(candidate.count)
            break
        }
        var value = String(rest)
        // Stored phone numbers are digits only, so formatting in the term does not matter.
        if column == "phone" { value = value.filter { $0.isASCII && ($0.isNumber || $0 == "*") } }
        guard !value.isEmpty else { throw Contacts.badRequest("Search term '\(text)' has no value") }
        wildcard = value.contains("*")
        guard !wildcard || op == ":" || op == ":!" else {
            throw Contacts.badRequest("Search term '\(text)': * is only allowed with : and :!")
        }
        self.column = column
        self.op = op
        // LIKE's own wildcards and escape are literal in a Smokeball term.
        self.value =
            wildcard
            ? value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
                .replacingOccurrences(of: "_", with: "\\_").replacingOccurrences(of: "*", with: "%")
            : value
    }

    /// The SQL condition, from fixed fragments, comparing the column with `parameter` (`$n`).
    func condition(_ parameter: String) -> String {
        let left = "lower(coalesce(\(column), ''))"
        let right = "lower(\(parameter)::text)"
        switch (op, wildcard) {
        case (":", true): return "\(left) LIKE \(right)"
        case (":!", true): return "\(left) NOT LIKE \(right)"
        case (":", false): return "\(left) = \(right)"
        case (":!", false): return "\(left) <> \(right)"
        case (":>", _): return "\(left) > \(right)"
        case (":>=", _): return "\(left) >= \(right)"
        case (":<", _): return "\(left) < \(right)"
        default: return "\(left) <= \(right)"
        }
    }
}
