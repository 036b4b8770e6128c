/// Case-insensitive comparison for ASCII protocol names (HTTP header names, CGI params), where
/// Foundation's `caseInsensitiveCompare` goes through CFString and a locale on every call.
public enum ASCIICase {
    /// Whether `a` and `b` are equal once ASCII letters are folded to lower case; any other byte
    /// must match exactly.
    public static func equal(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
        var left = a.utf8.makeIterator()
        var right = b.utf8.makeIterator()
        while true {
            switch (left.next(), right.next()) {
            case (nil, nil): return true
            case (let x?, let y?) where lower(x) == lower(y): continue
            default: return false
            }
        }
    }

    static func lower(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 : byte
    }
}
