import Basics
import Cryptography
import Foundation
import HTTPClient

/// Where CaseHug keeps the bytes of its uploads (`uploads.storage_path`): a local directory
/// (`STORAGE_ROOT`) or an HTTP store (`STORAGE_BASE_URL`, e.g. Supabase Storage or any signed
/// gateway, with an optional bearer key in `STORAGE_API_KEY`). Printing it shows no key.
public struct DocumentStoreConfiguration: Sendable, CustomStringConvertible {
    public enum Location: Sendable {
        /// An absolute directory; storage paths resolve strictly inside it.
        case directory(String)
        /// `<baseURL>/<storage path>` answers the bytes; `apiKey` goes in `Authorization: Bearer`.
        case remote(baseURL: String, apiKey: String?)
    }

    public var location: Location
    /// Whole-transfer timeout of a remote read, sized for big files; `stall` ends a stuck one sooner.
    public var timeout: Double = 3600
    public var connectTimeout: Double = 10
    public var stall = StallLimit.standard
    /// Where a remote read is written (an unnamed file: unlinked as soon as it is created).
    public var temporaryDirectory = FileManager.default.temporaryDirectory.path

    public init(location: Location) {
        self.location = location
    }

    /// `STORAGE_ROOT` or `STORAGE_BASE_URL` (with `STORAGE_API_KEY`); nil when neither is set,
    /// an error when both are or a value is malformed. A relative `STORAGE_ROOT` is taken from
    /// the current directory.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> DocumentStoreConfiguration?
    {
        let root = environment["STORAGE_ROOT"].flatMap { $0.isEmpty ? nil : $0 }
        let base = environment["STORAGE_BASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
        let key = environment["STORAGE_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        switch (root, base) {
        case (nil, nil):
            return nil
        case (.some, .some):
            throw ConfigurationError(variable: "STORAGE_ROOT", problem: "and STORAGE_BASE_URL are both set: set one")
        case (let root?, nil):
            let absolute =
                root.hasPrefix("/")
                ? root : FileManager.default.currentDirectoryPath + "/" + root
            return DocumentStoreConfiguration(location: .directory(absolute))
        case (nil, let base?):
            var trimmed = base
            while trimmed.hasSuffix("/") { trimmed.removeLast() }
            guard let components = URLComponents(string: trimmed),
                components.scheme == "https" || components.scheme == "http", components.host?.isEmpty == false,
                components.query == nil, components.fragment == nil, components.user == nil
            else {
                throw ConfigurationError(
                    variable: "STORAGE_BASE_URL", problem: "must be an http(s) URL without query or credentials")
            }
            if let key, key.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) {
                throw ConfigurationError(variable: "STORAGE_API_KEY", problem: "must be one printable token")
            }
            return DocumentStoreConfiguration(location: .remote(baseURL: trimmed, apiKey: key))
        }
    }

    public var description: String {
        switch location {
        case .directory(let root): "DocumentStoreConfiguration(directory: \(root))"
        case .remote(let base, let key):
            "DocumentStoreConfiguration(remote: \(base), key: \(key == nil ? "none" : "<redacted>"))"
        }
    }
}

/// An upload's bytes, open for reading from offset 0 to `size`: the store's own file (local
/// store) or an unnamed temporary copy (remote store), which disappears when this is released.
public final class StoredDocument {
    /// Closed when this is released.
    public let file: FileHandle
    public let size: Int64

    init(file: FileHandle, size: Int64) {
        self.file = file
        self.size = size
    }
}

/// Why an upload's bytes could not be had. `description` names the code and a digest of the
/// storage path, never the path (it may hold a client's name).
public struct DocumentStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// No file at that path (404): this document fails, the others go on.
        case missing
        /// A path that is absolute, has `.`/`..`/empty segments, or passes through a symlink (400).
        case invalidPath = "invalid_path"
        /// The store is down, slow or unreachable, or the local copy could not be written (503):
        /// worth trying again later.
        case unavailable
        /// The store refused the request (a wrong key, no permission: 502); fix the settings.
        case refused
    }

    public var code: Code
    /// Short SHA-256 hex of the storage path: enough to find the upload, and no PHI.
    public var pathDigest: String
    /// The remote store's status, when it answered.
    public var upstreamStatus: Int?

    public init(_ code: Code, storagePath: String, upstreamStatus: Int? = nil) {
        self.code = code
        pathDigest = Self.digest(storagePath)
        self.upstreamStatus = upstreamStatus
    }

    public var httpStatus: Int {
        switch code {
        case .missing: 404
        case .invalidPath: 400
        case .unavailable: 503
        case .refused: 502
        }
    }

    public var isRetryable: Bool { code == .unavailable }

    public var description: String {
        "DocumentStoreError.\(code.rawValue) (path sha256:\(pathDigest)"
            + (upstreamStatus.map { ", HTTP \($0))" } ?? ")")
    }

    /// What logs name a storage path by.
    public static func digest(_ storagePath: String) -> String {
        String(Hex.encode(SHA256.hash(Array(storagePath.utf8))).prefix(16))
    }
}

/// Reads uploads' bytes by `storage_path` with bounded memory: a local file is handed over open,
/// a remote one is streamed to an unnamed temporary file. Not `Sendable`, like the `HTTPClient`
/// it may own: one per process or thread.
public final class DocumentStore {
    public let configuration: DocumentStoreConfiguration
    private var http: HTTPClient?

    public init(_ configuration: DocumentStoreConfiguration) {
        self.configuration = configuration
    }

    /// The bytes of the upload at `storagePath`.
    public func open(_ storagePath: String) throws(DocumentStoreError) -> StoredDocument {
        guard let segments = Self.segments(of: storagePath) else {
            throw DocumentStoreError(.invalidPath, storagePath: storagePath)
        }
        do {
            switch configuration.location {
            case .directory(let root): return try Self.openLocal(root: root, segments: segments)
            case .remote(let base, let key): return try fetch(base: base, key: key, segments: segments)
            }
        } catch {
            throw DocumentStoreError(error.code, storagePath: storagePath, upstreamStatus: error.status)
        }
    }

    /// The path's segments, or nil when it is empty, absolute, has empty, `.` or `..` segments,
    /// or holds NUL, a backslash or a control character.
    static func segments(of storagePath: String) -> [String]? {
        guard !storagePath.isEmpty, storagePath.utf8.count <= 1024,
            !storagePath.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "\\") })
        else { return nil }
        let segments = storagePath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return nil }
        return segments
    }

    /// A failure before it is tied to its path.
    struct Failure: Error {
        var code: DocumentStoreError.Code
        var status: Int?
    }

    // MARK: Local

    /// Walks from the root one segment at a time with `O_NOFOLLOW`, so no symlink (inside the
    /// root or out of it) and no rename during the walk can lead outside the root.
    static func openLocal(root: String, segments: [String]) throws(Failure) -> StoredDocument {
        var directory = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        // The root itself missing means the store is not mounted, not that the file is gone.
        guard directory >= 0 else { throw Failure(code: .unavailable) }
        for (index, segment) in segments.enumerated() {
            let last = index == segments.count - 1
            // O_NONBLOCK: opening a FIFO planted in the store must not hang the worker.
            let flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (last ? O_NONBLOCK : O_DIRECTORY)
            let next = openat(directory, segment, flags)
            let error = errno
            if next < 0 {
                let code = classify(error, directory: directory, segment: segment)
                close(directory)
                throw Failure(code: code)
            }
            close(directory)
            directory = next
        }
        let file = FileHandle(fileDescriptor: directory, closeOnDealloc: true)
        var info = stat()
        guard fstat(directory, &info) == 0 else { throw Failure(code: .unavailable) }
        // A directory or a device at the path is not an upload.
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw Failure(code: .invalidPath) }
        return StoredDocument(file: file, size: Int64(info.st_size))
    }

    /// An `openat` failure: a symlink is an invalid path (whatever errno O_NOFOLLOW chose to
    /// report), an absent entry is missing, a permission problem is refused.
    private static func classify(_ error: Int32, directory: Int32, segment: String) -> DocumentStoreError.Code {
        var info = stat()
        if fstatat(directory, segment, &info, AT_SYMLINK_NOFOLLOW) == 0, (info.st_mode & S_IFMT) == S_IFLNK {
            return .invalidPath
        }
        switch error {
        case ENOENT, ENOTDIR: return .missing
        case ELOOP: return .invalidPath
        case EACCES, EPERM: return .refused
        default: return .unavailable
        }
    }

    // MARK: Remote

    /// GET `<base>/<segments, percent-encoded>` into an unnamed temporary file. The key travels
    /// only in the Authorization header.
    private func fetch(base: String, key: String?, segments: [String]) throws(Failure) -> StoredDocument {
        let url = base + "/" + segments.map { PercentEncoding.encode($0) }.joined(separator: "/")
        let file = try temporaryFile()
        var headers: [(String, String)] = []
        if let key { headers.append(("Authorization", "Bearer " + key)) }
        let request = HTTPRequest(
            url: url, headers: headers, timeout: configuration.timeout, connectTimeout: configuration.connectTimeout)
        let response: HTTPResponse
        do {
            if http == nil { http = try HTTPClient(maxResponseBytes: 64 << 10) }
            guard let http else { throw Failure(code: .unavailable) }
            response = try http.download(request, to: file, stall: configuration.stall)
        } catch let error as HTTPClientError {
            throw Failure(code: error.code == .invalidURL || error.code == .invalidRequest ? .refused : .unavailable)
        } catch {
            throw Failure(code: .unavailable)
        }
        switch response.status {
        case 200..<300:
            var info = stat()
            guard fstat(file.fileDescriptor, &info) == 0 else { throw Failure(code: .unavailable) }
            return StoredDocument(file: file, size: Int64(info.st_size))
        case 404: throw Failure(code: .missing, status: 404)
        case 400 where Self.isSupabaseNotFound(response.body): throw Failure(code: .missing, status: 400)
        case 408, 429, 500...599: throw Failure(code: .unavailable, status: response.status)
        default: throw Failure(code: .refused, status: response.status)
        }
    }

    /// Supabase Storage answers a missing object with 400 and `{"statusCode": "404", ...}`.
    private static func isSupabaseNotFound(_ body: [UInt8]) -> Bool {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            return false
        }
        return (object["statusCode"] as? String) == "404" || (object["statusCode"] as? Int) == 404
    }

    /// A file in the temporary directory that is unlinked at once: only the descriptor reaches
    /// it, and it is gone when that closes, even after a crash.
    private func temporaryFile() throws(Failure) -> FileHandle {
        var template = Array((configuration.temporaryDirectory + "/casehug-document-XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw Failure(code: .unavailable) }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        return FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }
}
