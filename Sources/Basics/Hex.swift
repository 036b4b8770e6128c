/// Hexadecimal digits, written and read in one place: ids and digests (lowercase),
/// percent-encoding (uppercase, as RFC 3986 recommends), JSON `\u00XX` escapes and bytea text.
public enum Hex {
    public static let lowercaseDigits: [UInt8] = Array("0123456789abcdef".utf8)
    public static let uppercaseDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    public static func encode(_ bytes: some Collection<UInt8>, uppercase: Bool = false) -> String {
        var output = [UInt8]()
        output.reserveCapacity(bytes.count * 2)
        for byte in bytes { append(byte, to: &output, uppercase: uppercase) }
        return String(decoding: output, as: UTF8.self)
    }

    /// Appends the two digits of `byte`.
    @inline(__always)
    public static func append(_ byte: UInt8, to output: inout [UInt8], uppercase: Bool = false) {
        let digits = uppercase ? uppercaseDigits : lowercaseDigits
        output.append(digits[Int(byte >> 4)])
        output.append(digits[Int(byte & 0x0F)])
    }

    /// Accepts upper- or lowercase digits; rejects odd length and any other character.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        Array(text.utf8).withUnsafeBufferPointer { decode($0) }
    }

    /// The bytes `digits` spell, or nil for an odd count or a non-digit. One table look-up per
    /// digit and one validity check at the end: bytea columns of many MiB come through here.
    public static func decode(_ digits: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard digits.count % 2 == 0 else { return nil }
        let count = digits.count / 2
        var valid = true
        let bytes = digitValues.withUnsafeBufferPointer { table in
            [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                for index in 0..<count {
                    let high = table[Int(digits[2 * index])]
                    let low = table[Int(digits[2 * index + 1])]
                    buffer[index] = high << 4 | low
                    // 0xFF marks a non-digit.
                    if (high | low) & 0xF0 != 0 { valid = false }
                }
                initialized = count
            }
        }
        return valid ? bytes : nil
    }

    /// The value of one hexadecimal digit, either case; nil for any other byte.
    @inline(__always)
    public static func value(ofDigit digit: UInt8) -> UInt8? {
        let value = digitValues[Int(digit)]
        return value == 0xFF ? nil : value
    }

    /// Value of each ASCII hex digit; 0xFF for any other byte.
    static let digitValues: [UInt8] = (0...255).map { byte -> UInt8 in
        switch UInt8(byte) {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt8(byte) - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt8(byte) - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt8(byte) - UInt8(ascii: "A") + 10
        default: 0xFF
        }
    }
}
