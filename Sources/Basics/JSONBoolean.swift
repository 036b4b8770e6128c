import Foundation

/// JSON booleans as `JSONSerialization` decodes them: an NSNumber whose type code is "c" (or
/// "B"), unlike numbers, which a plain `as? Bool` would also accept (1 becomes true).
public enum JSONBoolean {
    public static func value(_ raw: Any) -> Bool? {
        if type(of: raw) == Bool.self { return raw as? Bool }
        guard type(of: raw) is NSNumber.Type, let number = raw as? NSNumber else { return nil }
        let code = String(cString: number.objCType)
        return code == "c" || code == "B" ? number.boolValue : nil
    }
}
