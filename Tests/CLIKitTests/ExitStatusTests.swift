import ArgumentParser
import CLIKit
import Distill
import Foundation
import Reporting
import ShapesWorld
import StageKit
import TensorIO
import Testing

/// A tool with one required option and one checked in `validate()`.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "probe", version: toolVersion)
    @Option var out: String
    @Option var count = 1
    func validate() throws { guard count > 0 else { throw ValidationError("--count must be positive") } }
}

func outcome(_ arguments: [String]) -> Outcome {
    do {
        // --help parses into ArgumentParser's help command, which throws when run.
        var command = try Probe.parseAsRoot(arguments)
        if !(command is Probe) { try command.run() }
        return Outcome(status: 0, message: nil)
    } catch {
        return Outcome(error, command: Probe.self)
    }
}

@Test func argumentErrorsAreUsageErrors() {
    for args in [["--bogus"], [], ["--out", "x", "--count", "many"], ["--out", "x", "--count", "0"]] {
        let o = outcome(args)
        #expect(o.status == 64, "\(args)")
        #expect(o.message?.hasPrefix("probe: error: ") == true && o.message?.lowercased().contains("usage: probe") == true, "\(o.message ?? "")")
    }
}

@Test func helpAndVersionExitCleanly() {
    let help = outcome(["--help"])
    #expect(help.status == 0 && help.message?.contains("--out <out>") == true, "\(help)")
    let version = outcome(["--version"])
    #expect(version.status == 0 && version.message == BuildInfo.versionLine)
    #expect(BuildInfo.versionLine.contains(BuildInfo.version) && BuildInfo.versionLine.contains(BuildInfo.commit))
}

@Test func stageErrorsExitWithTheirKind() {
    let cases: [(Error, Int32)] = [
        (StageError(io: "teacher 'x' does not exist or is not readable"), 74),
        (StageError("the splits have different classes"), 65),
        (StageError(usage: "--epochs must be positive"), 64),
        (TensorIOError("x.npz: not a zip archive"), 65),
        (TensorIOError(io: "x.npz: cannot open: No such file or directory"), 74),
        (DistillError("the loss is not finite", kind: .failure), 1),
        (SynthesisError(usage: "--rho must be in [0, 1]"), 64),
        (ReportError.rootMissing("r"), 74),
        (ReportError.incomplete(missing: 2, unreadable: 0), 65),
        (DistillError("teacher 'x': cannot open", causedBy: TensorIOError(io: "cannot open")), 74),
        (CocoaError(.fileNoSuchFile), 74),
        (ValidationError("--tol must be ≥ 0"), 64),
        (NSError(domain: "elsewhere", code: 3), 1),
    ]
    for (error, status) in cases {
        let o = Outcome(error, command: Probe.self)
        #expect(o.status == status, "\(error)")
        #expect(o.message?.hasPrefix("probe: error: ") == true, "\(o.message ?? "")")
    }
    #expect(Outcome(StageError(io: "folder 'a' is not writable"), command: Probe.self).message == "probe: error: folder 'a' is not writable")
    // A tool's own status passes silently.
    #expect(Outcome(ExitCode(2), command: Probe.self) == Outcome(status: 2, message: nil))
}

@Test func wrappedErrorsKeepTheKindOfTheirCause() throws {
    let dir = NSTemporaryDirectory() + "clikit-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // A missing file is I/O, a file that is no artifact bad data, also
    // through the stage types that name the file.
    #expect(throws: TensorIOError.self) { try NPZ.read(dir + "/missing.npz") }
    do { _ = try NPZ.read(dir + "/missing.npz") } catch { #expect(FailureKind(of: error) == .io) }
    try atomicWrite(Array("garbage".utf8), to: dir + "/bad.npz")
    do { _ = try Dataset(path: dir + "/bad.npz") } catch { #expect(FailureKind(of: error) == .data) }
    do { try requireFile(dir + "/missing.npz", role: "teacher") } catch { #expect(FailureKind(of: error) == .io) }
}
