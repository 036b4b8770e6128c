import Foundation
import Testing

@testable import Cryptography

@Suite struct UtilityTests {
    @Test func constantTimeEquals() {
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(ConstantTime.equals([UInt8](), [UInt8]()))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([0, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
        #expect(!ConstantTime.equals([1, 2], [1, 2, 3]))
        #expect(!ConstantTime.equals([UInt8](), [0]))
    }

    @Test func secureRandomBytes() {
        #expect(SecureRandom.bytes(0).isEmpty)
        let first = SecureRandom.bytes(32)
        let second = SecureRandom.bytes(32)
        #expect(first.count == 32)
        #expect(first != second)
    }

    @Test func secureRandomToken() {
        let token = SecureRandom.token()
        #expect(token.count == 43)  // 32 bytes -> ceil(256 / 6) unpadded characters
        #expect(Base64URL.decode(token)?.count == 32)
        #expect(SecureRandom.token(byteCount: 16).count == 22)
        #expect(SecureRandom.token() != token)
    }

    // RFC 4648 §10 vectors, unpadded, plus bytes that exercise the url-safe alphabet.
    @Test(arguments: [
        ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ])
    func base64URLKnownAnswers(plain: String, encoded: String) {
        #expect(Base64URL.encode(plain.utf8) == encoded)
        #expect(Base64URL.decode(encoded) == Array(plain.utf8))
    }

    @Test func base64URLUsesURLSafeAlphabet() {
        #expect(Base64URL.encode([0xfb, 0xff, 0xbf]) == "-_-_")
        #expect(Base64URL.decode("-_-_") == [0xfb, 0xff, 0xbf])
    }

    @Test func base64URLMatchesFoundationsBase64ForEveryTailLength() {
        for count in 0..<48 {
            let bytes = SecureRandom.bytes(count)
            var reference = Data(bytes).base64EncodedString()
            reference = String(reference.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 }.filter { $0 != "=" })
            #expect(Base64URL.encode(bytes) == reference)
        }
    }

    @Test func base64URLRoundTripsRandomBytes() {
        for length in 0..<40 {
            let bytes = SecureRandom.bytes(length)
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
    }

    @Test(arguments: ["Zg==", "Zm8=", "+_-_", "-/-_", "Zm9v!", "Zm 9v", "Z", "Zm9vY", "Zh", "é"])
    func base64URLRejects(text: String) {
        #expect(Base64URL.decode(text) == nil)
    }
}
