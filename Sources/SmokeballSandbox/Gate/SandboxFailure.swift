import FastCGI
import Foundation

/// A refusal in the form Smokeball gives it: ProblemDetails for the API, OAuth's JSON error for
/// the token endpoint, an HTML page where a browser is talking to the authorize endpoint.
enum SandboxFailure: Error {
    case problem(HTTPStatus, String, String, headers: [(String, String)] = [])
    case oauth(HTTPStatus, String, String, headers: [(String, String)] = [])
    case page(HTTPStatus, String)
    /// Smokeball's API gateway over the rate limit: `{"message":"Too Many Requests"}`, no
    /// ProblemDetails and no rate headers. `retryAfterSeconds` only for partners with the
    /// `retry_after_header` knob (Smokeball sends none; the knob tests a client's use of it).
    case tooManyRequests(retryAfterSeconds: Int?)
    /// S3's refusal of a pre-signed URL request (XML, as S3 answers).
    case s3(HTTPStatus, code: String, message: String)

    /// What S3 says when the headers differ from what the URL was signed with.
    static let signatureDoesNotMatch = SandboxFailure.s3(
        .forbidden, code: "SignatureDoesNotMatch",
        message: "The request signature we calculated does not match the signature you provided. "
            + "Check your key and signing method.")

    /// A 429's `Retry-After`, present only when asked for.
    static func retryAfter(_ seconds: Int?) -> [(String, String)] {
        seconds.map { [("Retry-After", String($0))] } ?? []
    }

    func response(requestID: String?) -> Response {
        var echoed: [(String, String)] = []
        if let requestID, !requestID.isEmpty { echoed.append(("RequestId", requestID)) }
        switch self {
        case .problem(let status, let title, let detail, let headers):
            var response = Response.json(
                [
                    "type": "https://httpstatuses.io/\(status.code)", "title": title, "status": status.code,
                    "detail": detail,
                ], status: status, headers: headers + echoed)
            response.headers = response.headers.map {
                $0.0 == "Content-Type" ? ("Content-Type", "application/problem+json") : $0
            }
            return response
        case .oauth(let status, let error, let description, let headers):
            return Response.json(
                ["error": error, "error_description": description], status: status,
                headers: headers + [("Cache-Control", "no-store"), ("Pragma", "no-cache")])
        case .page(let status, let message):
            return HTMLPage.error(status: status, message: message)
        case .tooManyRequests(let seconds):
            return Response.json(
                ["message": "Too Many Requests"], status: .tooManyRequests,
                headers: Self.retryAfter(seconds) + echoed)
        case .s3(let status, let code, let message):
            // The request id S3 would send; no secret (the URL's signature) is repeated.
            let xml =
                #"<?xml version="1.0" encoding="UTF-8"?>"#
                + "<Error><Code>\(HTMLPage.escape(code))</Code><Message>\(HTMLPage.escape(message))</Message>"
                + "<RequestId>\(UUID().uuidString.filter { $0 != "-" }.prefix(16))</RequestId></Error>"
            return Response(status: status, headers: [("Content-Type", "application/xml")], body: Array(xml.utf8))
        }
    }
}

/// Minimal HTML for the authorize endpoint. Every interpolated value is escaped.
enum HTMLPage {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// `formTargets`: origins the page's form may reach besides its own. Chrome applies
    /// form-action to the redirect that follows a form's POST too, so the sign-in page names the
    /// origin of the (validated) redirect URI; every other page allows 'self' only.
    static func response(status: HTTPStatus = .ok, title: String, body: String, formTargets: [String] = []) -> Response
    {
        let html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title></head>
            <body><main>\(body)</main></body></html>
            """
        return Response(
            status: status,
            headers: [
                ("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
                ("X-Frame-Options", "DENY"),
                (
                    "Content-Security-Policy",
                    "default-src 'none'; form-action " + (["'self'"] + formTargets).joined(separator: " ")
                ),
            ], body: Array(html.utf8))
    }

    static func error(status: HTTPStatus, message: String) -> Response {
        response(
            status: status, title: "Smokeball sign-in error",
            body: "<h1>Sign-in error</h1><p id=\"error\">\(escape(message))</p>")
    }
}
