import Basics
import CCurl
import Foundation

public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Whole-transfer timeout in seconds.
    public var timeout: Double
    /// Connection-phase timeout in seconds.
    public var connectTimeout: Double
    /// When set, the connection goes to this Unix-domain socket; the URL still supplies
    /// the Host header and path.
    public var unixSocketPath: String?

    public init(
        method: String = "GET", url: String, headers: [(String, String)] = [], body: [UInt8] = [],
        timeout: Double = 30, connectTimeout: Double = 5, unixSocketPath: String? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.unixSocketPath = unixSocketPath
    }

    /// Rejects CR, LF and NUL in anything that lands in the request head: libcurl sends
    /// header lines verbatim, so these would allow header injection or silent truncation.
    func validate() throws(HTTPClientError) {
        func clean(_ s: String) -> Bool { !s.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 } }
        let headerNamesValid = headers.allSatisfy { name, value in
            !name.isEmpty && clean(name) && clean(value) && !name.contains(":") && !name.contains(";")
                && !name.contains(" ")
        }
        guard clean(url), clean(method), !method.isEmpty, !method.contains(" "), headerNamesValid,
            unixSocketPath.map(clean) ?? true
        else {
            throw HTTPClientError(code: .invalidRequest, curlCode: Int32(CURLE_BAD_FUNCTION_ARGUMENT.rawValue))
        }
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    /// Headers of the final response only, names as received, in order.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// First header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { ASCIICase.equal($0.0, name) }?.1
    }

    public func json() throws -> Any {
        try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
    }
}

public struct HTTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case couldNotConnect, timedOut, tooManyRedirects, responseTooLarge, invalidURL, invalidRequest, transport
        /// The local file of a streamed transfer could not be read or written (or shrank meanwhile).
        case localFile
    }

    public var code: Kind
    /// The underlying `CURLcode` (0 when the failure did not come from libcurl).
    public var curlCode: Int32

    public init(code: Kind, curlCode: Int32) {
        self.code = code
        self.curlCode = curlCode
    }

    init(curl: CURLcode) {
        let kind: Kind =
            switch curl {
            case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: .couldNotConnect
            case CURLE_OPERATION_TIMEDOUT: .timedOut
            case CURLE_TOO_MANY_REDIRECTS: .tooManyRedirects
            case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL: .invalidURL
            default: .transport
            }
        self.init(code: kind, curlCode: Int32(curl.rawValue))
    }

    /// Failures where the same request may succeed if tried again.
    public var isRetryable: Bool {
        code == .couldNotConnect || code == .timedOut || code == .transport
    }

    /// Kind and curl code only: URLs, headers and bodies may carry credentials.
    public var description: String { "HTTPClientError.\(code.rawValue) (curl \(curlCode))" }
}
