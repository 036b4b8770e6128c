/// `application/x-www-form-urlencoded` bodies, encoded strictly: only RFC 3986 unreserved
/// characters pass through; space becomes `%20`, which every form and query decoder accepts.
public enum FormURLEncoding {
    public static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&")
    }

    /// Percent-encodes the UTF-8 bytes of `string`, keeping `A-Z a-z 0-9 - . _ ~`.
    public static func percentEncode(_ string: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(byte)
            default:
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

public enum URLQuery {
    /// Appends encoded pairs to `base`, extending an existing query and keeping any fragment last.
    public static func build(base: String, _ pairs: [(String, String)]) -> String {
        guard !pairs.isEmpty else { return base }
        var head = Substring(base)
        var fragment: Substring = ""
        if let hash = base.firstIndex(of: "#") {
            head = base[..<hash]
            fragment = base[hash...]
        }
        let separator: String
        if !head.contains("?") {
            separator = "?"
        } else if head.hasSuffix("?") || head.hasSuffix("&") {
            separator = ""
        } else {
            separator = "&"
        }
        return head + separator + FormURLEncoding.encode(pairs) + fragment
    }
}
