import Foundation
FileHandle.standardError.write("DistillCLI: not yet implemented\n".data(using: .utf8)!)
exit(1)
