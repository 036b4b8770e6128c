import Foundation
import Smokeball

/// The parts of the spec's `Contact` the contact step reads (search answers and listings).
public struct SmokeballContact: Decodable, Sendable, Equatable {
    public struct Phone: Decodable, Sendable, Equatable {
        public var areaCode: String?
        public var number: String?

        /// Its digits (area code first), so formatting never decides a match.
        var digits: String { SmokeballContact.digits((areaCode ?? "") + (number ?? "")) }
    }

    public struct Person: Decodable, Sendable, Equatable {
        public var firstName: String?
        public var lastName: String?
        public var email: String?
        public var phone: Phone?
        public var cell: Phone?
    }

    public struct Company: Decodable, Sendable, Equatable {
        public var name: String?
        public var email: String?
    }

    public var id: String?
    public var externalSystemId: String?
    public var isDeleted: Bool?
    public var person: Person?
    public var company: Company?

    var emails: [String] { [person?.email, company?.email].compactMap { $0 } }

    static func digits(_ text: String) -> String { text.filter { $0.isASCII && $0.isNumber } }
}

/// What the contact step sends to create a person (`ContactDto` with a `PersonDto`).
struct NewContact: Encodable, Sendable {
    struct Phone: Encodable, Sendable {
        var number: String
    }

    struct Person: Encodable, Sendable {
        var firstName: String
        var lastName: String
        var email: String?
        var phone: Phone?
    }

    var person: Person
    var externalSystemId: String
}

/// The parts of the spec's `Matter` the sync reads back.
public struct SmokeballMatter: Decodable, Sendable, Equatable {
    public struct Reference: Decodable, Sendable, Equatable {
        public var id: String?
    }

    public var id: String?
    public var number: String?
    /// Computed by Smokeball (no writable title); the import takes it as the CaseHug title.
    public var title: String?
    public var description: String?
    public var status: String?
    public var isLead: Bool?
    public var matterType: Reference?
    public var clients: [Reference]?
    public var externalSystemId: String?
}

/// One value of a matter body as sent (`MatterDto`, `MatterDto2`) and as kept in
/// `matters.smokeball_sent`: a string, a list of ids, or null (a PATCH clearing a field).
enum SentValue: Codable, Sendable, Equatable {
    case text(String)
    case list([String])
    case null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let text = try? container.decode(String.self) {
            self = .text(text)
        } else {
            self = .list(try container.decode([String].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .text(let text): try container.encode(text)
        case .list(let list): try container.encode(list)
        case .null: try container.encodeNil()
        }
    }
}
