import Foundation
import Smokeball

/// When and how patiently `SmokeballTokenProvider` refreshes a firm's access token.
public struct TokenPolicy: Sendable {
    /// Refresh once less than this remains of the access token (seconds; default 5 minutes,
    /// `SMOKEBALL_REFRESH_MARGIN_SECONDS`): a call that starts with a token about to lapse
    /// would otherwise fail halfway.
    public var refreshMargin: Double
    /// How long a refresh lease holds (seconds). Longer than one refresh can take with its
    /// retries (`refreshRetry`, `refreshTimeout`), so a live holder never loses it; a holder that
    /// crashed blocks the others at most this long.
    public var lease: Double
    /// The longest a caller waits for someone else's refresh before failing with
    /// `smokeball_unavailable` (seconds): past `lease`, so a crashed holder's lease can lapse and
    /// be taken over within it.
    public var maximumWait: Double
    /// The first pause between looks at a refresh in progress; each further pause is half as
    /// long again, up to `maximumPoll`.
    public var firstPoll: Double
    public var maximumPoll: Double
    /// After a failed refresh (token endpoint down), nobody asks again for this long; the delay
    /// doubles with each further consecutive failure, up to `backoffCap`.
    public var backoffBase: Double
    public var backoffCap: Double
    /// Retries inside one refresh call (5xx, time-outs, dropped connections).
    public var refreshRetry: RetryPolicy
    /// The time limit of one token request (seconds).
    public var refreshTimeout: Double

    public init(
        refreshMargin: Double = 300, lease: Double = 30, maximumWait: Double = 35, firstPoll: Double = 0.05,
        maximumPoll: Double = 0.5, backoffBase: Double = 5, backoffCap: Double = 300,
        refreshRetry: RetryPolicy = RetryPolicy(maxAttempts: 3, baseDelay: 0.25, maxDelay: 1),
        refreshTimeout: Double = 8
    ) {
        self.refreshMargin = refreshMargin
        self.lease = lease
        self.maximumWait = maximumWait
        self.firstPoll = firstPoll
        self.maximumPoll = maximumPoll
        self.backoffBase = backoffBase
        self.backoffCap = backoffCap
        self.refreshRetry = refreshRetry
        self.refreshTimeout = refreshTimeout
    }

    public static let standard = TokenPolicy()

    /// The standard policy with `SMOKEBALL_REFRESH_MARGIN_SECONDS` (0 to 3000) when set.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> TokenPolicy
    {
        var policy = TokenPolicy.standard
        let variable = "SMOKEBALL_REFRESH_MARGIN_SECONDS"
        if let text = environment[variable], !text.isEmpty {
            // Smokeball's access tokens live an hour: a margin near that would refresh on every call.
            guard let seconds = Double(text), seconds.isFinite, seconds >= 0, seconds <= 3000 else {
                throw ConfigurationError(variable: variable, problem: "must be a number of seconds from 0 to 3000")
            }
            policy.refreshMargin = seconds
        }
        return policy
    }

    /// How long nobody asks the token endpoint again after `failures` consecutive failures
    /// (1 for the first): `backoffBase`, doubling, at most `backoffCap`.
    public func backoff(afterFailures failures: Int) -> Double {
        min(backoffCap, backoffBase * pow(2, Double(min(max(failures, 1) - 1, 30))))
    }
}
