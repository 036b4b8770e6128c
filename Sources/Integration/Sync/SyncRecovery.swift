import Basics
import Foundation
import PostgreSQL
import Smokeball

/// How a re-run treats a create that an earlier run may have sent (an open intent whose result
/// it cannot find): Smokeball processes writes later (202), so a listing may not show it yet.
public struct SyncRecovery: Sendable, Equatable {
    /// How old an open intent must be before "not in the listing" means "never made". nil: twice
    /// the client's request timeout (a request older than that has ended one way or the other).
    public var settleSeconds: Double?
    /// How far before the intent the `UpdatedSince` listing starts (clocks differ).
    public var listingMarginSeconds: Double

    public init(settleSeconds: Double? = nil, listingMarginSeconds: Double = 300) {
        self.settleSeconds = settleSeconds
        self.listingMarginSeconds = listingMarginSeconds
    }

    public static let standard = SyncRecovery()

    /// The standard recovery with `SYNC_SETTLE_SECONDS` (0 to 3600) when set.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> SyncRecovery
    {
        var recovery = SyncRecovery.standard
        let variable = "SYNC_SETTLE_SECONDS"
        if let text = environment[variable], !text.isEmpty {
            guard let seconds = Double(text), seconds.isFinite, seconds >= 0, seconds <= 3600 else {
                throw ConfigurationError(variable: variable, problem: "must be a number of seconds from 0 to 3600")
            }
            recovery.settleSeconds = seconds
        }
        return recovery
    }

    func settle(_ client: SmokeballClient) -> Double { settleSeconds ?? 2 * client.requestTimeout }

    /// `UpdatedSince` for a listing that must include whatever the intent's request made.
    func updatedSince(_ intent: SyncIntent) -> String {
        String(DotNetTicks.from(intent.createdAt.addingTimeInterval(-listingMarginSeconds)))
    }

    /// The intent's age by the database's clock (the one that stamped it).
    static func age(_ connection: Connection, _ intent: SyncIntent) throws -> Double {
        try connection.execute(
            "SELECT extract(epoch FROM now() - created_at)::float8 AS age FROM smokeball_sync_intents WHERE id = $1",
            [intent.id]
        ).single().double("age")
    }

    /// What a re-run says while an earlier create may still be processed.
    static let waiting = JobError(
        JobError.Code(rawValue: "awaiting_smokeball"), "waiting for Smokeball to process an earlier request",
        retryable: true)

    /// Whether a failed create certainly made nothing (Smokeball refused it before processing),
    /// so its intent may be abandoned; a time-out, a dropped connection or a 5xx may have been
    /// processed, and the intent stays open for the re-run to look for what it made.
    static func madeNothing(_ error: any Error) -> Bool {
        guard let error = error as? SmokeballError else { return false }
        switch error.code {
        case .rejected, .notFound, .unauthorized, .rateLimited, .notConfigured: return true
        default: return false
        }
    }

    /// Sends a create under its open `intent`. When it fails in a way that certainly made nothing,
    /// the intent is abandoned (a later run may begin a new one); any other failure leaves it open.
    static func sendCreate<T>(
        under intent: SyncIntent, database: Database, scope: any TenantScope, _ send: () throws -> T
    ) throws -> T {
        do {
            return try send()
        } catch {
            if madeNothing(error) {
                try database.transaction { connection in
                    _ = try scope.enter(connection)
                    try SyncIntents.abandon(connection, intent.id)
                }
            }
            throw error
        }
    }
}

/// Turns what a sync step throws into a `JobError` people can read: no PHI, no upstream body;
/// whether another attempt could help.
enum SyncFailure {
    static let smokeball = JobError.Code(rawValue: "smokeball")
    static let notConnected = JobError.Code(rawValue: "not_connected")
    static let notFound = JobError.Code(rawValue: "not_found")

    static func jobError(_ error: any Error, doing what: String) -> any Error {
        switch error {
        case let error as JobError:
            return error
        case let error as SmokeballTokenError:
            switch error.code {
            case .notConnected:
                return JobError(notConnected, "Smokeball is not connected for this firm", retryable: false)
            case .needsReconnect:
                return JobError(
                    notConnected, "Smokeball must be reconnected by a firm administrator", retryable: false)
            case .notConfigured:
                return JobError(notConnected, "the server has no Smokeball credentials", retryable: false)
            case .unavailable:
                return JobError(smokeball, "Smokeball's sign-in service is unavailable; will retry", retryable: true)
            }
        case let error as SmokeballError:
            let status = error.upstreamStatus.map { " (HTTP \($0))" } ?? ""
            switch error.code {
            case .unavailable, .timedOut, .connectionFailed, .rateLimited, .invalidResponse:
                let why =
                    switch error.code {
                    case .timedOut: "timed out"
                    case .connectionFailed: "could not be reached"
                    case .rateLimited: "kept answering 429 Too Many Requests"
                    case .invalidResponse: "answered something unreadable"
                    default: "is unavailable"
                    }
                return JobError(smokeball, "Smokeball \(why)\(status) while \(what)", retryable: true)
            case .unauthorized:
                return JobError(
                    smokeball, "Smokeball refused the firm's access\(status) while \(what); reconnect Smokeball",
                    retryable: false)
            case .notConfigured:
                return JobError(notConnected, "the server has no Smokeball credentials", retryable: false)
            default:
                return JobError(smokeball, "Smokeball refused the request\(status) while \(what)", retryable: false)
            }
        default:
            return error
        }
    }
}
