import Foundation
FileHandle.standardError.write("ExtractSubspace: not yet implemented\n".data(using: .utf8)!)
exit(1)
