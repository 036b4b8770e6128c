import CFastCGI
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
        var options = ServerOptions()
        var index = 0
        func value(after flag: String) throws(ServerOptionsError) -> String {
            index += 1
            guard index < arguments.count else { throw ServerOptionsError(message: "\(flag) needs a value") }
            return arguments[index]
        }
        while index < arguments.count {
            let flag = arguments[index]
            switch flag {
            case "--socket": options.socketPath = try value(after: flag)
            case "--socket-group": options.socketGroup = try value(after: flag)
            case "--workers":
                guard let count = Int(try value(after: flag)), (1...256).contains(count) else {
                    throw ServerOptionsError(message: "--workers must be a number from 1 to 256")
                }
                options.workers = count
            case "--backlog":
                guard let count = Int(try value(after: flag)), (1...65535).contains(count) else {
                    throw ServerOptionsError(message: "--backlog must be a number from 1 to 65535")
                }
                options.backlog = count
            case "--max-body-bytes":
                // Up to 1 GiB: the sandbox takes file uploads; routes keep the 1 MiB default.
                guard let bytes = Int(try value(after: flag)), (1...(1 << 30)).contains(bytes) else {
                    throw ServerOptionsError(message: "--max-body-bytes must be a number from 1 to 1073741824")
                }
                options.maxBodyBytes = bytes
            default:
                throw ServerOptionsError(message: "unknown argument \(flag)")
            }
            index += 1
        }
        return options
    }
}

public struct ServerOptionsError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Set from the signal handler; read by the accept loop and the supervisor.
nonisolated(unsafe) private var stopRequested: sig_atomic_t = 0

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
        let listenFD: Int32
        do {
            listenFD = try openListener(options)
        } catch {
            log.error("startup_failed", ["reason": String(describing: error)])
            exit(1)
        }
        let supervisor = Supervisor(options: options, log: log) {
            serve(listenFD: listenFD, handler: handler, log: log, maxBodyBytes: options.maxBodyBytes)
        }
        supervisor.run()
        if let path = options.socketPath { unlink(path) }
        log.info("stopped")
        exit(0)
    }

    static func openListener(_ options: ServerOptions) throws(ServerOptionsError) -> Int32 {
        guard let path = options.socketPath else { return 0 }
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw ServerOptionsError(message: "socket path exists and is not a socket")
            }
            unlink(path)
        }
        // The socket is created 0600 so nothing can connect before its group and mode are set.
        let previousMask = umask(0o177)
        let fd = FCGX_OpenSocket(path, Int32(options.backlog))
        umask(previousMask)
        guard fd >= 0 else { throw ServerOptionsError(message: "cannot listen on socket (errno \(errno))") }
        // Root may hand the socket to any group; anyone else only to a group they belong to,
        // and a failure is an error rather than a socket nginx silently cannot reach.
        if let groupName = options.socketGroup {
            guard let group = getgrnam(groupName) else {
                throw ServerOptionsError(message: "unknown socket group \(groupName)")
            }
            guard chown(path, uid_t.max, group.pointee.gr_gid) == 0, chmod(path, 0o660) == 0 else {
                throw ServerOptionsError(message: "cannot set socket group (errno \(errno))")
            }
        }
        return fd
    }

    /// A worker: accept, answer, repeat, until SIGTERM. SIGTERM is blocked while a request is
    /// being handled, so an in-flight request always finishes and gets its answer.
    static func serve<H: Handler>(listenFD: Int32, handler: H, log: Logger, maxBodyBytes: Int) {
        installStopHandler()
        var termOnly = sigset_t()
        sigemptyset(&termOnly)
        sigaddset(&termOnly, SIGTERM)
        sigaddset(&termOnly, SIGINT)
        var request = FCGX_Request()
        guard FCGX_InitRequest(&request, listenFD, FCGI_FAIL_ACCEPT_ON_INTR) == 0 else {
            log.error("worker_failed", ["reason": "FCGX_InitRequest failed"])
            return
        }
        while stopRequested == 0 {
            sigprocmask(SIG_UNBLOCK, &termOnly, nil)
            // A SIGTERM landing between this check and accept(2) is caught by the supervisor's
            // kill timeout; every other SIGTERM interrupts accept (FCGI_FAIL_ACCEPT_ON_INTR).
            let accepted = stopRequested == 0 ? FCGX_Accept_r(&request) : -1
            sigprocmask(SIG_BLOCK, &termOnly, nil)
            guard accepted >= 0 else {
                if stopRequested != 0 || errno == EINTR { continue }
                log.error("accept_failed", ["errno": Int(errno)])
                break
            }
            let started = monotonicNanoseconds()
            let (params, body, bodyError) = readRequest(&request, maxBodyBytes: maxBodyBytes)
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
                    _ = FCGX_PutStr(pointer, Int32(buffer.count), request.out)
                }
            }
            FCGX_Finish_r(&request)
            var fields: [String: any Sendable] = [
                "method": parsed.method, "path": parsed.path, "status": response.status.code,
                "duration_ms": Double((monotonicNanoseconds() - started) / 1000) / 1000,
                "request_id": parsed.requestID,
            ]
            if let failure {
                fields["error"] = failure.code
                if let detail = failure.logDetail { fields["detail"] = detail }
            }
            log.info("request", fields)
        }
        FCGX_Free(&request, 1)
    }

    /// Copies every param and the body out of libfcgi's buffers before `FCGX_Finish_r` reuses them.
    static func readRequest(_ request: inout FCGX_Request, maxBodyBytes: Int) -> (
        [String: String], [UInt8], HTTPError?
    ) {
        var params: [String: String] = [:]
        if var cursor = request.envp {
            while let entry = cursor.pointee {
                let pair = String(cString: entry)
                if let equals = pair.firstIndex(of: "=") {
                    params[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
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
                FCGX_GetStr(pointer, Int32(declared), request.in)
            }
        }
        guard read == declared else {
            return (params, [], HTTPError(.badRequest, code: "incomplete_body", "Request body is incomplete"))
        }
        return (params, body, nil)
    }

    static func installStopHandler() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in stopRequested = 1 }
        sigemptyset(&action.sa_mask)
        // No SA_RESTART: the signal must interrupt accept(2).
        action.sa_flags = 0
        sigaction(SIGTERM, &action, nil)
        sigaction(SIGINT, &action, nil)
    }
}

func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}
