import Foundation
import PostgreSQL
import Testing

@Suite struct NotificationTests {
    @Test func aNotificationSentAfterListeningArrivesWithItsChannelAndPayload() throws {
        try TestDatabase.with { database in
            let listener = try Connection(url: database.url)
            try listener.listen("jobs_test")
            let sender = try Connection(url: database.url)
            try sender.execute("SELECT pg_notify('jobs_test', $1)", ["hello"])
            let received = try #require(try listener.waitForNotification(timeout: 10))
            #expect(received.channel == "jobs_test")
            #expect(received.payload == "hello")
            #expect(received.senderProcessID > 0)
        }
    }

    @Test func waitingWithoutANotificationReturnsNilAfterTheTimeout() throws {
        try TestDatabase.with { database in
            let listener = try Connection(url: database.url)
            try listener.listen("quiet_channel")
            #expect(try listener.waitForNotification(timeout: 0.2) == nil)
        }
    }

    @Test func severalNotificationsAreHandedOutOneByOneInOrder() throws {
        try TestDatabase.with { database in
            let listener = try Connection(url: database.url)
            try listener.listen("ordered")
            let sender = try Connection(url: database.url)
            for index in 1...3 { try sender.execute("SELECT pg_notify('ordered', $1)", [String(index)]) }
            var payloads: [String] = []
            while payloads.count < 3, let next = try listener.waitForNotification(timeout: 10) {
                payloads.append(next.payload)
            }
            #expect(payloads == ["1", "2", "3"])
            #expect(try listener.waitForNotification(timeout: 0) == nil)
        }
    }

    @Test func aNotificationInARolledBackTransactionIsNeverDelivered() throws {
        try TestDatabase.with { database in
            let listener = try Connection(url: database.url)
            try listener.listen("rolled_back")
            let sender = try Connection(url: database.url)
            struct Abandon: Error {}
            _ = try? sender.transaction { connection in
                try connection.execute("SELECT pg_notify('rolled_back', 'never')")
                throw Abandon()
            }
            try sender.execute("SELECT pg_notify('rolled_back', 'committed')")
            #expect(try listener.waitForNotification(timeout: 10)?.payload == "committed")
        }
    }

    @Test func notificationsReadDuringAStatementAreNotLost() throws {
        try TestDatabase.with { database in
            let listener = try Connection(url: database.url)
            try listener.listen("during_query")
            let sender = try Connection(url: database.url)
            try sender.execute("SELECT pg_notify('during_query', 'early')")
            // libpq parses the notification while reading this statement's answer.
            usleep(100_000)
            try listener.execute("SELECT 1")
            #expect(try listener.notifications().map(\.payload) == ["early"])
        }
    }

    @Test func aChannelNameThatIsNotAnIdentifierIsRefused() throws {
        try TestDatabase.with { database in
            let listener = try Connection(url: database.url)
            #expect(throws: DatabaseError.self) { try listener.listen("x; DROP TABLE t") }
        }
    }

    @Test func aBrokenConnectionIsReportedWhileWaiting() throws {
        try TestDatabase.with { database in
            let listener = try Connection(url: database.url)
            try listener.listen("doomed")
            try database.takeOffline()
            defer { try? database.bringOnline() }
            var thrown: DatabaseError?
            do {
                _ = try listener.waitForNotification(timeout: 10)
            } catch {
                thrown = error as? DatabaseError
            }
            #expect(thrown?.kind == .connectionLost)
            #expect(!listener.isConnected)
        }
    }
}
