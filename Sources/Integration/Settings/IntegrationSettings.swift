import Basics
import FastCGI
import Foundation
import PostgreSQL

/// A firm's Smokeball sync settings, stored as `firm_integrations.settings` (jsonb).
public struct IntegrationSettings: Sendable, Equatable, Encodable {
    public var autoSyncOnApproval: Bool
    public var autoSyncOnMatterCreated: Bool
    /// CaseHug case type key → Smokeball matter type name or id.
    public var caseTypeMappings: [String: String]
    /// The name of the one folder per matter that synced documents go into.
    public var documentsFolder: String
    /// The Smokeball location (US state, AU state, UK nation) whose matter types are used; nil
    /// means the Smokeball firm's own state.
    public var location: String?
    /// Whether a matter created in Smokeball (`matter.created`) is imported into CaseHug as
    /// `import_matters` would (docs/inbound.md); off by default.
    public var importNewMatters: Bool

    public static let defaultDocumentsFolder = "CaseHug"

    public static let defaults = IntegrationSettings(
        autoSyncOnApproval: true, autoSyncOnMatterCreated: false, caseTypeMappings: [:])

    public init(
        autoSyncOnApproval: Bool, autoSyncOnMatterCreated: Bool, caseTypeMappings: [String: String],
        documentsFolder: String = IntegrationSettings.defaultDocumentsFolder, location: String? = nil,
        importNewMatters: Bool = false
    ) {
        self.autoSyncOnApproval = autoSyncOnApproval
        self.autoSyncOnMatterCreated = autoSyncOnMatterCreated
        self.caseTypeMappings = caseTypeMappings
        self.documentsFolder = documentsFolder
        self.location = location
        self.importNewMatters = importNewMatters
    }

    static let autoSyncOnApprovalKey = CodingKeys.autoSyncOnApproval.rawValue
    static let autoSyncOnMatterCreatedKey = CodingKeys.autoSyncOnMatterCreated.rawValue
    static let caseTypeMappingsKey = CodingKeys.caseTypeMappings.rawValue
    static let documentsFolderKey = CodingKeys.documentsFolder.rawValue
    static let locationKey = CodingKeys.location.rawValue
    static let importNewMattersKey = CodingKeys.importNewMatters.rawValue
    static let fields: Set<String> = [
        autoSyncOnApprovalKey, autoSyncOnMatterCreatedKey, caseTypeMappingsKey, documentsFolderKey, locationKey,
        importNewMattersKey,
    ]
    static let maxMappingValueLength = 200
    static let maxDocumentsFolderLength = 256

    enum CodingKeys: String, CodingKey {
        case autoSyncOnApproval = "auto_sync_on_approval"
        case autoSyncOnMatterCreated = "auto_sync_on_matter_created"
        case caseTypeMappings = "case_type_mappings"
        case documentsFolder = "documents_folder"
        case location
        case importNewMatters = "import_new_matters"
    }

    public var jsonText: String {
        // Booleans and strings only: encoding cannot fail.
        String(decoding: (try? JSONStreamEncoder.encode(self)) ?? Array("{}".utf8), as: UTF8.self)
    }

    /// Reads stored settings leniently: a stored value of the wrong shape falls back to its
    /// default, so a bad row never locks a firm out of its settings page.
    public init(stored object: [String: Any]) {
        let defaults = Self.defaults
        autoSyncOnApproval =
            object[Self.autoSyncOnApprovalKey].flatMap { JSONBoolean.value($0) }
            ?? defaults.autoSyncOnApproval
        autoSyncOnMatterCreated =
            object[Self.autoSyncOnMatterCreatedKey].flatMap { JSONBoolean.value($0) }
            ?? defaults.autoSyncOnMatterCreated
        caseTypeMappings =
            (object[Self.caseTypeMappingsKey] as? [String: Any])?.compactMapValues { $0 as? String } ?? [:]
        documentsFolder =
            (object[Self.documentsFolderKey] as? String).flatMap(Self.documentsFolder) ?? defaults.documentsFolder
        location = (object[Self.locationKey] as? String).flatMap(Self.location)
        importNewMatters =
            object[Self.importNewMattersKey].flatMap { JSONBoolean.value($0) } ?? defaults.importNewMatters
    }

    /// The settings of the firm `connection`'s transaction is bound to (the defaults before any
    /// were saved).
    public static func current(_ connection: Connection) throws -> IntegrationSettings {
        let row = try connection.execute(
            """
            SELECT settings FROM firm_integrations WHERE firm_id = app_current_firm() AND platform = 'smokeball'
            """
        ).first
        guard let stored = try row?.optionalJSON("settings") as? [String: Any] else { return .defaults }
        return IntegrationSettings(stored: stored)
    }

    /// A valid `documents_folder`, trimmed: 1 to 256 characters, no control characters and no
    /// path separators (Smokeball would take them as part of the name; people read them as nesting).
    static func documentsFolder(_ value: String) -> String? {
        let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty, trimmed.count <= maxDocumentsFolderLength,
            !trimmed.unicodeScalars.contains(where: {
                CharacterSet.controlCharacters.contains($0) || $0 == "/" || $0 == "\\"
            })
        else { return nil }
        return trimmed
    }

    /// A valid `location`, uppercased: 2 or 3 ASCII letters, as Smokeball names US states (IL),
    /// AU states (NSW) and UK nations (ENG).
    static func location(_ value: String) -> String? {
        let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (2...3).contains(trimmed.unicodeScalars.count),
            trimmed.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("A"..."Z").contains($0) })
        else { return nil }
        return trimmed.uppercased()
    }

    /// How an update applies: PUT replaces the whole settings object (absent fields take their
    /// defaults); PATCH changes only the fields given, merging `case_type_mappings` key by key,
    /// where a `null` value removes a mapping (JSON Merge Patch, RFC 7396).
    public enum UpdateMode: Sendable {
        case replace
        case merge
    }

    /// Validates `body` completely before anything changes; the first problem found becomes a 400
    /// that names the field.
    public func applying(
        _ body: [String: Any], mode: UpdateMode, knownCaseTypes: Set<String>
    ) throws(HTTPError) -> IntegrationSettings {
        for key in body.keys.sorted() where !Self.fields.contains(key) {
            throw Self.invalid(key, "is not a known setting")
        }
        var result = mode == .replace ? Self.defaults : self
        if let value = body[Self.autoSyncOnApprovalKey] {
            result.autoSyncOnApproval = try Self.bool(value, field: Self.autoSyncOnApprovalKey)
        }
        if let value = body[Self.autoSyncOnMatterCreatedKey] {
            result.autoSyncOnMatterCreated = try Self.bool(value, field: Self.autoSyncOnMatterCreatedKey)
        }
        if let value = body[Self.importNewMattersKey] {
            result.importNewMatters = try Self.bool(value, field: Self.importNewMattersKey)
        }
        if let value = body[Self.caseTypeMappingsKey] {
            guard let mappings = value as? [String: Any] else {
                throw Self.invalid(Self.caseTypeMappingsKey, "must be an object of case type to matter type")
            }
            if mode == .replace { result.caseTypeMappings = [:] }
            for caseType in mappings.keys.sorted() {
                let field = "\(Self.caseTypeMappingsKey).\(caseType)"
                guard knownCaseTypes.contains(caseType) else {
                    throw Self.invalid(field, "is not a known case type")
                }
                let mapped = mappings[caseType]!
                if mapped is NSNull {
                    guard mode == .merge else {
                        throw Self.invalid(field, "must be a non-empty Smokeball matter type name or id")
                    }
                    result.caseTypeMappings[caseType] = nil
                    continue
                }
                guard let name = mapped as? String else {
                    throw Self.invalid(field, "must be a non-empty Smokeball matter type name or id")
                }
                let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !trimmed.isEmpty else {
                    throw Self.invalid(field, "must be a non-empty Smokeball matter type name or id")
                }
                guard trimmed.count <= Self.maxMappingValueLength,
                    !trimmed.unicodeScalars.contains(where: { CharacterSet.controlCharacters.contains($0) })
                else {
                    throw Self.invalid(
                        field, "must be at most \(Self.maxMappingValueLength) characters without control characters")
                }
                result.caseTypeMappings[caseType] = trimmed
            }
        }
        if let value = body[Self.documentsFolderKey] {
            guard let name = value as? String, let folder = Self.documentsFolder(name) else {
                throw Self.invalid(
                    Self.documentsFolderKey,
                    "must be a folder name of 1 to \(Self.maxDocumentsFolderLength) characters without control characters, '/' or '\\'"
                )
            }
            result.documentsFolder = folder
        }
        if let value = body[Self.locationKey] {
            if value is NSNull {
                result.location = nil
            } else {
                guard let text = value as? String, let location = Self.location(text) else {
                    throw Self.invalid(
                        Self.locationKey, "must be a state code of 2 or 3 letters (IL, NSW), or null for the firm's own"
                    )
                }
                result.location = location
            }
        }
        return result
    }

    static func bool(_ value: Any, field: String) throws(HTTPError) -> Bool {
        guard let flag = JSONBoolean.value(value) else { throw invalid(field, "must be true or false") }
        return flag
    }

    static func invalid(_ field: String, _ problem: String) -> HTTPError {
        HTTPError(.badRequest, code: "invalid_setting", "\(field) \(problem)")
    }
}
