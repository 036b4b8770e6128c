import FastCGI
import SmokeballSandbox

// `smokeball-sandbox deliver` runs the webhook dispatcher; otherwise the FastCGI server.
if CommandLine.arguments.dropFirst().first == "deliver" {
    WebhookDispatcher.run(configuration: try SandboxConfiguration.fromEnvironment())
}
FastCGIServer.run { SandboxHandler(configuration: try .fromEnvironment()) }
