import Foundation
import HTTPClient
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// nginx rendered from the project's template with no route running: what nginx answers by itself
/// (errors as JSON, with the request id) and what it writes to its error log.
@Suite(.serialized) struct NginxTemplateTests {
    static let callbackPath = "/api/v1/integrations/smokeball/callback"

    /// nginx alone on two free ports (the main server and the sandbox's); every upstream socket is
    /// missing, so each FastCGI location answers 502 and logs why.
    final class BareNginx {
        let directory: URL
        let port: Int
        let sandboxPort: Int
        var prefix: String { directory.appendingPathComponent("nginx").path }
        var errorLog: String { prefix + "/logs/error.log" }
        var config: String { (try? String(contentsOfFile: prefix + "/nginx.conf", encoding: .utf8)) ?? "" }

        init() throws {
            directory = URL(fileURLWithPath: NSTemporaryDirectory())
                .appendingPathComponent("casehug-nginx-" + ServiceDatabase.randomSuffix())
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            if geteuid() == 0 { chmod(directory.path, 0o755) }
            port = try Processes.freePort()
            sandboxPort = try Processes.freePort()
            try Processes.runTool(
                TestEnvironment.renderNginx,
                [
                    "--prefix", prefix, "--listen", "127.0.0.1:\(port)", "--sockets",
                    directory.appendingPathComponent("sockets").path, "--routes", "status callback",
                    "--sandbox-listen", "127.0.0.1:\(sandboxPort)",
                ])
            try Processes.runTool(
                TestEnvironment.nginx, ["-p", prefix, "-c", prefix + "/nginx.conf", "-e", errorLog])
            try Processes.waitFor("nginx on port \(port)") {
                (try? self.send("GET", "/healthz").status) == 200
            }
        }

        deinit {
            _ = try? Processes.runTool(
                TestEnvironment.nginx, ["-p", prefix, "-c", prefix + "/nginx.conf", "-s", "stop", "-e", errorLog])
            try? FileManager.default.removeItem(at: directory)
        }

        func send(_ method: String, _ path: String, headers: [(String, String)] = [], sandbox: Bool = false) throws
            -> HTTPResponse
        {
            let base = "http://127.0.0.1:\(sandbox ? sandboxPort : port)"
            return try HTTPClient().send(
                HTTPRequest(method: method, url: base + path, headers: headers, body: [], timeout: 15))
        }
    }

    static func expectJSONError(_ response: HTTPResponse, status: Int, code: String, requestID: String) {
        #expect(response.status == status)
        #expect(response.header("Content-Type") == "application/json")
        #expect(response.header("X-Request-Id") == requestID)
        let error = response.jsonObject["error"] as? [String: Any]
        #expect(error?["code"] as? String == code, "body: \(String(decoding: response.body, as: UTF8.self))")
        #expect(error?["message"] is String)
    }

    @Test func errorsNginxAnswersItselfAreJSONWithTheRequestID() throws {
        let nginx = try BareNginx()
        let id = [("X-Request-Id", "nginx-own-1")]
        Self.expectJSONError(
            try nginx.send("TRACE", "/", headers: id), status: 405, code: "method_not_allowed",
            requestID: "nginx-own-1")
        let longURI = "/" + String(repeating: "a", count: 20_000)
        let uriTooLong = try nginx.send("GET", longURI, headers: id)
        #expect(uriTooLong.status == 414)
        #expect(uriTooLong.header("Content-Type") == "application/json")
        #expect(uriTooLong.errorCode == "uri_too_long")
        // The request line was never parsed, so the caller's id is unknown: nginx's own is used.
        #expect(uriTooLong.header("X-Request-Id")?.isEmpty == false)
        let bigHeader = try nginx.send(
            "GET", "/healthz", headers: id + [("X-Big", String(repeating: "b", count: 20_000))])
        #expect(bigHeader.status == 400)
        #expect(bigHeader.header("Content-Type") == "application/json")
        #expect(bigHeader.errorCode == "request_header_too_large")
        #expect(bigHeader.header("X-Request-Id")?.isEmpty == false)
        Self.expectJSONError(
            try nginx.send("GET", "/nope", headers: id), status: 404, code: "not_found",
            requestID: "nginx-own-1")
        Self.expectJSONError(
            try nginx.send("GET", Self.callbackPath, headers: id), status: 502, code: "bad_gateway",
            requestID: "nginx-own-1")
        // The internal error locations cannot be requested directly.
        #expect(try nginx.send("GET", "/_nginx_errors/400").status == 404)
        // The sandbox's server answers its own errors as ProblemDetails.
        let sandboxTrace = try nginx.send("TRACE", "/", sandbox: true)
        #expect(sandboxTrace.status == 405)
        #expect(sandboxTrace.header("Content-Type") == "application/problem+json")
        #expect(sandboxTrace.jsonObject["status"] as? Int == 405)
        let sandboxLong = try nginx.send("GET", longURI, sandbox: true)
        #expect(sandboxLong.status == 414)
        #expect(sandboxLong.jsonObject["status"] as? Int == 414)
    }

    @Test func everyStatusNginxMayProduceIsMappedToAJSONAnswer() throws {
        let nginx = try BareNginx()
        let config = nginx.config
        // 403 and 503 have no trigger in this configuration (no deny or limit rules on the main
        // server), so their mapping is checked in the rendered file.
        for code in [400, 403, 404, 405, 413, 414, 494, 500, 502, 503, 504] {
            #expect(config.contains("error_page \(code) "), "no error_page for \(code)")
        }
        for code in ["forbidden", "service_unavailable", "method_not_allowed", "not_found"] {
            #expect(config.contains(#"{"error":{"code":"\#(code)","#))
        }
        // X-Accel-* from a route are never acted on; caching headers are not ignored (that
        // would let no-store answers be cached if fastcgi_cache were ever enabled).
        let line = try #require(config.split(separator: "\n").first { $0.contains("fastcgi_ignore_headers") })
        let ignore = Set(line.split(whereSeparator: { $0 == " " || $0 == ";" }).map(String.init))
        for header in [
            "X-Accel-Redirect", "X-Accel-Expires", "X-Accel-Limit-Rate", "X-Accel-Buffering", "X-Accel-Charset",
        ] {
            #expect(ignore.contains(header))
        }
        for header in ["Cache-Control", "Expires", "Set-Cookie", "Vary"] { #expect(!ignore.contains(header)) }
    }

    @Test func secretsInQueryStringsNeverReachTheErrorLog() throws {
        let nginx = try BareNginx()
        let callback = try nginx.send("GET", Self.callbackPath + "?code=CALLBACK-SECRET-CODE&state=STATE-SECRET")
        #expect(callback.status == 502)
        let upload = try nginx.send("PUT", "/_uploads/f1?signature=UPLOAD-SECRET-SIG", sandbox: true)
        #expect(upload.status == 502)
        let download = try nginx.send("GET", "/_downloads/f1?signature=DOWNLOAD-SECRET-SIG", sandbox: true)
        #expect(download.status == 502)
        // A location without secrets still logs the failure (so the log is being written).
        _ = try nginx.send("GET", "/api/v1/integrations/smokeball/status?probe=VISIBLE")
        var log = ""
        try Processes.waitFor("the status failure in the error log") {
            log = (try? String(contentsOfFile: nginx.errorLog, encoding: .utf8)) ?? ""
            return log.contains("probe=VISIBLE")
        }
        for secret in ["CALLBACK-SECRET-CODE", "STATE-SECRET", "UPLOAD-SECRET-SIG", "DOWNLOAD-SECRET-SIG"] {
            #expect(!log.contains(secret), "\(secret) is in the error log")
        }
    }

    @Test func routeAnswersThroughNginxAreNoStoreAndNosniff() throws {
        try StatusEndToEndTests.withStack { stack in
            let path = StatusEndToEndTests.path
            let answers = [
                try stack.service.send("GET", path, token: stack.userToken),
                try stack.service.send("GET", path),
            ]
            #expect(answers.map(\.status) == [200, 401])
            for answer in answers {
                #expect(answer.header("Cache-Control") == "no-store")
                #expect(answer.header("X-Content-Type-Options") == "nosniff")
            }
        }
    }

    /// The settings page is static: this origin's files only (no inline script: every script is a
    /// file of its own, and no element carries an event attribute), revalidated on every use.
    /// Without scripts/run's DEMO_MODE there are no demo users.
    @Test func theSettingsPageIsStaticUnderAStrictPolicyAndHasNoDemoUsersOutsideDemoMode() throws {
        let nginx = try BareNginx()
        let page = try nginx.send("GET", "/integrations/smokeball/")
        #expect(page.status == 200)
        #expect(page.header("Content-Type") == "text/html; charset=utf-8")
        #expect(
            page.header("Content-Security-Policy")
                == "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                + "form-action 'self'; frame-ancestors 'self'; base-uri 'none'")
        #expect(page.header("Referrer-Policy") == "no-referrer")
        let html = String(decoding: page.body, as: UTF8.self)
        #expect(html.components(separatedBy: "<script").count == 2)
        #expect(html.contains(#"<script src="app.js" defer></script>"#))
        #expect(html.range(of: #"\son[a-z]+\s*="#, options: .regularExpression) == nil)
        #expect(!html.contains("style="))
        for (file, type) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
            let answer = try nginx.send("GET", "/integrations/smokeball/" + file)
            #expect(answer.status == 200)
            #expect(answer.header("Content-Type") == type + "; charset=utf-8")
            #expect(answer.header("X-Content-Type-Options") == "nosniff")
            // No version in the names: the browser revalidates each time, and a 304 costs no body.
            #expect(answer.header("Cache-Control") == "no-cache")
            let etag = try #require(answer.header("ETag"))
            let again = try nginx.send("GET", "/integrations/smokeball/" + file, headers: [("If-None-Match", etag)])
            #expect(again.status == 304)
        }
        // The return URL without its slash still lands on the page, query and all.
        let bare = try nginx.send("GET", "/integrations/smokeball?smokeball=connected")
        #expect(bare.status == 301)
        #expect(bare.header("Location")?.hasSuffix("/integrations/smokeball/?smokeball=connected") == true)
        let requestID = "no-demo-\(ServiceDatabase.randomSuffix())"
        let demo = try nginx.send(
            "GET", "/integrations/smokeball/demo-users.json", headers: [("X-Request-Id", requestID)])
        Self.expectJSONError(demo, status: 404, code: "not_found", requestID: requestID)
        #expect(!nginx.config.contains("demo-users"))
    }
}
