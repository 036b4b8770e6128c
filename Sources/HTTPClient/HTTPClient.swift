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
        try perform(request, source: nil, sink: nil, stall: nil)
    }

    /// Sends `request` with the bytes of `file` as its body (PUT unless the request names another
    /// method), read as libcurl sends them: memory stays bounded by libcurl's upload buffer
    /// whatever the size. The body is the file from offset 0 to its size when the call starts;
    /// the file's own position is neither used nor moved, so a transfer libcurl rewinds (a
    /// reused connection that turned out closed) reads it again from the start. `request.body`
    /// must be empty.
    public func upload(_ request: HTTPRequest, from file: FileHandle, stall: StallLimit = .standard)
        throws(HTTPClientError) -> HTTPResponse
    {
        guard request.body.isEmpty else {
            throw HTTPClientError(code: .invalidRequest, curlCode: Int32(CURLE_BAD_FUNCTION_ARGUMENT.rawValue))
        }
        let source = try FileSource(fileDescriptor: file.fileDescriptor)
        return try perform(request, source: source, sink: nil, stall: stall)
    }

    /// Sends `request` and writes a 2xx answer's body to `file` as it arrives, so memory stays
    /// bounded whatever the size (`maxResponseBytes` does not apply to it). The file is truncated
    /// and written from offset 0, so a retry after a failure starts clean. Any other answer's
    /// body (an error page) stays in the returned `body`, within `maxResponseBytes`, and the file
    /// is left empty; a 2xx answer's returned `body` is empty.
    public func download(_ request: HTTPRequest, to file: FileHandle, stall: StallLimit = .standard)
        throws(HTTPClientError) -> HTTPResponse
    {
        let descriptor = file.fileDescriptor
        guard ftruncate(descriptor, 0) == 0 else {
            throw HTTPClientError(code: .localFile, curlCode: Int32(CURLE_WRITE_ERROR.rawValue))
        }
        return try perform(request, source: nil, sink: descriptor, stall: stall)
    }

    private func perform(_ request: HTTPRequest, source: FileSource?, sink: Int32?, stall: StallLimit?)
        throws(HTTPClientError) -> HTTPResponse
    {
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

        let buffer = TransferBuffer(limit: maxResponseBytes, file: sink)
        let code: CURLcode = withExtendedLifetime((headers, buffer, source)) {
            var setup = configure(request, headers: headers, buffer: buffer, source: source)
            if setup == CURLE_OK, let stall { setup = configure(stall) }
            guard setup == CURLE_OK else { return setup }
            return curl_easy_perform(handle)
        }

        guard code == CURLE_OK else {
            if code == CURLE_WRITE_ERROR && buffer.exceeded {
                throw HTTPClientError(code: .responseTooLarge, curlCode: Int32(code.rawValue))
            }
            // A local read or write failed (or the file shrank under the upload): not the network's fault.
            if buffer.fileFailed || source?.failed == true {
                throw HTTPClientError(code: .localFile, curlCode: Int32(code.rawValue))
            }
            throw HTTPClientError(curl: code)
        }
        var status = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: buffer.headers, body: buffer.body)
    }

    /// The low-speed limit, and buffers larger than libcurl's defaults (64 KiB up, 16 KiB down),
    /// which cut the number of callbacks on big files without making memory depend on the size.
    private func configure(_ stall: StallLimit) -> CURLcode {
        let options: [(CURLoption, Int)] = [
            (CURLOPT_LOW_SPEED_LIMIT, stall.bytesPerSecond), (CURLOPT_LOW_SPEED_TIME, stall.seconds),
            (CURLOPT_UPLOAD_BUFFERSIZE, Self.streamingBufferBytes), (CURLOPT_BUFFERSIZE, Self.streamingBufferBytes),
        ]
        for (option, value) in options {
            let result = ccurl_setopt_long(handle, option, value)
            guard result == CURLE_OK else { return result }
        }
        return CURLE_OK
    }

    static let streamingBufferBytes = 512 << 10

    /// Applies every option for one transfer; returns the first failing setopt code.
    private func configure(
        _ request: HTTPRequest, headers: HeaderList, buffer: TransferBuffer, source: FileSource?
    ) -> CURLcode {
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
        case _ where source != nil:
            if let source { results += configureUpload(from: source) }
            if method != "PUT" {
                string(CURLOPT_CUSTOMREQUEST, request.method)
            }
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

    /// UPLOAD makes a PUT with a Content-Length of the file's size, read through the callback;
    /// the seek callback lets libcurl rewind when it resends on a fresh connection.
    private func configureUpload(from source: FileSource) -> [CURLcode] {
        let context = Unmanaged.passUnretained(source).toOpaque()
        return [
            ccurl_setopt_long(handle, CURLOPT_UPLOAD, 1),
            ccurl_setopt_off(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(source.size)),
            ccurl_setopt_ptr(handle, CURLOPT_READDATA, context),
            ccurl_setopt_ptr(handle, CURLOPT_SEEKDATA, context),
            ccurl_setopt_read(handle) { data, size, count, context in
                guard let context, let data else { return Int(CURL_READFUNC_ABORT) }
                let source = Unmanaged<FileSource>.fromOpaque(context).takeUnretainedValue()
                return source.read(into: data, capacity: size * count)
            },
            ccurl_setopt_seek(handle) { context, offset, origin in
                guard let context, origin == SEEK_SET else { return Int32(CURL_SEEKFUNC_CANTSEEK) }
                let source = Unmanaged<FileSource>.fromOpaque(context).takeUnretainedValue()
                return source.seek(to: Int64(offset)) ? Int32(CURL_SEEKFUNC_OK) : Int32(CURL_SEEKFUNC_FAIL)
            },
        ]
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
    /// Where a 2xx body goes instead of `body` (a download), written at `fileOffset`.
    let file: Int32?
    var fileOffset: Int64 = 0
    var fileFailed = false
    /// The status of the response whose headers are being read (from its status line).
    var status = 0

    init(limit: Int, file: Int32? = nil) {
        self.limit = limit
        self.file = file
    }

    func appendBody(_ chunk: UnsafeRawBufferPointer) -> Bool {
        if let file, (200..<300).contains(status) {
            return write(chunk, to: file)
        }
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
            status = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        } else if let colon = line.firstIndex(of: ":") {
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.append((name, value))
        }
    }
}

extension TransferBuffer {
    /// Writes all of `chunk` at `fileOffset`; false (and `fileFailed`) when the disk refuses.
    private func write(_ chunk: UnsafeRawBufferPointer, to file: Int32) -> Bool {
        var done = 0
        while done < chunk.count {
            let written = pwrite(file, chunk.baseAddress! + done, chunk.count - done, off_t(fileOffset))
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                fileFailed = true
                return false
            }
            done += written
            fileOffset += Int64(written)
        }
        return true
    }
}

/// An upload's body: a file read with `pread` at the transfer's own offset, from 0 to the size
/// it had when the transfer started. Reached through an unretained pointer in READDATA and
/// SEEKDATA; the caller keeps it alive across the perform call. The descriptor is borrowed.
final class FileSource {
    let fileDescriptor: Int32
    let size: Int64
    private var offset: Int64 = 0
    /// A read failed, or the file ended before `size` bytes.
    private(set) var failed = false

    init(fileDescriptor: Int32) throws(HTTPClientError) {
        var info = stat()
        guard fstat(fileDescriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw HTTPClientError(code: .localFile, curlCode: Int32(CURLE_READ_ERROR.rawValue))
        }
        self.fileDescriptor = fileDescriptor
        size = Int64(info.st_size)
    }

    /// Fills up to `capacity` bytes; 0 at the end; `CURL_READFUNC_ABORT` on a failure.
    func read(into buffer: UnsafeMutablePointer<CChar>, capacity: Int) -> Int {
        let wanted = Int(min(Int64(capacity), size - offset))
        guard wanted > 0 else { return 0 }
        while true {
            let count = pread(fileDescriptor, buffer, wanted, off_t(offset))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                failed = true
                return Int(CURL_READFUNC_ABORT)
            }
            offset += Int64(count)
            return count
        }
    }

    func seek(to newOffset: Int64) -> Bool {
        guard newOffset >= 0, newOffset <= size else { return false }
        offset = newOffset
        return true
    }
}

/// When a streamed transfer counts as stalled: slower than `bytesPerSecond` for `seconds` in a
/// row. It then ends with `.timedOut`, long before a whole-transfer timeout sized for big files.
public struct StallLimit: Sendable, Equatable {
    public var bytesPerSecond: Int
    public var seconds: Int

    public init(bytesPerSecond: Int, seconds: Int) {
        self.bytesPerSecond = bytesPerSecond
        self.seconds = seconds
    }

    /// Under 1 KiB/s for 30 s.
    public static let standard = StallLimit(bytesPerSecond: 1024, seconds: 30)
}
