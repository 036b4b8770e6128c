import Foundation
import PostgreSQL

#if canImport(Glibc)
    import Glibc
#endif

/// Whose work a call is: a user's click, or work nobody is waiting for (sync, retries, sweeps).
public enum SmokeballLane: Sendable, Equatable {
    case interactive
    case background
}

/// The partner's one Smokeball budget, shared by every process on every host through one row
/// per client id in PostgreSQL (`smokeball_take_token`, migration 026). Every API call takes a
/// token here first; uploads to pre-signed URLs do not (they are not Smokeball's API).
///
/// Two lanes without a queue: background work may take a token only when the bucket holds at
/// least two, so it never takes the last one. Whatever background does, a token is left for
/// the next click, which therefore waits at most the one token interval it takes other
/// interactive work to use it up, never behind background work.
///
/// The bucket holds one token less than the partner's burst (when the burst allows): taking a
/// token here and arriving at Smokeball's gateway are a network hop apart, and that token of
/// slack absorbs the jitter (up to one token interval) so the gateway never sees two requests
/// closer together than the bucket let them go.
///
/// Uses `database` between HTTP calls, never inside a transaction: do not call the client from
/// inside `database.transaction` (no lock is ever held across an HTTP call).
public final class PartnerRateLimit: Sendable {
    public let database: Database
    public let clientID: String
    public let ratePerSecond: Double
    /// Tokens the bucket holds at most (the burst less the jitter slack).
    public let capacity: Double
    /// The longest a call waits for a token before giving up with `rateLimited`.
    public let maximumWait: Double

    public init(database: Database, clientID: String, ratePerSecond: Double, burst: Double, maximumWait: Double = 30) {
        self.database = database
        self.clientID = clientID
        self.ratePerSecond = ratePerSecond
        capacity = burst >= 2 ? burst - 1 : max(1, burst)
        self.maximumWait = maximumWait
    }

    public convenience init(database: Database, configuration: SmokeballConfiguration, clientID: String) {
        self.init(
            database: database, clientID: clientID, ratePerSecond: configuration.ratePerSecond,
            burst: configuration.burst)
    }

    /// Takes one token, or says how long to wait before asking again (seconds; 0 when taken).
    public func tryTake(_ lane: SmokeballLane) throws -> Double {
        try database.withConnection { connection in
            try connection.execute(
                "SELECT smokeball_take_token($1, $2, $3, $4) AS wait",
                [clientID, ratePerSecond, capacity, lane == .interactive]
            ).single().double("wait")
        }
    }

    /// Waits for and takes one token. Throws `rateLimited` when none comes within `maximumWait`.
    public func acquire(_ lane: SmokeballLane) throws {
        let deadline = Date().addingTimeInterval(maximumWait)
        while true {
            let wait = try tryTake(lane)
            if wait <= 0 { return }
            guard Date().addingTimeInterval(wait) <= deadline else { throw SmokeballError(.rateLimited) }
            // The wait is when the token is due; a little jitter keeps processes that were told
            // the same moment from all asking at once.
            Self.sleep(wait + Double.random(in: 0...0.005))
        }
    }

    /// Counts a 429 from Smokeball on the bucket's row (`casehug-admin metrics`). Best effort: a
    /// count that cannot be written must not fail the call.
    public func recordRateLimited() {
        _ = try? database.withConnection { connection in
            try connection.execute("SELECT smokeball_record_rate_limited($1)", [clientID])
        }
    }

    static func sleep(_ seconds: Double) {
        guard seconds > 0 else { return }
        usleep(useconds_t(min(seconds, 60) * 1_000_000))
    }
}
