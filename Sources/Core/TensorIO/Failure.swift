import Foundation

/// What kind of failure stopped a tool; its exit status says which
/// (docs/stages.md, "Exit status"; the codes are BSD's sysexits.h).
public enum FailureKind: Int32, Sendable, CaseIterable {
    /// Anything else (training diverged, an internal error): 1.
    case failure = 1
    /// A bad option or argument: 64 (EX_USAGE).
    case usage = 64
    /// Bad input data: an unreadable or malformed artifact, inputs that do
    /// not fit together: 65 (EX_DATAERR).
    case data = 65
    /// A missing input file, an output that cannot be written: 74 (EX_IOERR).
    case io = 74

    public var exitCode: Int32 { rawValue }

    /// The kind of any error: a `ClassifiedError`'s own; Foundation's file
    /// and POSIX errors are I/O, decoding errors bad data, anything else a
    /// failure.
    public init(of error: Error) {
        switch error {
        case let e as ClassifiedError: self = e.kind
        case is DecodingError: self = .data
        default:
            // Foundation's file errors (CocoaError) and POSIX errors, by
            // domain: every Swift error bridges to NSError.
            let domain = (error as NSError).domain
            self = domain == NSCocoaErrorDomain || domain == NSPOSIXErrorDomain ? .io : .failure
        }
    }
}

/// An error that knows its `FailureKind`. Every error type of the stage
/// libraries is one, so a tool maps any failure onto its exit status.
public protocol ClassifiedError: Error {
    var kind: FailureKind { get }
}

/// The stage libraries' error types: a message for the user (printed as
/// `<tool>: error: <message>`) and a kind.
public protocol MessageError: ClassifiedError, CustomStringConvertible {
    var message: String { get }
    init(_ message: String, kind: FailureKind)
}

extension MessageError {
    /// A bad option value.
    public init(usage message: String) { self.init(message, kind: .usage) }
    /// A file that cannot be read or written.
    public init(io message: String) { self.init(message, kind: .io) }
    /// A failure caused by `error`, of the same kind (an unreadable file
    /// stays an I/O error when a stage names the file it was reading).
    public init(_ message: String, causedBy error: Error) { self.init(message, kind: FailureKind(of: error)) }
    public var description: String { message }
}
