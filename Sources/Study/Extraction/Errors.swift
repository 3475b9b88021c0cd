import TensorIO

/// A user-facing error of the extraction stage (bad options, mismatched
/// teacher/student/data); the CLI prints it as `extract-subspace: error: …`.
public struct ExtractionError: MessageError, Equatable {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}
