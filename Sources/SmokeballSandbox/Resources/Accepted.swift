import FastCGI
import Foundation

/// The `202 Accepted` answer of a write: a Link to the resource that will exist.
enum Accepted {
    static func link(_ request: Request, id: UUID, path: String) -> Response {
        let href = request.sandboxOrigin + path
        return Response.json(
            ["id": id.uuidString.lowercased(), "href": href, "relation": "self", "method": "GET"], status: .accepted,
            headers: [("Location", href)])
    }
}
