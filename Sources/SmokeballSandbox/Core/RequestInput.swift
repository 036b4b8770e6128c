import Basics
import FastCGI
import Foundation

/// What the sandbox reads from a request: its origin, a JSON or form body, query parameters.
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

    /// The body as `application/x-www-form-urlencoded` fields; nil for any other content type.
    var formFields: [String: String]? {
        guard let type = header("content-type")?.lowercased(),
            type.hasPrefix("application/x-www-form-urlencoded")
        else { return nil }
        return QueryString.dictionary(String(decoding: body, as: UTF8.self))
    }

    /// A query parameter by name, ignoring case (`Offset` and `offset` are the same to ASP.NET).
    func queryValue(_ name: String) -> String? {
        if let exact = query[name] { return exact }
        return query.first { $0.key.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}
