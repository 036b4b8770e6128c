import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real runtime: the built `hello` executable answering `cgi-fcgi` over a Unix socket.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct RuntimeProcessTests {
    static let helloParams = ["REQUEST_METHOD": "GET", "DOCUMENT_URI": "/hello"]

    static func socketStat(_ path: String) throws -> stat {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw HarnessError("lstat \(path) failed (errno \(errno))") }
        return info
    }

    @Test func answersHelloAndEchoesRequestIDOnPrivateSocket() async throws {
        let server = try HelloProcess(workers: 2)
        do {
            try await server.waitUntilReady()
            let info = try Self.socketStat(server.socketPath)
            #expect(info.st_mode & S_IFMT == S_IFSOCK)
            #expect(info.st_mode & 0o777 == 0o600)

            var params = Self.helloParams
            params["HTTP_X_REQUEST_ID"] = "proc-test-1"
            let exchange = try await FastCGIExchange.send(
                socket: server.socketPath, params: params, in: server.directory)
            #expect(exchange.exitStatus == 0)
            #expect(exchange.text.hasPrefix("Status: 200 OK\r\n"))
            let response = try #require(exchange.parsed, "unparseable response: \(exchange.text)")
            #expect(String(decoding: response.body, as: UTF8.self) == #"{"hello":"world"}"#)
            #expect(response.values("X-Request-Id") == ["proc-test-1"])
            #expect(response.values("Content-Type") == ["application/json"])
            #expect(response.values("Content-Length") == [String(response.body.count)])
        }
        await server.terminate()
    }

    @Test(.enabled(if: geteuid() == 0, "chown to another group needs root"))
    func socketGroupIsAppliedWhenRoot() async throws {
        let group = try #require(getgrnam("www-data"), "group www-data missing").pointee.gr_gid
        let server = try HelloProcess(workers: 1, extraArguments: ["--socket-group", "www-data"])
        do {
            try await server.waitUntilReady(workers: 1)
            let info = try Self.socketStat(server.socketPath)
            #expect(info.st_mode & 0o777 == 0o660)
            #expect(info.st_gid == group)
            let exchange = try await FastCGIExchange.send(
                socket: server.socketPath, params: Self.helloParams, in: server.directory)
            #expect(exchange.text.hasPrefix("Status: 200 OK\r\n"))
        }
        await server.terminate()
    }

    @Test func oversizedBodyIsRefusedWith413() async throws {
        let server = try HelloProcess(workers: 2)
        do {
            try await server.waitUntilReady()
            let body = [UInt8](repeating: UInt8(ascii: "x"), count: 2_000_000)
            let exchange = try await FastCGIExchange.send(
                socket: server.socketPath,
                params: ["REQUEST_METHOD": "POST", "DOCUMENT_URI": "/hello", "CONTENT_LENGTH": "2000000"],
                body: body, in: server.directory)
            #expect(exchange.text.hasPrefix("Status: 413 "), "got: \(exchange.text.prefix(200))")
            #expect(exchange.text.contains("payload_too_large"))
            // The worker that refused it is still serving.
            let next = try await FastCGIExchange.send(
                socket: server.socketPath, params: Self.helloParams, in: server.directory)
            #expect(next.text.hasPrefix("Status: 200 OK\r\n"))
        }
        await server.terminate()
    }

    @Test func killedWorkerIsReplaced() async throws {
        let server = try HelloProcess(workers: 2)
        do {
            try await server.waitUntilReady()
            let before = Processes.childPIDs(of: server.pid)
            try #require(before.count == 2)
            let victim = try #require(before.min())
            #expect(kill(victim, SIGKILL) == 0)
            let replaced = await Processes.poll(.seconds(10)) {
                let now = Processes.childPIDs(of: server.pid)
                return now.count == 2 && !now.contains(victim)
            }
            #expect(replaced, "children now: \(Processes.childPIDs(of: server.pid)); stderr: \(server.stderr)")
            #expect(server.process.isRunning)
            let exited = await Processes.poll(.seconds(5)) {
                server.events("worker_exited").contains { ($0["worker_pid"] as? Int) == Int(victim) }
            }
            #expect(exited)
            for index in 0..<4 {
                var params = Self.helloParams
                params["HTTP_X_REQUEST_ID"] = "after-crash-\(index)"
                let exchange = try await FastCGIExchange.send(
                    socket: server.socketPath, params: params, in: server.directory)
                #expect(exchange.text.hasPrefix("Status: 200 OK\r\n"))
                #expect(exchange.parsed?.values("X-Request-Id") == ["after-crash-\(index)"])
            }
        }
        await server.terminate()
    }

    @Test func sigtermStopsCleanlyWithJSONLogs() async throws {
        let server = try HelloProcess(workers: 2)
        do {
            try await server.waitUntilReady()
            let workers = Processes.childPIDs(of: server.pid)
            let exchange = try await FastCGIExchange.send(
                socket: server.socketPath, params: Self.helloParams, in: server.directory)
            #expect(exchange.text.hasPrefix("Status: 200 OK\r\n"))

            #expect(kill(server.pid, SIGTERM) == 0)
            let exited = await server.waitForExit(.seconds(12))
            try #require(exited, "master still running after SIGTERM; stderr: \(server.stderr)")
            #expect(server.process.terminationReason == .exit)
            #expect(server.process.terminationStatus == 0)
            #expect(!FileManager.default.fileExists(atPath: server.socketPath))
            // The workers went with it.
            let workersGone = await Processes.poll(.seconds(5)) { workers.allSatisfy { kill($0, 0) != 0 } }
            #expect(workersGone)

            #expect(server.stderr.contains(#""event":"stopped""#))
            let lines = server.logLines
            #expect(!lines.isEmpty)
            for (line, object) in lines {
                let object = try #require(object, "stderr line is not a JSON object: \(line)")
                for key in ["ts", "level", "event", "route"] {
                    #expect(object[key] is String, "missing \(key) in \(line)")
                }
                #expect(object["route"] as? String == "hello")
            }
            #expect(server.events("started").count == 1)
            #expect(server.events("stopped").count == 1)
        }
        await server.terminate()
    }

    @Test func requestLogLineHasFieldsButNoQueryString() async throws {
        let server = try HelloProcess(workers: 2)
        do {
            try await server.waitUntilReady()
            let exchange = try await FastCGIExchange.send(
                socket: server.socketPath,
                params: [
                    "REQUEST_METHOD": "get", "REQUEST_URI": "/hello/items?token=SECRET",
                    "QUERY_STRING": "token=SECRET", "HTTP_X_REQUEST_ID": "log-line-1",
                ], in: server.directory)
            #expect(exchange.text.hasPrefix("Status: 200 OK\r\n"))
            let logged = await Processes.poll(.seconds(5)) {
                server.events("request").contains { $0["request_id"] as? String == "log-line-1" }
            }
            try #require(logged, "no request log line; stderr: \(server.stderr)")
            let line = try #require(server.events("request").first { $0["request_id"] as? String == "log-line-1" })
            #expect(line["method"] as? String == "GET")
            #expect(line["path"] as? String == "/hello/items")
            #expect(line["status"] as? Int == 200)
            #expect(line["duration_ms"] is Double || line["duration_ms"] is Int)
            #expect(line["level"] as? String == "info")
            #expect(!server.stderr.contains("SECRET"))
            #expect(!server.stderr.contains("token="))
        }
        await server.terminate()
    }

    @Test("A worker closes a finished connection itself at once, never waiting for the web server to close first")
    func workerClosesFinishedConnection() async throws {
        let server = try HelloProcess(workers: 1)
        do {
            try await server.waitUntilReady(workers: 1)
            let connection = try StopDrainTests.Connection(path: server.socketPath)
            try connection.write(StopDrainTests.Connection.begin + StopDrainTests.Connection.rest(Self.helloParams))
            // To the end of the answer, our side left open (not even half-closed).
            var answer: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(connection.fd, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                answer += buffer[..<count]
            }
            #expect(String(decoding: answer, as: UTF8.self).contains("Status: 200 OK"))
            // The end came from the worker's close, not from a half-close after which it lingers
            // reading (libfcgi's own finish, up to 2 s per request): a byte sent now has no reader.
            var byte: UInt8 = 0
            let sent = send(connection.fd, &byte, 1, Int32(MSG_NOSIGNAL))
            let error = errno
            #expect(sent == -1 && error == EPIPE, "sent \(sent), errno \(error)")
        }
        await server.terminate()
    }

    @Test func idleWorkersStopOnSIGTERMWithoutBeingKilled() async throws {
        let server = try HelloProcess(workers: 4)
        do {
            try await server.waitUntilReady(workers: 4)
            let workers = Processes.childPIDs(of: server.pid)
            #expect(kill(server.pid, SIGTERM) == 0)
            let started = ContinuousClock.now
            let exited = await server.waitForExit(.seconds(15))
            try #require(exited, "master still running after SIGTERM; stderr: \(server.stderr)")
            print("idle workers stopped in \(ContinuousClock.now - started)")
            // A worker that missed the signal would be killed after the supervisor's grace period.
            #expect(server.events("worker_killed").isEmpty, "stderr: \(server.stderr)")
            #expect(server.process.terminationStatus == 0)
            #expect(workers.allSatisfy(Processes.hasExited))
        }
        await server.terminate()
    }

    @Test func workersExitWithoutFlushingTheSupervisorsStdioBuffers() async throws {
        // The marker sits unflushed in stdout's buffer when the workers are forked; only the
        // supervisor's own exit may write it.
        let server = try HelloProcess(workers: 3, environment: ["HELLO_UNFLUSHED_STDOUT": "<marker>"])
        do {
            try await server.waitUntilReady(workers: 3)
            let exchange = try await FastCGIExchange.send(
                socket: server.socketPath, params: Self.helloParams, in: server.directory)
            #expect(exchange.text.hasPrefix("Status: 200 OK\r\n"))
            #expect(kill(server.pid, SIGTERM) == 0)
            let exited = await server.waitForExit(.seconds(12))
            try #require(exited, "stderr: \(server.stderr)")
            #expect(server.stdout == "<marker>")
        }
        await server.terminate()
    }

    @Test func workersDieWithTheirSupervisor() async throws {
        let server = try HelloProcess(workers: 2)
        do {
            try await server.waitUntilReady()
            let workers = Processes.childPIDs(of: server.pid)
            try #require(workers.count == 2)
            #expect(kill(server.pid, SIGKILL) == 0)
            _ = await server.waitForExit(.seconds(5))
            let gone = await Processes.poll(.seconds(10)) { workers.allSatisfy(Processes.hasExited) }
            #expect(gone, "orphaned workers still running: \(workers.filter { !Processes.hasExited($0) })")
            for worker in workers where !Processes.hasExited(worker) { kill(worker, SIGKILL) }
        }
        await server.terminate()
    }

    @Test func aSecondInstanceRefusesASocketAnotherServes() async throws {
        let first = try HelloProcess(workers: 1)
        do {
            try await first.waitUntilReady(workers: 1)
            let before = try Self.socketStat(first.socketPath)
            let second = try HelloProcess(arguments: ["--socket", first.socketPath, "--workers", "1"])
            let exited = await second.waitForExit(.seconds(10))
            if !exited { await second.terminate() }
            try #require(exited, "second instance took over the socket; stderr: \(second.stderr)")
            #expect(second.process.terminationStatus != 0)
            let failure = second.events("startup_failed").first
            #expect((failure?["reason"] as? String)?.contains("socket in use by another instance") == true)
            // The first instance still owns its socket file and answers on it.
            let after = try Self.socketStat(first.socketPath)
            #expect(after.st_ino == before.st_ino)
            let exchange = try await FastCGIExchange.send(
                socket: first.socketPath, params: Self.helloParams, in: first.directory)
            #expect(exchange.text.hasPrefix("Status: 200 OK\r\n"))
            await second.terminate()
        }
        await first.terminate()
    }

    @Test func aStaleSocketFileIsReplaced() async throws {
        let directory = try Processes.temporaryDirectory(prefix: "fcgi-test")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("stale.sock").path
        // Bound but never listening, then closed: what a crashed instance leaves behind.
        _ = try TestSocket(path: path, listening: false)
        let server = try HelloProcess(arguments: ["--socket", path, "--workers", "1"])
        do {
            let ready = await Processes.poll(.seconds(5)) { Processes.childPIDs(of: server.pid).count == 1 }
            try #require(ready, "stderr: \(server.stderr)")
            let exchange = try await FastCGIExchange.send(socket: path, params: Self.helloParams, in: directory)
            #expect(exchange.text.hasPrefix("Status: 200 OK\r\n"))
        }
        await server.terminate()
    }

    @Test func onExitTheSocketOfAnotherInstanceIsLeftInPlace() async throws {
        let server = try HelloProcess(workers: 1)
        do {
            try await server.waitUntilReady(workers: 1)
            // Another instance now serves at the same path (e.g. a restart that raced this one).
            #expect(unlink(server.socketPath) == 0)
            let successor = try TestSocket(path: server.socketPath, listening: true)
            let successorInode = try Self.socketStat(server.socketPath).st_ino
            #expect(kill(server.pid, SIGTERM) == 0)
            let exited = await server.waitForExit(.seconds(12))
            try #require(exited)
            #expect(server.process.terminationStatus == 0)
            let remaining = try? Self.socketStat(server.socketPath)
            #expect(remaining?.st_ino == successorInode, "the successor's socket was unlinked")
            withExtendedLifetime(successor) {}
        }
        await server.terminate()
    }

    @Test func anUnsafeForkStopsTheSupervisorWithItsReason() async throws {
        let server = try HelloProcess(
            workers: 2, environment: ["HELLO_FORK_UNSAFE_REASON": "1 database connection open before fork"])
        do {
            let exited = await server.waitForExit(.seconds(10))
            try #require(exited, "supervisor forked anyway; stderr: \(server.stderr)")
            #expect(server.process.terminationReason == .exit)
            #expect(server.process.terminationStatus != 0)
            let unsafe = try #require(server.events("fork_unsafe").first, "stderr: \(server.stderr)")
            #expect(unsafe["level"] as? String == "error")
            #expect(unsafe["reason"] as? String == "1 database connection open before fork")
            #expect(server.events("worker_exited").isEmpty)
            #expect(!FileManager.default.fileExists(atPath: server.socketPath))
        }
        await server.terminate()
    }

    @Test(arguments: [["--workers", "0"], ["--workers", "abc"], ["--frobnicate"]])
    func badArgumentsFailStartup(arguments: [String]) async throws {
        let server = try HelloProcess(arguments: arguments)
        do {
            let exited = await server.waitForExit(.seconds(10))
            try #require(exited, "hello \(arguments) kept running")
            #expect(server.process.terminationReason == .exit)
            #expect(server.process.terminationStatus != 0)
            let failure = try #require(server.events("startup_failed").first, "stderr: \(server.stderr)")
            #expect(failure["level"] as? String == "error")
            #expect(failure["route"] as? String == "hello")
            #expect((failure["reason"] as? String)?.isEmpty == false)
        }
        await server.terminate()
    }
}
