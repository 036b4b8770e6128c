import FastCGI
import Integration

FastCGIServer.run { StatusHandler(configuration: try .fromEnvironment()) }
