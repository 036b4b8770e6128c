import Basics
import CFastCGI
import CFastCGISupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// How a route process listens and how many workers it runs.
public struct ServerOptions: Sendable, Equatable {
    /// A Unix socket to create; `nil` accepts on fd 0 (as spawned by spawn-fcgi).
    public var socketPath: String?
    public var workers: Int
    /// When running as root the socket is given to this group with mode 0660 (nginx's group).
    public var socketGroup: String?
    public var backlog: Int
    /// Bodies above this are refused with 413 (nginx refuses earlier; this guards direct use).
    public var maxBodyBytes: Int

    public init(
        socketPath: String? = nil, workers: Int = 2, socketGroup: String? = nil, backlog: Int = 128,
        maxBodyBytes: Int = 1 << 20
    ) {
        self.socketPath = socketPath
        self.workers = workers
        self.socketGroup = socketGroup
        self.backlog = backlog
        self.maxBodyBytes = maxBodyBytes
    }

    /// `--socket PATH --workers N --socket-group NAME --backlog N --max-body-bytes N`.
    public static func parse(_ arguments: [String]) throws(ServerOptionsError) -> ServerOptions {
        do {
            let flags = try CommandLineOptions(
                arguments, allowed: ["socket", "socket-group", "workers", "backlog", "max-body-bytes"])
            var options = ServerOptions()
            options.socketPath = flags["socket"]
            options.socketGroup = flags["socket-group"]
            options.workers = try flags.integer("workers", in: 1...256) ?? options.workers
            options.backlog = try flags.integer("backlog", in: 1...65535) ?? options.backlog
            // Up to 1 GiB: the sandbox takes file uploads; routes keep the 1 MiB default.
            options.maxBodyBytes = try flags.integer("max-body-bytes", in: 1...(1 << 30)) ?? options.maxBodyBytes
            return options
        } catch {
            throw ServerOptionsError(message: error.message)
        }
    }
}

public struct ServerOptionsError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The one FastCGI run loop every route executable uses. A supervisor process opens the socket
/// and pre-forks workers; each worker accepts and answers one request at a time. Processes,
/// not threads: libpq and libcurl handles stay single-owner, and a crash takes down one worker,
/// which the supervisor replaces.
public enum FastCGIServer {
    /// Parses the command line, builds the handler and serves until SIGTERM. Never returns.
    public static func run<H: Handler>(arguments: [String] = CommandLine.arguments, _ makeHandler: () throws -> H)
        -> Never
    {
        let bootLog = Logger(route: URL(fileURLWithPath: arguments.first ?? "route").lastPathComponent)
        let options: ServerOptions
        let handler: H
        do {
            options = try ServerOptions.parse(Array(arguments.dropFirst()))
            handler = try makeHandler()
        } catch {
            bootLog.error("startup_failed", ["reason": String(describing: error)])
            exit(2)
        }
        let log = Logger(route: handler.route)
        signal(SIGPIPE, SIG_IGN)
        guard FCGX_Init() == 0 else {
            log.error("startup_failed", ["reason": "FCGX_Init failed"])
            exit(1)
        }
        let listener: Listener
        do {
            listener = try Listener.open(options)
        } catch {
            log.error("startup_failed", ["reason": String(describing: error)])
            exit(1)
        }
        let supervisor = Supervisor(options: options, log: log) {
            serve(listenFD: listener.fd, handler: handler, log: log, maxBodyBytes: options.maxBodyBytes)
        }
        let status = supervisor.run()
        listener.removeSocketIfOurs()
        log.info("stopped")
        exit(status)
    }

    /// A worker: accept, answer, repeat, until SIGTERM. SIGTERM and SIGINT stay blocked for the
    /// worker's whole life except inside `ppoll` (see `fastcgi_support_wait_readable`): the stop
    /// flag is checked with them blocked and the wait unblocks them atomically, so there is no
    /// moment where a signal can land after the check yet fail to wake the worker. The listen
    /// socket is non-blocking, so when another worker wins the connection accept returns EAGAIN
    /// instead of blocking here with the signals masked. An in-flight request always finishes.
    static func serve<H: Handler>(listenFD: Int32, handler: H, log: Logger, maxBodyBytes: Int) {
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGINT)
        sigprocmask(SIG_BLOCK, &stopSignals, nil)
        guard fastcgi_support_install_stop_handler() == 0 else {
            log.error("worker_failed", ["reason": "cannot install the stop handler", "errno": Int(errno)])
            return
        }
        guard let request = FastCGIRequest(listenFD: listenFD) else {
            log.error("worker_failed", ["reason": "FCGX_InitRequest failed"])
            return
        }
        while true {
            let ready = fastcgi_support_wait_readable(listenFD)
            if ready == 0 { break }
            guard ready > 0 else {
                log.error("accept_failed", ["errno": Int(errno)])
                break
            }
            let accepted = FCGX_Accept_r(request.pointer)
            guard accepted >= 0 else {
                // EAGAIN: another worker took the connection; EINTR cannot happen (masked), but
                // the next wait would see the flag anyway. Anything else is a broken socket.
                if accepted == -EAGAIN || accepted == -EWOULDBLOCK || accepted == -EINTR { continue }
                log.error("accept_failed", ["errno": Int(-accepted)])
                break
            }
            answer(request, handler: handler, log: log, maxBodyBytes: maxBodyBytes)
        }
    }

    private static func answer<H: Handler>(_ request: FastCGIRequest, handler: H, log: Logger, maxBodyBytes: Int) {
        let started = monotonicNanoseconds()
        let (params, body, bodyError) = readRequest(request.pointer, maxBodyBytes: maxBodyBytes)
        let parsed = Request(params: params, body: body)
        let (response, failure): (Response, HTTPError?)
        if let bodyError {
            (response, failure) = (Response.error(bodyError, requestID: parsed.requestID), bodyError)
        } else {
            (response, failure) = respond(to: parsed, with: handler, log: log)
        }
        let bytes = response.serialized(requestID: parsed.requestID)
        bytes.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { pointer in
                _ = FCGX_PutStr(pointer, Int32(buffer.count), request.pointer.pointee.out)
            }
        }
        fastcgi_support_finish(request.pointer)
        // The handler's own facts first (its outcome, the firm), then the runtime's, which win.
        var fields = response.logFields
        fields["method"] = parsed.method
        fields["path"] = parsed.path
        fields["status"] = response.status.code
        fields["duration_ms"] = Double((monotonicNanoseconds() - started) / 1000) / 1000
        fields["request_id"] = parsed.requestID
        if let failure {
            fields["error"] = failure.code
            if let detail = failure.logDetail { fields["detail"] = detail }
        }
        log.info("request", fields)
    }

    /// Copies every param and the body out of libfcgi's buffers before `FCGX_Finish_r` reuses them.
    static func readRequest(_ request: UnsafeMutablePointer<FCGX_Request>, maxBodyBytes: Int) -> (
        [String: String], [UInt8], HTTPError?
    ) {
        var params: [String: String] = [:]
        if var cursor = request.pointee.envp {
            while let entry = cursor.pointee {
                // NAME=value: split at the first "=" byte, without decoding the entry as a whole.
                if let equals = strchr(entry, Int32(UInt8(ascii: "="))) {
                    let nameBytes = UnsafeRawBufferPointer(start: entry, count: entry.distance(to: equals))
                    params[String(decoding: nameBytes, as: UTF8.self)] = String(cString: equals + 1)
                }
                cursor += 1
            }
        }
        let declared = params["CONTENT_LENGTH"].flatMap { Int($0) } ?? 0
        guard declared <= maxBodyBytes else {
            return (
                params, [],
                HTTPError(.payloadTooLarge, code: "payload_too_large", "Request body exceeds \(maxBodyBytes) bytes")
            )
        }
        guard declared > 0 else { return (params, [], nil) }
        var body = [UInt8](repeating: 0, count: declared)
        let read = body.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: declared) { pointer in
                FCGX_GetStr(pointer, Int32(declared), request.pointee.in)
            }
        }
        guard read == declared else {
            return (params, [], HTTPError(.badRequest, code: "incomplete_body", "Request body is incomplete"))
        }
        return (params, body, nil)
    }
}

func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}
