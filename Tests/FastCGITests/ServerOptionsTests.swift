import Testing

@testable import FastCGI

struct BadArguments: Sendable, CustomTestStringConvertible {
    let arguments: [String]
    let messageContains: String

    var testDescription: String { arguments.joined(separator: " ") }
}

@Suite struct ServerOptionsTests {
    @Test func defaults() throws {
        let options = try ServerOptions.parse([])
        #expect(options == ServerOptions())
        #expect(options.socketPath == nil)
        #expect(options.workers == 2)
        #expect(options.socketGroup == nil)
        #expect(options.backlog == 128)
        #expect(options.maxBodyBytes == 1 << 20)
    }

    @Test func allFlags() throws {
        let options = try ServerOptions.parse([
            "--socket", "/run/casehug/status.sock", "--workers", "8", "--socket-group", "www-data", "--backlog", "512",
            "--max-body-bytes", "67108864",
        ])
        #expect(
            options
                == ServerOptions(
                    socketPath: "/run/casehug/status.sock", workers: 8, socketGroup: "www-data", backlog: 512,
                    maxBodyBytes: 64 << 20))
    }

    @Test func boundaryValuesAreAccepted() throws {
        #expect(try ServerOptions.parse(["--workers", "1"]).workers == 1)
        #expect(try ServerOptions.parse(["--workers", "256"]).workers == 256)
        #expect(try ServerOptions.parse(["--backlog", "1"]).backlog == 1)
        #expect(try ServerOptions.parse(["--backlog", "65535"]).backlog == 65535)
    }

    @Test(arguments: [
        BadArguments(arguments: ["--verbose"], messageContains: "unknown argument --verbose"),
        BadArguments(arguments: ["--max-body-bytes", "0"], messageContains: "--max-body-bytes must be"),
        BadArguments(arguments: ["--max-body-bytes", "2147483648"], messageContains: "--max-body-bytes must be"),
        BadArguments(arguments: ["/tmp/x.sock"], messageContains: "unknown argument"),
        BadArguments(arguments: ["--socket"], messageContains: "--socket needs a value"),
        BadArguments(arguments: ["--socket-group"], messageContains: "--socket-group needs a value"),
        BadArguments(arguments: ["--workers"], messageContains: "--workers needs a value"),
        BadArguments(arguments: ["--workers", "0"], messageContains: "--workers must be"),
        BadArguments(arguments: ["--workers", "abc"], messageContains: "--workers must be"),
        BadArguments(arguments: ["--workers", "300"], messageContains: "--workers must be"),
        BadArguments(arguments: ["--workers", "-1"], messageContains: "--workers must be"),
        BadArguments(arguments: ["--backlog"], messageContains: "--backlog needs a value"),
        BadArguments(arguments: ["--backlog", "0"], messageContains: "--backlog must be"),
        BadArguments(arguments: ["--backlog", "many"], messageContains: "--backlog must be"),
        BadArguments(arguments: ["--backlog", "70000"], messageContains: "--backlog must be"),
        BadArguments(arguments: ["--socket", "/tmp/a.sock", "--bogus", "1"], messageContains: "--bogus"),
        // Which of two values was meant is anyone's guess: refused rather than the last one winning.
        BadArguments(arguments: ["--workers", "3", "--workers", "4"], messageContains: "--workers is given twice"),
    ])
    func invalidArgumentsAreRejected(_ bad: BadArguments) throws {
        let error = try #require(throws: ServerOptionsError.self) { try ServerOptions.parse(bad.arguments) }
        #expect(error.message.contains(bad.messageContains))
        #expect(error.description == error.message)
    }
}
