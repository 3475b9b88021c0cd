import Foundation
import TensorIO

/// An error a stage reports to its user: printed as `<stage>: error: …` and
/// the exit status of its `kind` (`FailureKind`), never a crash.
public struct StageError: MessageError {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

/// Checks that a file exists and is readable, with a message naming it.
public func requireFile(_ path: String, role: String) throws {
    guard FileManager.default.isReadableFile(atPath: path) else {
        throw StageError(io: "\(role) '\(path)' does not exist or is not readable")
    }
}

/// Creates the folder a stage writes into (and its parents); errors name it.
public func ensureDirectory(forFile path: String) throws {
    let dir = (path as NSString).deletingLastPathComponent
    if dir.isEmpty { return }
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    } catch {
        throw StageError(io: "cannot create folder '\(dir)': \(error.localizedDescription)")
    }
    guard FileManager.default.isWritableFile(atPath: dir) else {
        throw StageError(io: "folder '\(dir)' is not writable")
    }
}
