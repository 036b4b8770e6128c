import Basics
import Testing

@testable import Cryptography

@Suite struct AES256GCMTests {
    struct GCMVector: Sendable, CustomStringConvertible {
        let name: String
        let key: String
        let nonce: String
        let plaintext: String
        let associatedData: String
        let ciphertext: String
        let tag: String
        var description: String { name }
    }

    // McGrew & Viega, "The Galois/Counter Mode of Operation", Appendix B, test cases 13-16.
    static let vectors: [GCMVector] = [
        GCMVector(
            name: "case 13", key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
            plaintext: "", associatedData: "", ciphertext: "", tag: "530f8afbc74536b9a963b4f1c4cb738b"),
        GCMVector(
            name: "case 14", key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
            plaintext: String(repeating: "00", count: 16), associatedData: "",
            ciphertext: "cea7403d4d606b6e074ec5d3baf39d18", tag: "d0d1c8a799996bf0265b98b5d48ab919"),
        GCMVector(
            name: "case 15", key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            nonce: "cafebabefacedbaddecaf888",
            plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                + "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
            associatedData: "",
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                + "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            tag: "b094dac5d93471bdec1a502270e3cc6c"),
        GCMVector(
            name: "case 16", key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            nonce: "cafebabefacedbaddecaf888",
            plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                + "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
            associatedData: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                + "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            tag: "76fc6ece0f4e1768cddf8853bb2d551b"),
    ]

    @Test(arguments: vectors)
    func knownAnswerSeal(vector: GCMVector) throws {
        let cipher = try AES256GCM(key: try #require(Hex.decode(vector.key)))
        let sealed = try cipher.seal(
            try #require(Hex.decode(vector.plaintext)), nonce: try #require(Hex.decode(vector.nonce)),
            associatedData: try #require(Hex.decode(vector.associatedData)))
        #expect(Hex.encode(sealed) == vector.nonce + vector.ciphertext + vector.tag)
    }

    @Test(arguments: vectors)
    func knownAnswerOpen(vector: GCMVector) throws {
        let cipher = try AES256GCM(key: try #require(Hex.decode(vector.key)))
        let sealed = try #require(Hex.decode(vector.nonce + vector.ciphertext + vector.tag))
        let opened = try cipher.open(sealed, associatedData: try #require(Hex.decode(vector.associatedData)))
        #expect(Hex.encode(opened) == vector.plaintext)
    }

    static func makeCipher() throws -> AES256GCM { try AES256GCM(key: SecureRandom.bytes(32)) }

    @Test(arguments: [0, 1, 15, 16, 17, 1000])
    func roundTripWithRandomNonce(length: Int) throws {
        let cipher = try Self.makeCipher()
        let plaintext = SecureRandom.bytes(length)
        let associatedData = Array("firm:42".utf8)
        let sealed = try cipher.seal(plaintext, associatedData: associatedData)
        #expect(sealed.count == 12 + length + 16)
        #expect(try cipher.open(sealed, associatedData: associatedData) == plaintext)
    }

    @Test func sealsOfSamePlaintextDiffer() throws {
        let cipher = try Self.makeCipher()
        let plaintext = Array("same secret".utf8)
        let first = try cipher.seal(plaintext)
        let second = try cipher.seal(plaintext)
        #expect(first != second)
        #expect(first.prefix(12) != second.prefix(12))
    }

    enum Tamper: String, CaseIterable, Sendable { case nonce, ciphertext, tag }

    @Test(arguments: Tamper.allCases)
    func tamperingIsDetected(part: Tamper) throws {
        let cipher = try Self.makeCipher()
        var sealed = try cipher.seal(Array("refresh-token-value".utf8), associatedData: [1, 2, 3])
        let index =
            switch part {
            case .nonce: 0
            case .ciphertext: 12
            case .tag: sealed.count - 1
            }
        sealed[index] ^= 0x01
        #expect(throws: CryptoError.authenticationFailed) {
            try cipher.open(sealed, associatedData: [1, 2, 3])
        }
    }

    @Test func differentAssociatedDataFails() throws {
        let cipher = try Self.makeCipher()
        let sealed = try cipher.seal(Array("token for firm 1".utf8), associatedData: Array("firm:1".utf8))
        #expect(throws: CryptoError.authenticationFailed) {
            try cipher.open(sealed, associatedData: Array("firm:2".utf8))
        }
        #expect(throws: CryptoError.authenticationFailed) { try cipher.open(sealed) }
    }

    @Test func wrongKeyFails() throws {
        let sealed = try Self.makeCipher().seal(Array("secret".utf8))
        #expect(throws: CryptoError.authenticationFailed) { try Self.makeCipher().open(sealed) }
    }

    @Test(arguments: [0, 16, 31, 33, 64])
    func wrongKeyLengthIsInvalidKey(length: Int) {
        #expect(throws: CryptoError.invalidKey) { try AES256GCM(key: [UInt8](repeating: 7, count: length)) }
    }

    @Test(arguments: [0, 1, 12, 27])
    func shortInputIsMalformed(length: Int) throws {
        let cipher = try Self.makeCipher()
        #expect(throws: CryptoError.malformed) { try cipher.open([UInt8](repeating: 0, count: length)) }
    }

    @Test func explicitNonceMustBeTwelveBytes() throws {
        let cipher = try Self.makeCipher()
        #expect(throws: CryptoError.invalidNonce) { try cipher.seal([1], nonce: [UInt8](repeating: 0, count: 16)) }
    }

    @Test func descriptionsDoNotLeakKey() throws {
        let key = [UInt8](repeating: 0xab, count: 32)
        let cipher = try AES256GCM(key: key)
        #expect(!String(describing: cipher).lowercased().contains("ab"))
        #expect(CryptoError.authenticationFailed.description == "CryptoError.authenticationFailed")
        #expect(CryptoError.openssl("x") != CryptoError.openssl("y"))
        #expect(CryptoError.openssl("x") == CryptoError.openssl("x"))
    }
}
