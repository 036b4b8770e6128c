import CCurl
import Foundation

/// A blocking HTTP/1.1 client owning one libcurl easy handle.
///
/// The handle is reused across requests (`curl_easy_reset` keeps the connection cache), so
/// sequential requests to the same host share a kept-alive connection. Deliberately not
/// `Sendable`: a CURL easy handle must never be used from two threads at once, so each
/// process or thread owns its own client.
public final class HTTPClient {
    /// Largest response body accepted; bigger bodies abort the transfer with `.responseTooLarge`.
    public var maxResponseBytes: Int

    private let handle: UnsafeMutableRawPointer

    /// `curl_global_init` is not thread-safe and must run exactly once before any handle
    /// exists; a `static let` initializer gives exactly-once, thread-safe lazy initialisation.
    private static let globalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

    public init(maxResponseBytes: Int = 32 << 20) throws(HTTPClientError) {
        guard Self.globalInit == CURLE_OK, let handle = curl_easy_init() else {
            throw HTTPClientError(code: .transport, curlCode: Int32(CURLE_FAILED_INIT.rawValue))
        }
        self.handle = handle
        self.maxResponseBytes = maxResponseBytes
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    /// Performs one request. Redirects are never followed: a 3xx is returned as-is.
    public func send(_ request: HTTPRequest) throws(HTTPClientError) -> HTTPResponse {
        try request.validate()
        // Forget the previous request's options but keep live connections for reuse.
        curl_easy_reset(handle)

        let headers = HeaderList()
        // An empty `Expect:` stops libcurl sending `Expect: 100-continue` for larger bodies,
        // which would stall up to a second against servers that never answer 100.
        try headers.append("Expect:")
        // No `Accept: */*` unless the caller names an Accept (a later line replaces this one):
        // it tells a server nothing, and a webhook sender that stands in for Smokeball must send
        // only the headers Smokeball's do.
        try headers.append("Accept:")
        for (name, value) in request.headers {
            // libcurl drops `Name:` lines with no value; `Name;` is its syntax for an empty header.
            try headers.append(value.isEmpty ? "\(name);" : "\(name): \(value)")
        }

        let buffer = TransferBuffer(limit: maxResponseBytes)
        let code: CURLcode = withExtendedLifetime((headers, buffer)) {
            let setup = configure(request, headers: headers, buffer: buffer)
            guard setup == CURLE_OK else { return setup }
            return curl_easy_perform(handle)
        }

        guard code == CURLE_OK else {
            if code == CURLE_WRITE_ERROR && buffer.exceeded {
                throw HTTPClientError(code: .responseTooLarge, curlCode: Int32(code.rawValue))
            }
            throw HTTPClientError(curl: code)
        }
        var status = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: buffer.headers, body: buffer.body)
    }

    /// Applies every option for one transfer; returns the first failing setopt code.
    private func configure(_ request: HTTPRequest, headers: HeaderList, buffer: TransferBuffer) -> CURLcode {
        let h = handle
        var results: [CURLcode] = []
        func string(_ option: CURLoption, _ value: String) {
            // libcurl copies string options (since 7.17), so a temporary C string suffices.
            results.append(value.withCString { ccurl_setopt_ptr(h, option, $0) })
        }
        func long(_ option: CURLoption, _ value: Int) {
            results.append(ccurl_setopt_long(h, option, value))
        }

        string(CURLOPT_URL, request.url)
        // No signals: SIGALRM-based DNS timeouts are unsafe with threads and after fork.
        long(CURLOPT_NOSIGNAL, 1)
        long(CURLOPT_FOLLOWLOCATION, 0)
        string(CURLOPT_PROTOCOLS_STR, "http,https")
        long(CURLOPT_TIMEOUT_MS, Self.milliseconds(request.timeout))
        long(CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(request.connectTimeout))
        if let path = request.unixSocketPath {
            string(CURLOPT_UNIX_SOCKET_PATH, path)
        }

        let method = request.method.uppercased()
        switch method {
        case "GET" where request.body.isEmpty:
            long(CURLOPT_HTTPGET, 1)
        case "HEAD":
            long(CURLOPT_NOBODY, 1)
        default:
            // POST/PUT/PATCH always carry a (possibly empty) body so Content-Length is sent;
            // other methods only when they have one.
            if method == "POST" || method == "PUT" || method == "PATCH" || !request.body.isEmpty {
                results.append(ccurl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)))
                // COPYPOSTFIELDS copies now, so the body need not outlive this call; a
                // one-byte buffer stands in for an empty body because NULL means "no body".
                let bytes = request.body.isEmpty ? [0] : request.body
                results.append(bytes.withUnsafeBytes { ccurl_setopt_ptr(h, CURLOPT_COPYPOSTFIELDS, $0.baseAddress) })
            }
            if method != "POST" {
                string(CURLOPT_CUSTOMREQUEST, request.method)
            }
        }

        results.append(ccurl_setopt_ptr(h, CURLOPT_HTTPHEADER, headers.head))

        let context = Unmanaged.passUnretained(buffer).toOpaque()
        results.append(ccurl_setopt_ptr(h, CURLOPT_WRITEDATA, context))
        results.append(ccurl_setopt_ptr(h, CURLOPT_HEADERDATA, context))
        results.append(
            ccurl_setopt_write(h) { data, size, count, context in
                guard let context else { return 0 }
                let buffer = Unmanaged<TransferBuffer>.fromOpaque(context).takeUnretainedValue()
                // Returning less than size*count makes libcurl abort with CURLE_WRITE_ERROR.
                return buffer.appendBody(UnsafeRawBufferPointer(start: data, count: size * count)) ? size * count : 0
            })
        results.append(
            ccurl_setopt_header(h) { data, size, count, context in
                guard let context else { return 0 }
                let buffer = Unmanaged<TransferBuffer>.fromOpaque(context).takeUnretainedValue()
                buffer.appendHeaderLine(UnsafeRawBufferPointer(start: data, count: size * count))
                return size * count
            })
        return results.first { $0 != CURLE_OK } ?? CURLE_OK
    }

    private static func milliseconds(_ seconds: Double) -> Int {
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return max(1, Int(min(seconds, 86_400 * 365) * 1000))
    }
}

/// Owns a `curl_slist`; freed once in deinit. Kept alive until the transfer finishes
/// because libcurl reads the list during `curl_easy_perform`, not at setopt time.
final class HeaderList {
    private(set) var head: UnsafeMutablePointer<curl_slist>?

    func append(_ line: String) throws(HTTPClientError) {
        guard let newHead = line.withCString({ curl_slist_append(head, $0) }) else {
            throw HTTPClientError(code: .transport, curlCode: Int32(CURLE_OUT_OF_MEMORY.rawValue))
        }
        head = newHead
    }

    deinit {
        curl_slist_free_all(head)
    }
}

/// Per-transfer sink for the write and header callbacks (reached through an unretained
/// pointer in WRITEDATA/HEADERDATA; the caller keeps it alive across the perform call).
final class TransferBuffer {
    let limit: Int
    var body: [UInt8] = []
    var headers: [(String, String)] = []
    var exceeded = false

    init(limit: Int) {
        self.limit = limit
    }

    func appendBody(_ chunk: UnsafeRawBufferPointer) -> Bool {
        guard body.count + chunk.count <= limit else {
            exceeded = true
            return false
        }
        body.append(contentsOf: chunk)
        return true
    }

    func appendHeaderLine(_ raw: UnsafeRawBufferPointer) {
        let line = String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            // A new status line (after 1xx interim responses or a 3xx when redirects are
            // followed) starts a new header block: keep only the final response's headers.
            headers.removeAll()
        } else if let colon = line.firstIndex(of: ":") {
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.append((name, value))
        }
    }
}
