/// AES-256-GCM under a ring of keys, each named by a one-byte id that every sealed value carries,
/// so keys can rotate online: sealing always uses the current key, opening uses the key the value
/// names, and a value under an old key can be opened and sealed again under the current one.
///
/// Sealed format, version 1:
///
///     version (1 byte, 0x01) || key id (1 byte, 1...255) || nonce (12) || ciphertext || tag (16)
///
/// The version and key id are authenticated too (they prefix the associated data): a value
/// relabelled with another id, even one whose key is the same, does not open.
public struct KeyRing: Sendable, CustomStringConvertible {
    public static let version: UInt8 = 1
    static let headerByteCount = 2
    /// The shortest sealed value: the header, nonce and tag around an empty plaintext.
    public static let minimumSealedByteCount = headerByteCount + AES256GCM.nonceByteCount + AES256GCM.tagByteCount

    /// The id of the key every `seal` uses.
    public let currentKeyID: UInt8
    private let current: AES256GCM
    /// Every key that opens, the current one included.
    private let ciphers: [UInt8: AES256GCM]

    /// `oldKeys` only open values. Ids are 1...255; an old key may repeat the current id only
    /// with the same key.
    public init(currentKey: [UInt8], id: UInt8, oldKeys: [UInt8: [UInt8]] = [:]) throws(CryptoError) {
        guard id != 0 else { throw .invalidKeyID }
        var ciphers: [UInt8: AES256GCM] = [:]
        for (oldID, key) in oldKeys {
            guard oldID != 0, oldID != id || key == currentKey else { throw .invalidKeyID }
            ciphers[oldID] = try AES256GCM(key: key)
        }
        current = try AES256GCM(key: currentKey)
        ciphers[id] = current
        currentKeyID = id
        self.ciphers = ciphers
    }

    /// Ids only: keys are never printed.
    public var description: String {
        "KeyRing(current key id: \(currentKeyID), key ids: \(ciphers.keys.sorted()), keys: <redacted>)"
    }

    public func seal(_ plaintext: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        let header = [Self.version, currentKeyID]
        let sealed = try current.seal(plaintext, associatedData: header + associatedData)
        return header + sealed
    }

    /// Each way a value can be wrong has its own error: `.truncated`, `.unsupportedVersion`,
    /// `.unknownKeyID`, and `.authenticationFailed` for a wrong key, wrong associated data or a
    /// changed byte.
    public func open(_ sealed: [UInt8], associatedData: [UInt8] = []) throws(CryptoError) -> [UInt8] {
        let id = try Self.keyID(of: sealed)
        guard let cipher = ciphers[id] else { throw .unknownKeyID(id) }
        let header = Array(sealed.prefix(Self.headerByteCount))
        return try cipher.open(Array(sealed.dropFirst(Self.headerByteCount)), associatedData: header + associatedData)
    }

    /// The id of the key `sealed` names, read from its header without opening it (a rotation
    /// re-seals the values whose id is not `currentKeyID`).
    public static func keyID(of sealed: [UInt8]) throws(CryptoError) -> UInt8 {
        guard let version = sealed.first else { throw .truncated }
        guard version == Self.version else { throw .unsupportedVersion(version) }
        guard sealed.count >= minimumSealedByteCount else { throw .truncated }
        return sealed[1]
    }
}
