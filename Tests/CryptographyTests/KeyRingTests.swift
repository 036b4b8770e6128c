import Basics
import Foundation
import Testing

@testable import Cryptography

/// The versioned, key-id-carrying sealed format that lets token keys rotate online.
@Suite struct KeyRingTests {
    static let oldKey = SecureRandom.bytes(32)
    static let currentKey = SecureRandom.bytes(32)
    static let plaintext = Array("a refresh token".utf8)
    static let associatedData = Array("firm|smokeball|refresh_token".utf8)

    static func ring(oldKeys: [UInt8: [UInt8]] = [1: oldKey]) throws -> KeyRing {
        try KeyRing(currentKey: currentKey, id: 2, oldKeys: oldKeys)
    }

    @Test func aSealedValueOpensAndItsHeaderNamesTheVersionAndTheCurrentKey() throws {
        let ring = try Self.ring()
        let sealed = try ring.seal(Self.plaintext, associatedData: Self.associatedData)
        #expect(sealed[0] == KeyRing.version)
        #expect(sealed[1] == 2)
        #expect(try KeyRing.keyID(of: sealed) == 2)
        #expect(sealed.count == Self.plaintext.count + KeyRing.minimumSealedByteCount)
        #expect(try ring.open(sealed, associatedData: Self.associatedData) == Self.plaintext)
        // A fresh nonce each time.
        #expect(try ring.seal(Self.plaintext, associatedData: Self.associatedData) != sealed)
        // The empty plaintext is the shortest value.
        let empty = try ring.seal([], associatedData: Self.associatedData)
        #expect(empty.count == KeyRing.minimumSealedByteCount)
        #expect(try ring.open(empty, associatedData: Self.associatedData) == [])
    }

    @Test func aValueSealedUnderAnOldKeyOpensWhileThatKeyIsListedAndNotAfter() throws {
        let before = try KeyRing(currentKey: Self.oldKey, id: 1)
        let sealed = try before.seal(Self.plaintext, associatedData: Self.associatedData)
        #expect(sealed[1] == 1)
        let rotated = try Self.ring()
        #expect(try rotated.open(sealed, associatedData: Self.associatedData) == Self.plaintext)
        // Re-sealed, it names the current key.
        let resealed = try rotated.seal(
            rotated.open(sealed, associatedData: Self.associatedData), associatedData: Self.associatedData)
        #expect(try KeyRing.keyID(of: resealed) == 2)
        // Once the old key is dropped, the value names a key the ring does not have.
        #expect(throws: CryptoError.unknownKeyID(1)) {
            try Self.ring(oldKeys: [:]).open(sealed, associatedData: Self.associatedData)
        }
    }

    @Test func anUnknownKeyIDIsItsOwnErrorNamingTheIDAndNoKey() throws {
        let other = try KeyRing(currentKey: SecureRandom.bytes(32), id: 9)
        let sealed = try other.seal(Self.plaintext)
        let error = #expect(throws: CryptoError.self) { try Self.ring().open(sealed) }
        #expect(error == .unknownKeyID(9))
        #expect(error?.description == "CryptoError.unknownKeyID(9)")
        let ring = try Self.ring()
        for key in [Self.oldKey, Self.currentKey] {
            #expect(!String(describing: ring).contains(Hex.encode(key)))
            #expect(!String(describing: ring).contains(key.base64))
        }
    }

    @Test(arguments: [UInt8(0), 2, 0x7f, 0xff])
    func aValueOfAnotherVersionIsRefusedAsSuch(version: UInt8) throws {
        let ring = try Self.ring()
        var sealed = try ring.seal(Self.plaintext)
        sealed[0] = version
        #expect(throws: CryptoError.unsupportedVersion(version)) { try ring.open(sealed) }
    }

    @Test func everyTruncationFailsAndTooShortOnesSaySo() throws {
        let ring = try Self.ring()
        let sealed = try ring.seal(Self.plaintext, associatedData: Self.associatedData)
        for length in 0..<sealed.count {
            let expected: CryptoError =
                length < KeyRing.minimumSealedByteCount ? .truncated : .authenticationFailed
            #expect(throws: expected, "prefix of \(length) bytes") {
                try ring.open(Array(sealed.prefix(length)), associatedData: Self.associatedData)
            }
        }
    }

    @Test func everySingleByteTamperFails() throws {
        let ring = try Self.ring()
        let sealed = try ring.seal(Self.plaintext, associatedData: Self.associatedData)
        for index in sealed.indices {
            for mask: UInt8 in [0x01, 0x80, 0xff] {
                var tampered = sealed
                tampered[index] ^= mask
                let expected: CryptoError =
                    switch index {
                    case 0: .unsupportedVersion(tampered[0])
                    // Ids 2 ^ mask: 3, 130 and 253 are not in the ring.
                    case 1: .unknownKeyID(tampered[1])
                    default: .authenticationFailed
                    }
                #expect(throws: expected, "byte \(index) ^ \(mask)") {
                    try ring.open(tampered, associatedData: Self.associatedData)
                }
            }
        }
    }

    /// The key id is authenticated: relabelling a value with another id opens nothing, even when
    /// both ids hold the same key (as after a careless rotation that reused the key).
    @Test func aRelabelledKeyIDDoesNotOpenEvenUnderTheSameKey() throws {
        let ring = try KeyRing(currentKey: Self.currentKey, id: 2, oldKeys: [1: Self.currentKey])
        var sealed = try ring.seal(Self.plaintext, associatedData: Self.associatedData)
        #expect(try ring.open(sealed, associatedData: Self.associatedData) == Self.plaintext)
        sealed[1] = 1
        #expect(throws: CryptoError.authenticationFailed) {
            try ring.open(sealed, associatedData: Self.associatedData)
        }
    }

    @Test func otherAssociatedDataDoesNotOpen() throws {
        let ring = try Self.ring()
        let sealed = try ring.seal(Self.plaintext, associatedData: Self.associatedData)
        #expect(throws: CryptoError.authenticationFailed) {
            try ring.open(sealed, associatedData: Array("firm|smokeball|access_token".utf8))
        }
        #expect(throws: CryptoError.authenticationFailed) { try ring.open(sealed) }
    }

    @Test func aRingRefusesIDZeroAndOneIDWithTwoKeys() throws {
        #expect(throws: CryptoError.invalidKeyID) { try KeyRing(currentKey: Self.currentKey, id: 0) }
        #expect(throws: CryptoError.invalidKeyID) {
            try KeyRing(currentKey: Self.currentKey, id: 2, oldKeys: [0: Self.oldKey])
        }
        #expect(throws: CryptoError.invalidKeyID) {
            try KeyRing(currentKey: Self.currentKey, id: 2, oldKeys: [2: Self.oldKey])
        }
        #expect(throws: CryptoError.invalidKey) {
            try KeyRing(currentKey: Self.currentKey, id: 2, oldKeys: [1: SecureRandom.bytes(16)])
        }
        // The current key listed again under its own id is harmless.
        _ = try KeyRing(currentKey: Self.currentKey, id: 2, oldKeys: [2: Self.currentKey])
    }
}

extension [UInt8] {
    fileprivate var base64: String { Data(self).base64EncodedString() }
}
