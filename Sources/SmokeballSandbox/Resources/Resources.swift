import FastCGI
import Foundation
import PostgreSQL

/// One family of API paths (`/contacts...`, `/matters...`). A resource answers nil for paths it
/// does not own, so the API server can ask each in turn.
protocol APIResource {
    func handle(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response?
}

extension APIServer.Caller {
    /// When a write made now becomes readable (Smokeball applies writes asynchronously).
    func visibleAt(_ now: Date) -> Date { now.addingTimeInterval(Double(writeDelayMilliseconds) / 1000) }
}

/// Changes in an account, recorded for webhook delivery.
enum Events {
    static func record(
        _ connection: Connection, account: UUID, type: String, caller: APIServer.Caller?, payload: [String: Any]
    ) throws {
        try connection.execute(
            """
            INSERT INTO sb_events (account_id, type, source, request_id, client_id, payload)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb)
            """,
            [
                account, type, caller == nil ? "Smokeball" : "API", caller?.requestID, caller?.clientID,
                SQLValue.json(String(decoding: try JSONWriter.encode(payload), as: UTF8.self)),
            ])
    }
}

/// .NET ticks (100 ns units since 0001-01-01 UTC), Smokeball's `UpdatedSince` and webhook time.
enum DotNetTicks {
    static let unixEpoch: Int64 = 621_355_968_000_000_000
    /// DateTime.MaxValue.
    static let maximum: Int64 = 3_155_378_975_999_999_999

    /// A query parameter in ticks (`UpdatedSince`): the spec's int64, within what .NET can turn
    /// into a DateTime (0 to DateTime.MaxValue), or a 400; nil when absent or empty.
    static func parameter(_ request: Request, _ name: String) throws -> Int64? {
        guard let text = request.queryValue(name), !text.isEmpty else { return nil }
        guard let ticks = Int64(text), (0...maximum).contains(ticks) else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "\(name) must be .NET ticks (an integer from 0 to \(maximum))")
        }
        return ticks
    }

    static func from(_ date: Date) -> Int64 {
        unixEpoch + Int64((date.timeIntervalSince1970 * 10_000_000).rounded(.down))
    }

    static func date(_ ticks: Int64) -> Date {
        Date(timeIntervalSince1970: Double(ticks - unixEpoch) / 10_000_000)
    }
}

/// The `202 Accepted` answer of a write: a Link to the resource that will exist.
enum Accepted {
    static func link(_ request: Request, id: UUID, path: String) -> Response {
        let href = request.sandboxOrigin + path
        return Response.json(
            ["id": id.uuidString.lowercased(), "href": href, "relation": "self", "method": "GET"], status: .accepted,
            headers: [("Location", href)])
    }
}

extension Request {
    /// The sandbox's own base URL as the caller reached it, for hrefs and upload URLs.
    var sandboxOrigin: String { "http://" + (header("host") ?? "localhost") }

    /// The JSON object body of a write, or a 400 ProblemDetails naming what is wrong.
    func sandboxJSON() throws -> [String: Any] {
        guard let object = try sandboxJSONValue() as? [String: Any] else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "The body must be a JSON object")
        }
        return object
    }

    /// Any JSON body (an array for bulk writes): 415 unless sent as JSON, 400 unless it parses.
    func sandboxJSONValue() throws -> Any {
        let type = header("content-type")?.lowercased() ?? ""
        // Smokeball's spec lists application/json-patch+json and application/*+json beside plain JSON.
        guard
            type.hasPrefix("application/json") || type.hasPrefix("application/json-patch+json")
                || (type.hasPrefix("application/") && type.contains("+json"))
        else {
            throw SandboxFailure.problem(.unsupportedMediaType, "Unsupported Media Type", "Send a JSON body")
        }
        guard let value = try? JSONSerialization.jsonObject(with: Data(body)) else {
            throw SandboxFailure.problem(.badRequest, "Bad Request", "The body is not valid JSON; send a JSON object")
        }
        return value
    }
}

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
