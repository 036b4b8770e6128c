import FastCGI
import Foundation

// The runtime's process tests use this executable; this variable lets them make the supervisor's
// fork-safety check fail as a handler holding a database connection would.
if let reason = ProcessInfo.processInfo.environment["HELLO_FORK_UNSAFE_REASON"], !reason.isEmpty {
    ForkSafety.register { reason }
}

FastCGIServer.run { HelloHandler() }
