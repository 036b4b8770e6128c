import Foundation

/// The spec's `AddFileDto`: one file of `POST /matters/{id}/documents/files` (and of `.../bulk`,
/// which takes an array of them, answered in the same order).
public struct AddFileDto: Encodable, Sendable, Equatable {
    public var fileName: String
    public var folderId: String?

    public init(fileName: String, folderId: String?) {
        self.fileName = fileName
        self.folderId = folderId
    }
}

/// The spec's `FolderDto` (`POST /matters/{id}/documents/folders`, answered 202 `{href}`).
public struct FolderDto: Encodable, Sendable, Equatable {
    public var name: String
    public var parentFolderId: String?

    public init(name: String, parentFolderId: String? = nil) {
        self.name = name
        self.parentFolderId = parentFolderId
    }
}

/// The spec's `UploadFileInfo`: where to PUT a file's bytes, and until when.
public struct UploadFileInfo: Decodable, Sendable, Equatable {
    public var fileId: String?
    public var uploadUrl: String?
    /// ISO 8601; see `expiryDate`.
    public var expiry: String?

    public init(fileId: String?, uploadUrl: String?, expiry: String?) {
        self.fileId = fileId
        self.uploadUrl = uploadUrl
        self.expiry = expiry
    }

    /// `expiry` as a date (nil when absent or unreadable: then the URL is simply tried).
    public var expiryDate: Date? {
        guard let expiry else { return nil }
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: expiry) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: expiry)
    }
}

/// The spec's `File` (`GET .../documents/files[/{fileId}]`, folder listings). `name` carries no
/// extension: `fileExtension` holds it, with its dot (FACTS.md).
public struct SmokeballFile: Decodable, Sendable, Equatable {
    public struct Reference: Decodable, Sendable, Equatable {
        public var id: String?
    }

    public var id: String?
    public var name: String?
    public var fileExtension: String?
    public var folder: Reference?
    public var dateCreated: String?
    public var sizeBytes: Int64?
    public var isUploaded: Bool?
    public var isDeleted: Bool?

    /// Whether this is the file a CaseHug upload named `fileName` made: its name and extension
    /// together (Smokeball splits them), or its name alone should a listing keep the extension.
    public func isNamed(_ fileName: String) -> Bool {
        guard let name else { return false }
        return name + (fileExtension ?? "") == fileName || name == fileName
    }
}

/// The spec's `Folder`.
public struct SmokeballFolder: Decodable, Sendable, Equatable {
    public var id: String?
    public var parentId: String?
    public var name: String?
}

/// The spec's `FolderListingPagedCollection`: the listed folder (`id` null for the root) and,
/// in `value`, one `FolderListing` of its subfolders and files. `offset`/`limit` page over those
/// children, subfolders first; `size` counts them.
public struct FolderListingPage: Decodable, Sendable {
    public struct Listing: Decodable, Sendable {
        public var folders: [SmokeballFolder]?
        public var files: [SmokeballFile]?
    }

    public var id: String?
    public var name: String?
    public var value: [Listing]?
    public var offset: Int?
    public var limit: Int?
    public var size: Int?
}
