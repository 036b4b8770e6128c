import Foundation

extension APIServer.Caller {
    /// When a write made now becomes readable (Smokeball applies writes asynchronously).
    func visibleAt(_ now: Date) -> Date { now.addingTimeInterval(Double(writeDelayMilliseconds) / 1000) }
}
