import FastCGI

/// One family of API paths (`/contacts...`, `/matters...`). A resource answers nil for paths it
/// does not own, so the API server can ask each in turn.
protocol APIResource {
    func handle(_ request: Request, path: String, caller: APIServer.Caller) throws -> Response?
}
