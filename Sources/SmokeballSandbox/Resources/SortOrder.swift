import FastCGI
import Foundation

/// A list's `Sort`: comma-separated terms `field`, `field asc|desc`, `+field` or `-field` over
/// the fields the spec offers for that list (names ignore case). The id breaks ties, in the last
/// term's direction, so pages never overlap. The SQL is built from the fixed column names only.
enum SortOrder {
    /// `columns`: lower-cased field name → column; `fallback`: the column ordered by without a Sort.
    static func sql(_ sort: String?, columns: [String: String], id: String, fallback: String) throws -> String {
        guard let sort, !sort.trimmingCharacters(in: .whitespaces).isEmpty else { return "\(fallback), \(id)" }
        var terms: [String] = []
        var descending = false
        for term in sort.split(separator: ",", omittingEmptySubsequences: false) {
            var words = term.split(separator: " ").map { $0.lowercased() }
            descending = false
            if let name = words.first, name.hasPrefix("-") || name.hasPrefix("+"), words.count == 1 {
                descending = name.hasPrefix("-")
                words = [String(name.dropFirst())]
            } else if words.count == 2, ["asc", "desc"].contains(words[1]) {
                descending = words[1] == "desc"
                words.removeLast()
            }
            guard words.count == 1, let column = columns[words[0]] else {
                let names = columns.keys.sorted().joined(separator: ", ")
                throw SandboxFailure.problem(
                    .badRequest, "Bad Request",
                    "Sort takes fields from (\(names)), each optionally followed by asc or desc")
            }
            terms.append(descending ? column + " DESC" : column)
        }
        return (terms + [descending ? id + " DESC" : id]).joined(separator: ", ")
    }
}
