import Foundation
import PostgreSQL

/// Delivers recorded events to webhook subscriptions (`smokeball-sandbox deliver`).
/// Placeholder until webhook delivery lands.
public enum WebhookDispatcher {
    public static func run(configuration: SandboxConfiguration) -> Never {
        FileHandle.standardError.write(Data("webhook delivery is not implemented yet\n".utf8))
        exit(2)
    }
}
