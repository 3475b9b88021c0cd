import Foundation

/// An error a stage reports to its user: printed as `<stage>: error: …` and
/// exit status 1, never a crash.
public struct StageError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Checks that a file exists and is readable, with a message naming it.
public func requireFile(_ path: String, role: String) throws {
    guard FileManager.default.isReadableFile(atPath: path) else {
        throw StageError("\(role) '\(path)' does not exist or is not readable")
    }
}

/// Creates the folder a stage writes into (and its parents); errors name it.
public func ensureDirectory(forFile path: String) throws {
    let dir = (path as NSString).deletingLastPathComponent
    if dir.isEmpty { return }
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    } catch {
        throw StageError("cannot create folder '\(dir)': \(error.localizedDescription)")
    }
    guard FileManager.default.isWritableFile(atPath: dir) else {
        throw StageError("folder '\(dir)' is not writable")
    }
}
