extension Substring {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace), by hand:
    /// Foundation's `trimmingCharacters` round-trips through NSString.
    public var trimmingSpaces: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}
