import FastCGI

/// The benchmark's ceiling: the same runtime answering a constant without touching a database.
struct HelloHandler: Handler {
    let route = "hello"

    func handle(_ request: Request, _ context: RequestContext) throws -> Response {
        Response.json(["hello": "world"])
    }
}
