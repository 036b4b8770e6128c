import FastCGI

/// Percent-encoding of a query component (RFC 3986 unreserved characters pass through).
enum URLComponent {
    static func encode(_ text: String) -> String { Request.percentEncode(text) }
}
