import Basics
import Testing

@testable import Cryptography

@Suite struct DigestTests {
    // FIPS 180-2 Appendix B.1 and the well-known empty-string digest.
    @Test(arguments: [
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ])
    func sha256KnownAnswers(input: String, expected: String) {
        #expect(Hex.encode(SHA256.hash(Array(input.utf8))) == expected)
    }

    @Test func sha256AcceptsAnyCollection() {
        #expect(SHA256.hash("abc".utf8) == SHA256.hash([0x61, 0x62, 0x63]))
        #expect(SHA256.hash([0x61, 0x62, 0x63][...]) == SHA256.hash([0x61, 0x62, 0x63]))
    }

    struct HMACVector: Sendable, CustomStringConvertible {
        let name: String
        let key: [UInt8]
        let message: [UInt8]
        let expected: String
        var description: String { name }
    }

    // RFC 4231 §4.2-4.5 and §4.7 (key longer than the 64-byte block).
    static let hmacVectors: [HMACVector] = [
        HMACVector(
            name: "RFC 4231 case 1", key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8),
            expected: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        HMACVector(
            name: "RFC 4231 case 2", key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8),
            expected: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        HMACVector(
            name: "RFC 4231 case 3", key: [UInt8](repeating: 0xaa, count: 20),
            message: [UInt8](repeating: 0xdd, count: 50),
            expected: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        HMACVector(
            name: "RFC 4231 case 4", key: Array(1...25), message: [UInt8](repeating: 0xcd, count: 50),
            expected: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        HMACVector(
            name: "RFC 4231 case 6", key: [UInt8](repeating: 0xaa, count: 131),
            message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
            expected: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ]

    @Test(arguments: hmacVectors)
    func hmacSHA256KnownAnswers(vector: HMACVector) {
        #expect(Hex.encode(HMACSHA256.authenticate(vector.message, key: vector.key)) == vector.expected)
    }

    @Test func hmacEmptyKeyAndMessageIsStable() {
        // Python: hmac.new(b"", b"", sha256).hexdigest()
        #expect(
            Hex.encode(HMACSHA256.authenticate([UInt8](), key: [UInt8]()))
                == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }
}
