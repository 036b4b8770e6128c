import CLibPQ
import Foundation

/// One `NOTIFY` the server delivered to this session.
public struct Notification: Sendable, Equatable {
    public let channel: String
    public let payload: String
    /// The backend process that sent it.
    public let senderProcessID: Int32
}

/// LISTEN/NOTIFY on a dedicated connection: `listen`, then wait with `waitForNotification` (or,
/// for a caller that must also wake on something else, poll `socketDescriptor` itself and call
/// `notifications()`). Notifications arrive only between transactions, so the connection that
/// listens should run nothing else that keeps a transaction open.
extension Connection {
    /// Subscribes this session to `channel` (an identifier: lower-case letters, digits and `_`).
    public func listen(_ channel: String) throws(DatabaseError) {
        guard Self.isChannelName(channel) else { throw DatabaseError(.invalidParameter, name: "channel") }
        // LISTEN takes an identifier, which cannot be a bound parameter; the name is checked above.
        try execute("LISTEN \(channel)")
    }

    public func unlisten(_ channel: String) throws(DatabaseError) {
        guard Self.isChannelName(channel) else { throw DatabaseError(.invalidParameter, name: "channel") }
        try execute("UNLISTEN \(channel)")
    }

    /// The socket to poll for readability; a readable socket means `notifications()` has something
    /// to read (or the connection broke, which it then reports).
    public var socketDescriptor: Int32 { PQsocket(handle) }

    /// Reads whatever the server has sent and returns the notifications received so far, oldest
    /// first, without waiting. Throws `.connectionLost` when the connection broke.
    public func notifications() throws(DatabaseError) -> [Notification] {
        try checkProcess()
        guard PQconsumeInput(handle) == 1 else {
            let message = PQerrorMessage(handle).map { String(cString: $0) }
            throw DatabaseError(.connectionLost, serverMessage: message.map(Self.firstLine))
        }
        return drainNotifications()
    }

    /// Waits up to `timeout` seconds for a notification and returns the first one (any others
    /// stay queued for the next call), or nil when the time passed without one. Sleeps in `poll`,
    /// so a waiting process uses no CPU.
    public func waitForNotification(timeout: TimeInterval) throws(DatabaseError) -> Notification? {
        try checkProcess()
        let deadline = Date().addingTimeInterval(max(0, timeout))
        while true {
            if let queued = pendingNotifications.first {
                pendingNotifications.removeFirst()
                return queued
            }
            pendingNotifications = try notifications()
            if !pendingNotifications.isEmpty { continue }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return nil }
            var target = pollfd(fd: socketDescriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(min(remaining * 1000, Double(Int32.max)).rounded(.up))
            let ready = poll(&target, 1, milliseconds)
            if ready < 0 && errno != EINTR { throw DatabaseError(.connectionLost) }
        }
    }

    /// Takes every notification libpq has parsed, freeing each as libpq requires.
    private func drainNotifications() -> [Notification] {
        var received = pendingNotifications
        pendingNotifications = []
        while let notice = PQnotifies(handle) {
            received.append(
                Notification(
                    channel: String(cString: notice.pointee.relname),
                    payload: notice.pointee.extra.map { String(cString: $0) } ?? "",
                    senderProcessID: notice.pointee.be_pid))
            PQfreemem(notice)
        }
        return received
    }

    static func isChannelName(_ name: String) -> Bool {
        name.range(of: "^[a-z_][a-z0-9_]{0,62}$", options: .regularExpression) != nil
    }
}
