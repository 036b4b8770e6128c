import Basics
import Foundation
import Testing

@testable import FastCGI

@Suite struct RequestParamsTests {
    @Test func methodIsUpperCasedAndDefaultsToGET() {
        #expect(Request(params: ["REQUEST_METHOD": "post"], body: []).method == "POST")
        #expect(Request(params: ["REQUEST_METHOD": "Delete"], body: []).method == "DELETE")
        #expect(Request(params: [:], body: []).method == "GET")
    }

    @Test func pathComesFromDocumentURIWithoutQuery() {
        let request = Request(
            params: ["DOCUMENT_URI": "/api/status?x=1", "REQUEST_URI": "/other/path?y=2"], body: [])
        #expect(request.path == "/api/status")
    }

    @Test func pathFallsBackToRequestURIWithQueryStripped() {
        let request = Request(params: ["REQUEST_URI": "/api/connect?token=abc&x=1"], body: [])
        #expect(request.path == "/api/connect")
        #expect(Request(params: ["REQUEST_URI": "/plain"], body: []).path == "/plain")
        #expect(Request(params: [:], body: []).path == "/")
    }

    @Test func queryStringIsDecodedAndFirstOccurrenceWins() {
        let request = Request(params: ["QUERY_STRING": "a=1&b=x%20y&b=2&c=&+d=e+f"], body: [])
        #expect(request.query == ["a": "1", "b": "x y", "c": "", " d": "e f"])
    }

    @Test func invalidPercentEncodingIsIgnored() {
        let query = QueryString.dictionary("bad=%zz&%zz=1&ok=%41&=novalue&&flag")
        #expect(query["bad"] == "")
        #expect(query["%zz"] == nil)
        #expect(query["ok"] == "A")
        #expect(query["flag"] == "")
        #expect(query.count == 3)
    }

    @Test func headersComeFromHTTPParamsAndContentParams() {
        let request = Request(
            params: [
                "HTTP_X_REQUEST_ID": "abc", "HTTP_ACCEPT_LANGUAGE": "en-AU", "HTTP_AUTHORIZATION": "Bearer t",
                "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "12", "REQUEST_METHOD": "POST",
                "REMOTE_ADDR": "10.0.0.1",
            ], body: [])
        #expect(
            request.headers == [
                "x-request-id": "abc", "accept-language": "en-AU", "authorization": "Bearer t",
                "content-type": "application/json", "content-length": "12",
            ])
        #expect(request.header("Accept-Language") == "en-AU")
        #expect(request.header("CONTENT-TYPE") == "application/json")
        #expect(request.remoteAddress == "10.0.0.1")
    }

    @Test func emptyContentParamsAreNotHeaders() {
        let request = Request(params: ["CONTENT_TYPE": "", "CONTENT_LENGTH": ""], body: [])
        #expect(request.headers.isEmpty)
    }

    @Test(arguments: ["abc-123_.X", "a", String(repeating: "z", count: 128)])
    func safeRequestIDIsHonoured(id: String) {
        let request = Request(params: ["HTTP_X_REQUEST_ID": id], body: [], newRequestID: { "generated" })
        #expect(request.requestID == id)
    }

    @Test(arguments: [
        "has space", "line\r\nInjected: yes", "new\nline", String(repeating: "z", count: 129), "", "caf\u{E9}",
        "a;b", "{\"json\":1}",
    ])
    func unsafeRequestIDIsReplaced(id: String) {
        let request = Request(params: ["HTTP_X_REQUEST_ID": id], body: [], newRequestID: { "generated-id" })
        #expect(request.requestID == "generated-id")
    }

    @Test func missingRequestIDIsGenerated() {
        let request = Request(params: [:], body: [], newRequestID: { "fresh-1" })
        #expect(request.requestID == "fresh-1")
    }

    @Test func generatedIDsAreLoggableAndDistinct() {
        let first = Request.generateID()
        let second = Request.generateID()
        #expect(first.count == 32)
        #expect(first.allSatisfy { $0.isHexDigit })
        #expect(Request.isLoggableID(first))
        #expect(first != second)
    }
}

struct JSONBodyCase: Sendable, CustomTestStringConvertible {
    let contentType: String?
    let body: String
    let status: Int
    let code: String

    var testDescription: String { "\(contentType ?? "no type") \(body.prefix(20)) → \(status) \(code)" }
}

@Suite struct RequestJSONTests {
    static func request(contentType: String?, body: String) -> Request {
        var params = ["REQUEST_METHOD": "POST"]
        if let contentType { params["CONTENT_TYPE"] = contentType }
        return Request(params: params, body: Array(body.utf8))
    }

    @Test(arguments: [
        JSONBodyCase(contentType: "text/plain", body: "{}", status: 415, code: "unsupported_media_type"),
        JSONBodyCase(contentType: nil, body: "{}", status: 415, code: "unsupported_media_type"),
        JSONBodyCase(contentType: "application/json", body: "", status: 400, code: "invalid_json"),
        JSONBodyCase(contentType: "application/json", body: "{\"a\":", status: 400, code: "invalid_json"),
        JSONBodyCase(contentType: "application/json", body: "[1,2]", status: 400, code: "invalid_json"),
        JSONBodyCase(contentType: "application/json", body: "\"text\"", status: 400, code: "invalid_json"),
    ])
    func rejectedBodies(_ testCase: JSONBodyCase) throws {
        let request = Self.request(contentType: testCase.contentType, body: testCase.body)
        let error = try #require(throws: HTTPError.self) { try request.jsonObject() }
        #expect(error.status.code == testCase.status)
        #expect(error.code == testCase.code)
        #expect(!error.message.isEmpty)
    }

    @Test(arguments: ["application/json", "application/json; charset=utf-8", "Application/JSON"])
    func validObjectIsDecoded(contentType: String) throws {
        let request = Self.request(contentType: contentType, body: #"{"name":"Ada","count":3,"nested":{"ok":true}}"#)
        let object = try request.jsonObject()
        #expect(object["name"] as? String == "Ada")
        #expect(object["count"] as? Int == 3)
        #expect((object["nested"] as? [String: Any])?["ok"] as? Bool == true)
        #expect(object.count == 3)
    }
}

@Suite struct RepeatedQueryTests {
    @Test func repeatedParametersAreAllKeptInOrder() {
        let request = Request(
            params: [
                "REQUEST_METHOD": "GET", "QUERY_STRING": "Search=name%3Abob&limit=5&search=email%3A*%40firm.test&x",
            ],
            body: [])
        #expect(request.queryValues("Search") == ["name:bob", "email:*@firm.test"])
        #expect(request.query["Search"] == "name:bob")
        #expect(request.queryValues("x") == [""])
        #expect(request.queryValues("missing").isEmpty)
    }

    @Test func aRequestBuiltFromADictionaryHasAMatchingQueryString() {
        let request = Request(method: "GET", path: "/", query: ["b": "2 & 3", "a": "1"], requestID: "r")
        #expect(request.queryString == "a=1&b=2%20%26%203")
        #expect(request.queryValues("B") == ["2 & 3"])
    }
}
