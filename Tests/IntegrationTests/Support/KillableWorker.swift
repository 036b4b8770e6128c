import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A worker executable (`worker`, or `job-test-worker` with its test kinds) that a test starts
/// and may kill as a crash would. Its output goes to a log file the test can read (and check
/// for personal data); the file goes when this does.
final class KillableWorker {
    let process = Process()
    let log: URL

    /// One of the package's executables, by name.
    convenience init(executable: String, arguments: [String], environment: [String: String]) throws {
        try self.init(
            executableURL: URL(fileURLWithPath: TestEnvironment.binDirectory).appendingPathComponent(executable),
            arguments: arguments, environment: environment)
    }

    init(executableURL: URL, arguments: [String], environment: [String: String]) throws {
        process.executableURL = executableURL
        process.arguments = arguments
        process.environment = environment
        log = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("\(executableURL.lastPathComponent)-\(UUID()).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    deinit {
        kill9()
        try? FileManager.default.removeItem(at: log)
    }

    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// SIGKILL for the supervisor and its workers at once, as a crash of the machine would end
    /// them: the supervisor first, so that it replaces no one.
    func kill9() {
        guard process.isRunning else { return }
        let children = Processes.childPIDs(of: process.processIdentifier)
        kill(process.processIdentifier, SIGKILL)
        for child in children { kill(child, SIGKILL) }
        process.waitUntilExit()
        for child in children {
            _ = try? Processes.waitFor("worker \(child) to die", timeout: 10) { Processes.hasExited(child) }
        }
    }

    /// SIGTERM: the supervisor stops its workers (each finishes or releases its job) and exits.
    func stop() throws {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        try Processes.waitFor("the worker to stop", timeout: 60) { !process.isRunning }
    }
}
