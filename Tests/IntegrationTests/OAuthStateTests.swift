import Cryptography
import Foundation
import PostgreSQL
import Testing

@testable import Integration

/// The OAuth states behind connect and callback, at the database: created only by a firm admin,
/// at most 20 live per user, consumed once, and found by the state itself before any tenant.
@Suite struct OAuthStateTests {
    static func hash() -> [UInt8] { SHA256.hash(SecureRandom.bytes(32)) }

    /// Creates a state as `user`; returns when it expires.
    @discardableResult
    static func create(_ app: Connection, user: UUID, hash: [UInt8], region: String = "US") throws -> Date {
        try app.transaction { connection in
            try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [user])
            return try connection.execute(
                "SELECT app_create_oauth_state($1, $2, $3) AS expires",
                [hash, [UInt8](repeating: 7, count: 40), region]
            ).single().date("expires")
        }
    }

    struct Consumed {
        let firm: UUID
        let user: UUID
        let region: String
        let tenant: UUID?
    }

    /// Consumes `hash` in a transaction that authenticated nobody; nil when nothing came back.
    static func consume(_ app: Connection, hash: [UInt8]) throws -> Consumed? {
        try app.transaction { connection in
            guard
                let row = try connection.execute(
                    "SELECT firm_id, user_id, code_verifier, region FROM app_consume_oauth_state($1)", [hash]
                ).first
            else { return nil }
            #expect(try row.bytes("code_verifier") == [UInt8](repeating: 7, count: 40))
            let tenant = try connection.execute("SELECT app_current_firm() AS firm").single().optionalUUID("firm")
            return Consumed(
                firm: try row.uuid("firm_id"), user: try row.uuid("user_id"), region: try row.string("region"),
                tenant: tenant)
        }
    }

    @Test func aFirmAdminCreatesAStateValidTenMinutesThatIsConsumedOnceAndSetsTheTenant() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let firm = try seed.firmWithUsers("A")
            let app = try Connection(url: database.appURL)
            let hash = Self.hash()
            let expires = try Self.create(app, user: firm.admin, hash: hash, region: "AU")
            #expect(abs(expires.timeIntervalSinceNow - 600) < 60)
            let consumed = try #require(try Self.consume(app, hash: hash))
            #expect(consumed.firm == firm.id && consumed.user == firm.admin && consumed.region == "AU")
            #expect(consumed.tenant == firm.id)
            #expect(try Self.consume(app, hash: hash) == nil, "a state is used once")
            #expect(try Self.consume(app, hash: Self.hash()) == nil, "an unknown state finds nothing")
        }
    }

    @Test func anExpiredStateOrOneWhoseUserIsNoLongerAnAdminFindsNothing() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let firm = try seed.firmWithUsers("A")
            let app = try Connection(url: database.appURL)
            let expired = Self.hash()
            let demoted = Self.hash()
            try Self.create(app, user: firm.admin, hash: expired)
            try Self.create(app, user: firm.admin, hash: demoted)
            try seed.connection.execute(
                "UPDATE oauth_states SET expires_at = now() - interval '1 second' WHERE state_hash = $1", [expired])
            #expect(try Self.consume(app, hash: expired) == nil)
            try seed.connection.execute("UPDATE users SET role = 'standard' WHERE id = $1", [firm.admin])
            #expect(try Self.consume(app, hash: demoted) == nil)
            // The state is spent all the same: restoring the role does not revive it.
            try seed.connection.execute("UPDATE users SET role = 'firm_admin' WHERE id = $1", [firm.admin])
            #expect(try Self.consume(app, hash: demoted) == nil)
        }
    }

    @Test func onlyAFirmAdminMayCreateAStateAndOnlyAFullLengthHashIsStored() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let firm = try seed.firmWithUsers("A")
            let app = try Connection(url: database.appURL)
            let refused = #expect(throws: DatabaseError.self) {
                try Self.create(app, user: firm.standard, hash: Self.hash())
            }
            #expect(refused?.sqlState == "42501")
            let short = #expect(throws: DatabaseError.self) {
                try Self.create(app, user: firm.admin, hash: Array(Self.hash().prefix(31)))
            }
            #expect(short?.sqlState == "23514")
            let region = #expect(throws: DatabaseError.self) {
                try Self.create(app, user: firm.admin, hash: Self.hash(), region: "NZ")
            }
            #expect(region?.sqlState == "23514")
            #expect(try seed.connection.execute("SELECT count(*) AS n FROM oauth_states").single().int("n") == 0)
        }
    }

    @Test func aUserKeepsAtMostTwentyLiveStatesTheNewest() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let firm = try seed.firmWithUsers("A")
            let other = try seed.user(firm: firm.id, role: "firm_admin")
            let app = try Connection(url: database.appURL)
            var hashes: [[UInt8]] = []
            for _ in 0..<25 {
                let hash = Self.hash()
                hashes.append(hash)
                try Self.create(app, user: firm.admin, hash: hash)
            }
            try Self.create(app, user: other, hash: Self.hash())
            let live = try seed.connection.execute(
                "SELECT count(*) AS n FROM oauth_states WHERE user_id = $1 AND consumed_at IS NULL", [firm.admin]
            ).single().int("n")
            #expect(live == 20)
            #expect(try Self.consume(app, hash: hashes[4]) == nil, "the oldest made room")
            #expect(try Self.consume(app, hash: hashes[5]) != nil)
            #expect(try Self.consume(app, hash: hashes[24]) != nil)
            let others = try seed.connection.execute(
                "SELECT count(*) AS n FROM oauth_states WHERE user_id = $1", [other]
            ).single().int("n")
            #expect(others == 1, "another user's states are not touched")
        }
    }

    @Test func anotherFirmSeesNoStateUnlessItPresentsTheStateItself() throws {
        try ServiceDatabase.with { database in
            let seed = try Seed(database)
            let firmA = try seed.firmWithUsers("A")
            let firmB = try seed.firmWithUsers("B")
            let app = try Connection(url: database.appURL)
            try Self.create(app, user: firmA.admin, hash: Self.hash())
            try app.transaction { connection in
                try connection.execute("SELECT * FROM app_authenticate($1::uuid)", [firmB.admin])
                #expect(try connection.execute("SELECT count(*) AS n FROM oauth_states").single().int("n") == 0)
                let spent = try connection.execute(
                    "UPDATE oauth_states SET consumed_at = now() WHERE consumed_at IS NULL")
                #expect(spent.affectedRows == 0)
            }
        }
    }
}
