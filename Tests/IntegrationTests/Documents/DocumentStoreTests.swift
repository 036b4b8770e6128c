import Foundation
import HTTPClient
import Integration
import Testing

/// A fresh directory for a store's root (or its temporary files), removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        path =
            FileManager.default.temporaryDirectory.appendingPathComponent("document-store-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    @discardableResult
    func write(_ relative: String, _ bytes: [UInt8]) throws -> String {
        let url = URL(fileURLWithPath: path).appendingPathComponent(relative)
        try FileManager.default.createDirectory(
            at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
        return url.path
    }

    func entries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path) }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Everything left to read from a stored document's file.
func contents(of document: StoredDocument) throws -> [UInt8] {
    try document.file.seek(toOffset: 0)
    return [UInt8](try document.file.readToEnd() ?? Data())
}

/// The code of the DocumentStoreError `body` throws (nil if none or another error).
func storeError(_ body: () throws -> Void) -> DocumentStoreError? {
    do {
        try body()
        return nil
    } catch {
        return error as? DocumentStoreError
    }
}

@Suite struct LocalDocumentStoreTests {
    @Test("a file under STORAGE_ROOT is handed over open, with its size")
    func opensAStoredFile() throws {
        let root = try ScratchDirectory()
        defer { root.remove() }
        let bytes = Array("%PDF-1.4 marriage certificate".utf8)
        try root.write("demo/d1/marriage-certificate.pdf", bytes)
        let store = DocumentStore(DocumentStoreConfiguration(location: .directory(root.path)))
        let document = try store.open("demo/d1/marriage-certificate.pdf")
        #expect(document.size == Int64(bytes.count))
        #expect(try contents(of: document) == bytes)
    }

    @Test(
        "paths that are absolute, climb, skip segments or carry control characters are invalid, before any lookup",
        arguments: [
            "", "/etc/passwd", "../outside.pdf", "demo/../../outside.pdf", "demo/..", "demo//a.pdf", "./demo/a.pdf",
            "demo/./a.pdf", "demo/a.pdf/", "demo\\a.pdf", "demo/a\u{0}.pdf", "demo/a\n.pdf",
        ])
    func invalidPaths(path: String) throws {
        let root = try ScratchDirectory()
        defer { root.remove() }
        // Each of these would otherwise find this file.
        try root.write("outside.pdf", [1])
        try root.write("demo/a.pdf", [1])
        let store = DocumentStore(DocumentStoreConfiguration(location: .directory(root.path + "/demo")))
        let error = storeError { _ = try store.open(path) }
        #expect(error?.code == .invalidPath)
        #expect(error?.httpStatus == 400)
    }

    @Test("no symlink leads anywhere, not out of the root and not within it")
    func symlinksAreRefused() throws {
        let outside = try ScratchDirectory()
        let root = try ScratchDirectory()
        defer {
            outside.remove()
            root.remove()
        }
        let secret = try outside.write("secret.pdf", Array("outside".utf8))
        let inside = try root.write("real/a.pdf", Array("inside".utf8))
        let manager = FileManager.default
        try manager.createSymbolicLink(atPath: root.path + "/escape", withDestinationPath: outside.path)
        try manager.createSymbolicLink(atPath: root.path + "/secret.pdf", withDestinationPath: secret)
        try manager.createSymbolicLink(atPath: root.path + "/alias", withDestinationPath: root.path + "/real")
        try manager.createSymbolicLink(atPath: root.path + "/alias.pdf", withDestinationPath: inside)
        let store = DocumentStore(DocumentStoreConfiguration(location: .directory(root.path)))
        for path in ["escape/secret.pdf", "secret.pdf", "alias/a.pdf", "alias.pdf"] {
            let error = storeError { _ = try store.open(path) }
            #expect(error?.code == .invalidPath, "\(path)")
        }
        #expect(try contents(of: try store.open("real/a.pdf")) == Array("inside".utf8))
    }

    @Test("a missing file is `missing`, and the error names a digest of the path, never the path")
    func missingFile() throws {
        let root = try ScratchDirectory()
        defer { root.remove() }
        try root.write("clients/other.pdf", [1])
        let store = DocumentStore(DocumentStoreConfiguration(location: .directory(root.path)))
        for path in ["clients/Jane Roe/intake.pdf", "clients/other.pdf/intake.pdf", "Jane Roe.pdf"] {
            let error = storeError { _ = try store.open(path) }
            #expect(error?.code == .missing, "\(path)")
            #expect(error?.httpStatus == 404)
            #expect(error?.isRetryable == false)
            let text = error.map(String.init(describing:)) ?? ""
            #expect(!text.contains("Jane") && !text.contains("intake") && !text.contains("clients"))
            #expect(text.contains(DocumentStoreError.digest(path)))
        }
    }

    @Test("a directory or a FIFO at the path is no upload, and opening the FIFO does not hang")
    func notARegularFile() throws {
        let root = try ScratchDirectory()
        defer { root.remove() }
        try root.write("folder/a.pdf", [1])
        #expect(mkfifo(root.path + "/pipe.pdf", 0o600) == 0)
        let store = DocumentStore(DocumentStoreConfiguration(location: .directory(root.path)))
        #expect(storeError { _ = try store.open("folder") }?.code == .invalidPath)
        #expect(storeError { _ = try store.open("pipe.pdf") }?.code == .invalidPath)
    }

    @Test("a root that does not exist is `unavailable` (not mounted), and retryable")
    func missingRoot() throws {
        let store = DocumentStore(
            DocumentStoreConfiguration(location: .directory("/nonexistent-\(UUID().uuidString)")))
        let error = storeError { _ = try store.open("a.pdf") }
        #expect(error?.code == .unavailable)
        #expect(error?.isRetryable == true)
    }
}

@Suite struct DocumentStoreConfigurationTests {
    @Test("STORAGE_ROOT or STORAGE_BASE_URL, not both; none is no store; the key never prints")
    func fromEnvironment() throws {
        #expect(try DocumentStoreConfiguration.fromEnvironment([:]) == nil)
        #expect(throws: ConfigurationError.self) {
            try DocumentStoreConfiguration.fromEnvironment(["STORAGE_ROOT": "/s", "STORAGE_BASE_URL": "https://s.test"])
        }
        for bad in ["ftp://s.test/x", "https://s.test/x?token=1", "https://user:pw@s.test/x", "not a url", "https://"] {
            #expect(throws: ConfigurationError.self, "\(bad)") {
                try DocumentStoreConfiguration.fromEnvironment(["STORAGE_BASE_URL": bad])
            }
        }
        #expect(throws: ConfigurationError.self) {
            try DocumentStoreConfiguration.fromEnvironment([
                "STORAGE_BASE_URL": "https://s.test", "STORAGE_API_KEY": "two words",
            ])
        }
        let relative = try #require(try DocumentStoreConfiguration.fromEnvironment(["STORAGE_ROOT": ".data/storage"]))
        guard case .directory(let root) = relative.location else { throw CocoaError(.featureUnsupported) }
        #expect(root == FileManager.default.currentDirectoryPath + "/.data/storage")
        let remote = try #require(
            try DocumentStoreConfiguration.fromEnvironment([
                "STORAGE_BASE_URL": "https://project.supabase.test/storage/v1/object/authenticated/uploads/",
                "STORAGE_API_KEY": "service-key-123",
            ]))
        guard case .remote(let base, let key) = remote.location else { throw CocoaError(.featureUnsupported) }
        #expect(base == "https://project.supabase.test/storage/v1/object/authenticated/uploads")
        #expect(key == "service-key-123")
        #expect(!String(describing: remote).contains("service-key-123"))
    }
}

/// `Fixtures/storage-server.py` serving `root`, with `key` (if any) required as a bearer token.
final class StorageServer {
    let port: Int
    private let process: Process
    private let input: Pipe

    init(root: String, key: String?) throws {
        let script = TestEnvironment.repositoryRoot.appendingPathComponent(
            "Tests/IntegrationTests/Fixtures/storage-server.py"
        ).path
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, root]
        // The key goes in the environment, never on the command line.
        var environment = ProcessInfo.processInfo.environment
        environment["STORAGE_TEST_KEY"] = key ?? ""
        process.environment = environment
        input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        var line: [UInt8] = []
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw CocoaError(.fileReadUnknown) }
            line += chunk
        }
        port = try #require(Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    var base: String { "http://127.0.0.1:\(port)" }

    /// The requests it saw: path as sent and headers.
    func requests() throws -> [(path: String, headers: [[String]])] {
        let response = try HTTPClient().send(HTTPRequest(url: base + "/_requests"))
        let list = try #require(try response.json() as? [[String: Any]])
        return list.map { ($0["path"] as? String ?? "", $0["headers"] as? [[String]] ?? []) }
    }

    deinit {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

@Suite struct RemoteDocumentStoreTests {
    static let key = "storage-bearer-key-0123456789"

    func store(_ server: StorageServer, prefix: String = "bucket", key: String? = key, temporary: String)
        -> DocumentStore
    {
        var configuration = DocumentStoreConfiguration(
            location: .remote(baseURL: server.base + "/" + prefix, apiKey: key))
        configuration.temporaryDirectory = temporary
        // /stall sends half its body and pauses 3 s: under this limit within a second or two.
        if prefix == "stall" { configuration.stall = StallLimit(bytesPerSecond: 100_000, seconds: 1) }
        return DocumentStore(configuration)
    }

    @Test(
        "a remote file arrives whole in an unnamed temporary file; path segments are percent-encoded; the key is only a header"
    )
    func fetchesARemoteFile() throws {
        let root = try ScratchDirectory()
        let temporary = try ScratchDirectory()
        defer {
            root.remove()
            temporary.remove()
        }
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<(3 << 20)).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        try root.write("firm 1/Zoë report #1?.pdf", bytes)
        let server = try StorageServer(root: root.path, key: Self.key)
        let document = try store(server, temporary: temporary.path).open("firm 1/Zoë report #1?.pdf")
        #expect(document.size == Int64(bytes.count))
        #expect(try contents(of: document) == bytes)
        // Unlinked at once: nothing named is left behind, even while it is open.
        #expect(try temporary.entries().isEmpty)
        let seen = try #require(try server.requests().last)
        #expect(seen.path == "/bucket/firm%201/Zo%C3%AB%20report%20%231%3F.pdf")
        #expect(seen.headers.filter { $0[0] == "Authorization" }.map { $0[1] } == ["Bearer " + Self.key])
        #expect(!seen.path.contains(Self.key))
    }

    @Test(
        "404 and Supabase's 400 not-found are `missing`; 5xx and stalls are retryable `unavailable`; a wrong key is `refused`"
    )
    func remoteFailures() throws {
        let root = try ScratchDirectory()
        let temporary = try ScratchDirectory()
        defer {
            root.remove()
            temporary.remove()
        }
        try root.write("a.pdf", [1, 2, 3])
        let server = try StorageServer(root: root.path, key: Self.key)
        let cases: [(String, String?, DocumentStoreError.Code, Int?)] = [
            ("bucket", Self.key, .missing, 404), ("supabase", Self.key, .missing, 400),
            ("fail", Self.key, .unavailable, 503), ("stall", Self.key, .unavailable, nil),
            ("bucket", "wrong-key", .refused, 401), ("bucket", nil, .refused, 401),
        ]
        for (prefix, key, code, status) in cases {
            let store = store(server, prefix: prefix, key: key, temporary: temporary.path)
            let path = code == .missing ? "Jane Roe/missing.pdf" : "a.pdf"
            let error = storeError { _ = try store.open(path) }
            #expect(error?.code == code, "\(prefix) \(key ?? "no key")")
            #expect(error?.upstreamStatus == status, "\(prefix)")
            #expect(error?.isRetryable == (code == .unavailable))
            #expect(!(error.map(String.init(describing:)) ?? "").contains("Jane"))
        }
        #expect(try temporary.entries().isEmpty)
        // Paths are checked before anything is sent.
        let before = try server.requests().count
        #expect(storeError { _ = try store(server, temporary: temporary.path).open("../a.pdf") }?.code == .invalidPath)
        #expect(try server.requests().count == before)
    }
}
