import Foundation

/// RFC 3986 percent-encoding: what goes into a URL's query or an
/// `application/x-www-form-urlencoded` body, and what comes back out of one.
public enum PercentEncoding {
    /// Percent-encodes the UTF-8 bytes of `text`, keeping only the unreserved `A-Z a-z 0-9 - . _ ~`;
    /// a space becomes `%20`, which every form and query decoder accepts.
    public static func encode(_ text: some StringProtocol) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if isUnreserved(byte) {
                output.append(byte)
            } else {
                output.append(UInt8(ascii: "%"))
                Hex.append(byte, to: &output, uppercase: true)
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes `%XX` escapes, and `+` as a space (form and query encoding). Nil when an escape
    /// is malformed or the bytes are not UTF-8.
    public static func decode(_ text: some StringProtocol) -> String? {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count)
        var bytes = text.utf8.makeIterator()
        while let byte = bytes.next() {
            switch byte {
            case UInt8(ascii: "+"):
                output.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = bytes.next().flatMap(Hex.value(ofDigit:)),
                    let low = bytes.next().flatMap(Hex.value(ofDigit:))
                else { return nil }
                output.append(high << 4 | low)
            default:
                output.append(byte)
            }
        }
        return String(validating: output, as: UTF8.self)
    }

    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            true
        default: false
        }
    }
}

/// Query strings and form bodies: `a=1&b=x%20y`.
public enum QueryString {
    /// `a=1&b=x%20y&a=2` → `[("a", "1"), ("b", "x y"), ("a", "2")]`. Pairs whose name is empty
    /// or does not decode are skipped; a value that does not decode is empty.
    public static func items(_ string: some StringProtocol) -> [(String, String)] {
        guard !string.isEmpty else { return [] }
        return string.split(separator: "&", omittingEmptySubsequences: true).compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = PercentEncoding.decode(parts[0]), !name.isEmpty else { return nil }
            return (name, parts.count > 1 ? (PercentEncoding.decode(parts[1]) ?? "") : "")
        }
    }

    /// `items` as a dictionary; the first occurrence of a name wins.
    public static func dictionary(_ string: some StringProtocol) -> [String: String] {
        guard !string.isEmpty else { return [:] }
        var result: [String: String] = [:]
        for (name, value) in items(string) where result[name] == nil { result[name] = value }
        return result
    }
}

/// `application/x-www-form-urlencoded` bodies, encoded strictly: only RFC 3986 unreserved
/// characters pass through; space becomes `%20`, which every form and query decoder accepts.
public enum FormURLEncoding {
    public static func encode(_ pairs: [(String, String)]) -> String {
        pairs.map { PercentEncoding.encode($0.0) + "=" + PercentEncoding.encode($0.1) }.joined(separator: "&")
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
