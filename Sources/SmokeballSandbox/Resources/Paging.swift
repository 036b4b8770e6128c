import Basics
import FastCGI
import Foundation

/// `offset`/`limit` (limit 1–500, default 500) and the envelope's first/previous/next/last links.
struct Paging {
    let offset: Int
    let limit: Int

    static let maximum = 500

    init(_ request: Request) throws {
        offset = try Self.integer(request.queryValue("Offset"), name: "Offset", default: 0, range: 0...Int(Int32.max))
        limit = try Self.integer(
            request.queryValue("Limit"), name: "Limit", default: Self.maximum, range: 1...Self.maximum)
    }

    static func integer(_ text: String?, name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text, !text.isEmpty else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw SandboxFailure.problem(
                .badRequest, "Bad Request", "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)"
            )
        }
        return number
    }

    struct Base {
        let origin: String
        let path: String
        /// The request's other query parameters, kept on every link.
        let query: [(String, String)]
    }

    func base(_ request: Request, path: String) -> Base {
        // From the raw query string, so repeated parameters (`Search=a&Search=b`) all survive.
        let kept = QueryString.items(request.queryString).filter {
            !["offset", "limit"].contains($0.0.lowercased())
        }
        return Base(origin: request.sandboxOrigin, path: path, query: kept)
    }

    func link(_ base: Base, offset: Int) -> [String: Any] {
        let query = (base.query + [("offset", String(offset)), ("limit", String(limit))])
            .map { "\(PercentEncoding.encode($0.0))=\(PercentEncoding.encode($0.1))" }.joined(separator: "&")
        return ["href": base.origin + base.path + "?" + query, "method": "GET"]
    }

    func envelope(items: [[String: Any]], size: Int, base: Base) -> [String: Any] {
        let lastOffset = size == 0 ? 0 : ((size - 1) / limit) * limit
        var envelope: [String: Any] = [
            "href": link(base, offset: offset)["href"] ?? "", "offset": offset, "limit": limit, "size": size,
            "value": items, "first": link(base, offset: 0), "last": link(base, offset: lastOffset),
            "self": link(base, offset: offset),
        ]
        envelope["next"] = offset + limit < size ? link(base, offset: offset + limit) : NSNull()
        envelope["previous"] = offset > 0 ? link(base, offset: max(0, offset - limit)) : NSNull()
        return envelope
    }
}
