import Foundation
import PostgreSQL
import Smokeball

/// Every job kind the worker runs, built from its environment before it forks (no connection is
/// opened here): the Smokeball settings and token keys the routes get, and `SITE_URL` (or
/// `SMOKEBALL_WEBHOOK_URL`) for the webhook subscription's address, and optionally
/// `SYNC_SETTLE_SECONDS` (`SyncRecovery`). No `CASEHUG_JWT_SECRET`: the worker authenticates no one.
public enum JobKinds {
    public static func all(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> [any JobHandler]
    {
        guard let url = environment["DATABASE_URL"], !url.isEmpty else {
            throw ConfigurationError(variable: "DATABASE_URL", problem: "is not set")
        }
        let smokeball = try SmokeballConfiguration.fromEnvironment(environment)
        let vault = try TokenVault.fromEnvironment(environment)
        let webhookURL = try OAuthRedirects.webhookURL(environment)
        let database = Database(url: url, applicationName: "casehug-worker-smokeball")
        let tokens = SmokeballTokenProvider(
            database: database, vault: vault, smokeball: smokeball,
            rateLimit: smokeball.credentials.map {
                PartnerRateLimit(database: database, configuration: smokeball, clientID: $0.clientID)
            }, policy: try TokenPolicy.fromEnvironment(environment), log: .init(route: "worker"))
        let recovery = try SyncRecovery.fromEnvironment(environment)
        let syncer = MatterSyncer(
            contacts: ContactSync(recovery: recovery), matterTypes: MatterTypeResolver(database: database),
            matters: MatterSync(recovery: recovery),
            documents: MatterDocumentSync(
                database: database, store: try MatterDocumentSync.storeConfiguration(environment),
                settleTime: recovery.settleSeconds))
        return [
            EnsureWebhookSubscriptionJob(
                tokens: tokens,
                subscriptions: WebhookSubscriptions(
                    database: database, vault: vault, notificationURL: webhookURL)),
            SyncMatterJob(tokens: tokens, syncer: syncer),
            BulkSyncJob(tokens: tokens, syncer: syncer),
            PullMattersJob(tokens: tokens),
            // Automatic sync (migration 033): a linked client's changes pushed to its contact.
            PushContactJob(tokens: tokens),
            WebhookEventJob(tokens: tokens, matterTypes: MatterTypeResolver(database: database)),
            ImportMattersJob(tokens: tokens, matterTypes: MatterTypeResolver(database: database)),
            // Nightly, scheduled by the worker itself at RECONCILIATION_TIME (docs/inbound.md).
            ReconcileFirmJob(
                tokens: tokens,
                subscriptions: WebhookSubscriptions(database: database, vault: vault, notificationURL: webhookURL),
                time: try ReconciliationTime.fromEnvironment(environment)),
        ]
    }
}
