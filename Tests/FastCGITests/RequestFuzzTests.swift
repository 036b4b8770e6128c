import Foundation
import TestSupport
import Testing

@testable import FastCGI

/// Seeded fuzz of the path every request takes before and after its handler: FastCGI params and
/// body → `Request` → a handler that answers or throws → the CGI response bytes. Whatever
/// arrives, the request is well formed, and the answer is one `Status:` line, headers without
/// CR/LF smuggled in, a matching Content-Length and exactly one X-Request-Id.
/// `FASTCGI_FUZZ_SEED=N` replays or varies a run.
@Suite struct RequestFuzzTests {
    static let seed: UInt64 =
        SeededGenerator.seed(environment: "FASTCGI_FUZZ_SEED", default: 0xF0CA_C1A0_2026)

    typealias Generator = SeededGenerator

    static let pieces = [
        "a", "Z", "0", "/", "?", "&", "=", "%", "%2", "%zz", "%41", "%00", "%0D%0A", "+", " ", "\r", "\n", "\r\n",
        "\0", "\t", ":", ";", ",", "\"", "'", "\\", "..", "é", "日本", "🙂", "\u{202E}", "\u{FEFF}", "Search=",
        "Limit=-1", "Offset=99999999999999999999", "x-request-id", "Status: 200", "<script>",
    ]

    static func text(_ random: inout Generator, maxPieces: Int = 12) -> String {
        (0..<Int.random(in: 0...maxPieces, using: &random)).map { _ in pieces.randomElement(using: &random)! }
            .joined()
    }

    /// Echoes what it was given, sometimes with a hostile header or a failure.
    struct EchoHandler: Handler {
        let route = "fuzz"
        let outcome: Int
        let headerValue: String

        func handle(_ request: Request, _ context: RequestContext) throws -> Response {
            struct Opaque: Error {}
            switch outcome {
            case 0: throw HTTPError(.badRequest, code: "bad", headerValue, headers: [("X-Echo", headerValue)])
            case 1: throw Opaque()
            case 2: return Response(status: HTTPStatus(299, headerValue), headers: [(headerValue, headerValue)])
            default:
                _ = request.queryValues(headerValue)
                return Response.json(
                    ["method": request.method, "path": request.path, "query": request.query],
                    headers: [("X-Echo", headerValue), ("Content-Length", "0"), ("X-Request-Id", headerValue)])
            }
        }
    }

    @Test func anyParamsAndBodyGiveAWellFormedRequestAndAnswer() throws {
        var random = Generator(seed: Self.seed)
        for index in 0..<500 {
            let context = "case \(index), FASTCGI_FUZZ_SEED=\(Self.seed)"
            var params: [String: String] = [
                "REQUEST_METHOD": Self.text(&random, maxPieces: 3),
                "DOCUMENT_URI": "/" + Self.text(&random), "QUERY_STRING": Self.text(&random, maxPieces: 30),
                "REMOTE_ADDR": Self.text(&random, maxPieces: 2),
            ]
            for _ in 0..<Int.random(in: 0...6, using: &random) {
                params["HTTP_" + Self.text(&random, maxPieces: 2).uppercased()] = Self.text(&random)
            }
            if Bool.random(using: &random) { params["HTTP_X_REQUEST_ID"] = Self.text(&random, maxPieces: 4) }
            if Bool.random(using: &random) { params["CONTENT_TYPE"] = Self.text(&random, maxPieces: 3) }
            let body = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random)
            }

            let request = Request(params: params, body: body)
            #expect(request.method == request.method.uppercased(), "\(context)")
            #expect(!request.path.contains("?"), "\(context)")
            #expect(Request.isLoggableID(request.requestID), "\(context)")
            #expect(request.body == body, "\(context)")
            for (name, value) in request.query {
                #expect(request.queryValues(name).first == value, "\(context)")
            }

            let handler = EchoHandler(outcome: Int.random(in: 0...3, using: &random), headerValue: Self.text(&random))
            let (response, _) = respond(to: request, with: handler, log: Logger(route: "fuzz"))
            try Self.expectWellFormed(response.serialized(requestID: request.requestID), context: context)
        }
    }

    /// One `Status: NNN ...` line, `Name: value` lines free of CR and LF, a blank line, and a
    /// body as long as Content-Length says.
    static func expectWellFormed(_ bytes: [UInt8], context: String) throws {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        let end = try #require(
            (0...(bytes.count - separator.count)).first { Array(bytes[$0..<($0 + separator.count)]) == separator },
            "\(context)")
        let head = String(decoding: bytes[..<end], as: UTF8.self)
        let body = bytes[(end + separator.count)...]
        let lines = head.components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { !$0.contains("\r") && !$0.contains("\n") && !$0.contains("\0") }, "\(context)")
        let status = try #require(lines.first, "\(context)")
        #expect(status.range(of: #"^Status: [1-5][0-9][0-9]( |$)"#, options: .regularExpression) != nil, "\(context)")
        let fields = lines.dropFirst().map { line -> (String, String) in
            let parts = line.split(separator: ":", maxSplits: 1).map(String.init)
            return (
                parts.first?.lowercased() ?? "", parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            )
        }
        #expect(fields.allSatisfy { Response.isToken($0.0) }, "\(context)")
        #expect(fields.filter { $0.0 == "x-request-id" }.count == 1, "\(context)")
        let lengths = fields.filter { $0.0 == "content-length" }.map(\.1)
        #expect(lengths == [String(body.count)], "\(context)")
    }
}
