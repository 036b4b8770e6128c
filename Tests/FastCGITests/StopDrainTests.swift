import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What a stopping route does with connections already queued on its socket: a deploy stops the
/// old slot after moving traffic away (docs/deploy.md), and whatever the kernel had queued for
/// it by then must still be answered, not reset (nginx would answer 502). The runtime does so
/// because a worker's wait (ppoll) reports the socket readable before it lets the pending stop
/// signal in: a worker that checked for a stop before accepting would fail this test.
@Suite(.timeLimit(.minutes(1)))
struct StopDrainTests {
    /// A raw FastCGI client connection, written record by record.
    final class Connection {
        let fd: Int32

        init(path: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket failed (errno \(errno))") }
            let connected = withUnixAddress(path) { connect(fd, $0, $1) }
            guard connected == 0 else {
                close(fd)
                throw HarnessError("connect failed (errno \(errno))")
            }
        }

        deinit { close(fd) }

        static func record(_ type: UInt8, _ content: [UInt8]) -> [UInt8] {
            [1, type, 0, 1, UInt8(content.count >> 8), UInt8(content.count & 0xff), 0, 0] + content
        }

        /// BEGIN_REQUEST (responder, close the connection after).
        static let begin = record(1, [0, 1, 0, 0, 0, 0, 0, 0])

        /// The params (short names and values), their end, and an empty stdin.
        static func rest(_ params: [String: String]) -> [UInt8] {
            var pairs: [UInt8] = []
            for (name, value) in params {
                pairs += [UInt8(name.utf8.count), UInt8(value.utf8.count)] + Array(name.utf8) + Array(value.utf8)
            }
            return record(4, pairs) + record(4, []) + record(5, [])
        }

        func write(_ bytes: [UInt8]) throws {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard written == bytes.count else { throw HarnessError("write failed (errno \(errno))") }
        }

        /// Everything until the server closes the connection (or resets it: then what came before).
        func readAll() -> String {
            var answer: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                answer += buffer[..<count]
            }
            shutdown(fd, Int32(SHUT_RDWR))
            return String(decoding: answer, as: UTF8.self)
        }
    }

    /// Whether `pid` has a SIGTERM pending (blocked, not yet handled).
    static func hasPendingSIGTERM(_ pid: pid_t) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
        let bit: UInt64 = 1 << (UInt64(SIGTERM) - 1)
        return status.split(separator: "\n").contains { line in
            guard line.hasPrefix("SigPnd:") || line.hasPrefix("ShdPnd:") else { return false }
            return (UInt64(line.split(separator: "\t").last ?? "", radix: 16) ?? 0) & bit != 0
        }
    }

    @Test func aStoppingWorkerAnswersTheConnectionsQueuedBeforeItExits() async throws {
        let server = try HelloProcess(workers: 1)
        do {
            try await server.waitUntilReady(workers: 1)
            let worker = try #require(Processes.childPIDs(of: server.pid).first)
            let params = ["REQUEST_METHOD": "GET", "DOCUMENT_URI": "/hello"]
            // The only worker takes the first connection and waits for the rest of its request;
            // two complete requests queue behind it.
            let first = try Connection(path: server.socketPath)
            try first.write(Connection.begin)
            let queued = try (0..<2).map { _ in try Connection(path: server.socketPath) }
            for connection in queued { try connection.write(Connection.begin + Connection.rest(params)) }
            // The stop reaches the worker while it is inside that request (SIGTERM stays pending
            // there until the request is answered).
            #expect(kill(server.pid, SIGTERM) == 0)
            let pending = await Processes.poll(.seconds(10)) { Self.hasPendingSIGTERM(worker) }
            try #require(pending, "the worker never got the supervisor's SIGTERM; stderr: \(server.stderr)")
            try first.write(Connection.rest(params))
            // The answers are FastCGI records; their STDOUT content holds the status line.
            #expect(first.readAll().contains("Status: 200 OK"))
            for connection in queued {
                let answer = connection.readAll()
                #expect(answer.contains("Status: 200 OK"), "a queued connection got: \(answer.debugDescription)")
            }
            let exited = await server.waitForExit(.seconds(12))
            #expect(exited)
        }
        await server.terminate()
    }
}
