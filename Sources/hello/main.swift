import FastCGI
import Foundation

// The runtime's process tests use this executable. These variables let them make the
// supervisor's fork-safety check fail as a handler holding a database connection would, and
// leave text in stdout's buffer at fork (workers must exit without flushing their copy of it).
let environment = ProcessInfo.processInfo.environment
if let reason = environment["HELLO_FORK_UNSAFE_REASON"], !reason.isEmpty {
    ForkSafety.register { reason }
}
if let marker = environment["HELLO_UNFLUSHED_STDOUT"], !marker.isEmpty {
    print(marker, terminator: "")
}

FastCGIServer.run { HelloHandler() }
