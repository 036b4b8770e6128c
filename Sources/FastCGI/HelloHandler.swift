/// The benchmark's ceiling: the same runtime answering a constant without touching a database.
public struct HelloHandler: Handler {
    public let route = "hello"

    public init() {}

    public func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        Response.json(["hello": "world"])
    }
}
