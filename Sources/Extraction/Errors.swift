/// A user-facing error of the extraction stage (bad options, mismatched
/// teacher/student/data); the CLI prints it as `extract-subspace: error: …`.
public struct ExtractionError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
