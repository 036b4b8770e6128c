import Foundation
import Integration

do {
    print(try AdminCommand.run(Array(CommandLine.arguments.dropFirst())))
} catch {
    FileHandle.standardError.write(Data("casehug-admin: \(error)\n".utf8))
    exit(1)
}
