import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The listening socket a supervisor and its workers share. With `--socket` it is a Unix socket
/// this process created; it remembers which file that was (device and inode, read right after
/// bind) so that on exit it removes its own socket and never one another instance has since
/// put at the same path.
struct Listener {
    let fd: Int32
    let path: String?
    let device: UInt
    let inode: UInt

    /// Opens the listener. An existing socket file at the path is replaced only when nothing
    /// accepts on it (a stale file left by a crash); a live one means another instance serves
    /// there, and this one refuses to start rather than steal its path.
    static func open(_ options: ServerOptions) throws(ServerOptionsError) -> Listener {
        guard let path = options.socketPath else {
            // spawn-fcgi's fd 0. Non-blocking for the same reason as below.
            try setNonBlocking(0)
            return Listener(fd: 0, path: nil, device: 0, inode: 0)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else {
            throw ServerOptionsError(message: "socket path is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw ServerOptionsError(message: "socket path exists and is not a socket")
            }
            switch probe(&address) {
            case 0, EAGAIN, EINPROGRESS:
                throw ServerOptionsError(message: "socket in use by another instance")
            case ECONNREFUSED:
                unlink(path)
            case ENOENT:
                break
            case let error:
                throw ServerOptionsError(message: "cannot check the existing socket (errno \(error))")
            }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServerOptionsError(message: "cannot create socket (errno \(errno))") }
        // The socket is created 0600 so nothing can connect before its group and mode are set.
        let previousMask = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        let bindError = errno
        umask(previousMask)
        guard bound == 0 else {
            close(fd)
            // Another instance bound the path between the probe and here.
            if bindError == EADDRINUSE { throw ServerOptionsError(message: "socket in use by another instance") }
            throw ServerOptionsError(message: "cannot bind socket (errno \(bindError))")
        }
        guard lstat(path, &info) == 0 else {
            close(fd)
            throw ServerOptionsError(message: "cannot stat the new socket (errno \(errno))")
        }
        let listener = Listener(fd: fd, path: path, device: UInt(info.st_dev), inode: UInt(info.st_ino))
        do throws(ServerOptionsError) {
            guard listen(fd, Int32(options.backlog)) == 0 else {
                throw ServerOptionsError(message: "cannot listen on socket (errno \(errno))")
            }
            // Root may hand the socket to any group; anyone else only to a group they belong to,
            // and a failure is an error rather than a socket nginx silently cannot reach.
            if let groupName = options.socketGroup {
                guard let group = getgrnam(groupName) else {
                    throw ServerOptionsError(message: "unknown socket group \(groupName)")
                }
                guard chown(path, uid_t.max, group.pointee.gr_gid) == 0, chmod(path, 0o660) == 0 else {
                    throw ServerOptionsError(message: "cannot set socket group (errno \(errno))")
                }
            }
            try setNonBlocking(fd)
        } catch {
            listener.removeSocketIfOurs()
            close(fd)
            throw error
        }
        return listener
    }

    /// Workers wait for a connection with ppoll and then accept; the socket must not block, or a
    /// worker that loses the race for a connection to another worker would sit in accept(2)
    /// with its stop signals masked.
    private static func setNonBlocking(_ fd: Int32) throws(ServerOptionsError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            throw ServerOptionsError(message: "cannot make the socket non-blocking (errno \(errno))")
        }
    }

    /// Connects to the socket file without blocking: 0 (or EAGAIN, a full backlog) means a live
    /// listener, ECONNREFUSED a stale file nobody listens on.
    private static func probe(_ address: inout sockaddr_un) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return connected == 0 ? 0 : errno
    }

    /// Unlinks the socket file only while it is still the one this process bound.
    func removeSocketIfOurs() {
        guard let path else { return }
        var info = stat()
        guard lstat(path, &info) == 0, UInt(info.st_dev) == device, UInt(info.st_ino) == inode else { return }
        unlink(path)
    }
}
