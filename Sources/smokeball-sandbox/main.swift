import FastCGI
import SmokeballSandbox

FastCGIServer.run { SandboxHandler(configuration: try .fromEnvironment()) }
