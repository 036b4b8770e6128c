import Foundation

/// The webhook keys this process has read and opened, by Smokeball account, so that a delivery
/// costs one database round trip and no unsealing. An entry is only a guess: the transaction that
/// stores a delivery binds its firm only while the key that matched is still the connection's,
/// sealed as the process read it (`app_webhook_bind`, migration 042), so a reconnect, a
/// disconnect or keys sealed anew take effect at the next delivery, never later. Bounded: when
/// full, the least recently used half goes.
final class WebhookKeyCache: @unchecked Sendable {
    struct Key: Sendable {
        /// As stored: what `app_webhook_bind` compares.
        let sealed: [UInt8]
        let key: [UInt8]
    }

    struct Entry: Sendable {
        let firmID: UUID
        let keys: [Key]
    }

    static let capacity = 4096
    private let lock = NSLock()
    private var entries: [String: (entry: Entry, lastUsed: UInt64)] = [:]
    /// A logical clock for recency: bumped on every hit and insert.
    private var tick: UInt64 = 0

    func entry(for accountID: String) -> Entry? {
        lock.lock()
        defer { lock.unlock() }
        guard let found = entries[accountID] else { return nil }
        tick += 1
        entries[accountID] = (found.entry, tick)
        return found.entry
    }

    func remember(_ accountID: String, _ entry: Entry) {
        lock.lock()
        defer { lock.unlock() }
        if entries[accountID] == nil && entries.count >= Self.capacity {
            let keep = entries.sorted { $0.value.lastUsed > $1.value.lastUsed }.prefix(Self.capacity / 2)
            entries = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
        tick += 1
        entries[accountID] = (entry, tick)
    }

    func forget(_ accountID: String) {
        lock.lock()
        defer { lock.unlock() }
        entries[accountID] = nil
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return entries.count
    }
}
