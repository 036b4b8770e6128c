import FastCGI
import Foundation
import SmokeballSandbox

// `smokeball-sandbox deliver` runs the webhook dispatcher; otherwise the FastCGI server.
if CommandLine.arguments.dropFirst().first == "deliver" {
    let configuration: SandboxConfiguration
    do {
        configuration = try SandboxConfiguration.fromEnvironment()
    } catch {
        FileHandle.standardError.write(
            Data("smokeball-sandbox deliver: \(error); set it to the sandbox database's URL\n".utf8))
        exit(2)
    }
    WebhookDispatcher.run(configuration: configuration)
}
FastCGIServer.run { SandboxHandler(configuration: try .fromEnvironment()) }
