/// A route's request handler. Handlers are `Sendable` values built once per process and called
/// for each request on the worker's thread; they are testable without sockets.
public protocol Handler: Sendable {
    /// The route name used in logs (`status`, `connect`, ...).
    var route: String { get }
    func handle(_ request: Request, _ context: RequestContext) throws -> Response
}

/// Per-request facts a handler may need besides the request itself.
public struct RequestContext: Sendable {
    public let requestID: String
    public let log: Logger

    public init(requestID: String, log: Logger) {
        self.requestID = requestID
        self.log = log
    }
}

/// Turns any thrown error into an answer; the detail goes to the log, never to the caller.
public func respond(to request: Request, with handler: some Handler, log: Logger) -> (Response, HTTPError?) {
    let context = RequestContext(requestID: request.requestID, log: log)
    do {
        return (try handler.handle(request, context), nil)
    } catch let error as HTTPError {
        return (Response.error(error, requestID: request.requestID), error)
    } catch let error as HTTPErrorConvertible {
        let mapped = error.httpError
        return (Response.error(mapped, requestID: request.requestID), mapped)
    } catch {
        let mapped = HTTPError.internalError(logDetail: String(describing: type(of: error)))
        return (Response.error(mapped, requestID: request.requestID), mapped)
    }
}
