import ArgumentParser
import Foundation
import TensorIO

/// The one error path of every tool: runs the root command and ends the
/// process with the exit status of what happened (docs/stages.md, "Exit
/// status"), a message on stderr for a failure:
///
/// | status | meaning |
/// |---|---|
/// | 0 | success (also `--help`, `--version`) |
/// | 1 | any other failure (training diverged, an internal error) |
/// | 64 | usage: an unknown option, a missing or bad option value (EX_USAGE) |
/// | 65 | bad input data: an unreadable or malformed artifact, inputs that do not fit together (EX_DATAERR) |
/// | 74 | I/O: a missing input file, an output that cannot be written (EX_IOERR) |
///
/// A tool's own status (`tensors diff`: 2 when the files differ) is an
/// `ExitCode` thrown by its `run()`, passed on silently.
public func runMain<Command: ParsableCommand>(_ command: Command.Type, arguments: [String]? = nil) -> Never {
    do {
        var c = try command.parseAsRoot(arguments)
        try c.run()
        exit(0)
    } catch {
        let outcome = Outcome(error, command: command)
        if let text = outcome.message {
            if outcome.status == 0 {
                print(text)
            } else {
                FileHandle.standardError.write(Data((text + "\n").utf8))
            }
        }
        exit(outcome.status)
    }
}

/// What `runMain` does with an error: the exit status and the text to
/// print (stdout for status 0, else stderr).
public struct Outcome: Equatable {
    public var status: Int32
    public var message: String?

    /// The stage libraries' errors by their `FailureKind`; ArgumentParser's
    /// own (unknown option, bad value, `ValidationError`) as usage errors,
    /// with the usage line; `--help`/`--version` as success; an `ExitCode`
    /// as itself.
    public init<Command: ParsableCommand>(_ error: Error, command: Command.Type) {
        let tool = command.configuration.commandName
            ?? URL(fileURLWithPath: CommandLine.arguments.first ?? "tool").lastPathComponent
        if let code = error as? ExitCode {
            self.init(status: code.rawValue, message: nil)
        } else if error is ClassifiedError {
            self.init(status: FailureKind(of: error).exitCode, message: "\(tool): error: \(error)")
        } else {
            let code = command.exitCode(for: error)
            let text = command.fullMessage(for: error)
            if code == .success {
                self.init(status: 0, message: text.isEmpty ? nil : text)
            } else if code == .validationFailure {
                // "Error: …\nUsage: …": the first line as "<tool>: error: …".
                let body = text.hasPrefix("Error: ") ? String(text.dropFirst(7)) : text
                self.init(status: FailureKind.usage.exitCode, message: "\(tool): error: \(body)")
            } else {
                self.init(status: FailureKind(of: error).exitCode, message: "\(tool): error: \(error)")
            }
        }
    }

    public init(status: Int32, message: String?) {
        self.status = status
        self.message = message
    }
}

/// One line for each tool's `--help` discussion.
public let exitStatusHelp = "Exit status: 0 success, 64 usage error, 65 bad input data, 74 I/O error"
    + " (missing input, unwritable output), 1 other failure (docs/stages.md, \"Exit status\")."

/// `<tool> --version`: the version and the commit the tool was built from.
public let toolVersion = BuildInfo.versionLine
