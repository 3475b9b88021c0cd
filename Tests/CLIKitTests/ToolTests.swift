import Foundation
import TensorIO
import Testing

/// A tool built beside the test bundle (`swift build --build-tests` builds them all).
func toolBinary(_ name: String) throws -> String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    if dir.pathExtension == "xctest" || dir.path.contains(".xctest/") { dir = dir.deletingLastPathComponent() }
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let p = candidate.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    throw TensorIOError("\(name) executable not found near \(exe); build it with `swift build`")
}

func runTool(_ name: String, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try toolBinary(name))
    p.arguments = args
    let o = Pipe(), e = Pipe()
    p.standardOutput = o; p.standardError = e
    try p.run()
    let od = o.fileHandleForReading.readDataToEndOfFile(), ed = e.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: od, as: UTF8.self), String(decoding: ed, as: UTF8.self))
}

let tools = ["synthesize", "train-teacher", "extract-subspace", "distill", "evaluate", "report", "tensors",
             "bench-io", "bench-nn", "bench-distill"]

@Test func everyToolAnswersVersion() throws {
    for tool in tools {
        let r = try runTool(tool, ["--version"])
        #expect(r.status == 0, "\(tool): \(r.err)")
        #expect(r.out == BuildInfo.versionLine + "\n", "\(tool): \(r.out)")
    }
}

@Test func everyToolDocumentsItsExitStatus() throws {
    for tool in tools {
        let r = try runTool(tool, ["--help"])
        #expect(r.status == 0 && r.out.contains("Exit status") && r.out.contains("74"), "\(tool)")
    }
}

/// The exit status of the stages: 64 usage, 65 bad input data, 74 I/O.
@Test func stagesExitWithTheDocumentedStatus() throws {
    let dir = NSTemporaryDirectory() + "clikit-tools-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let garbage = dir + "/garbage.npz", missing = dir + "/missing.npz"
    try atomicWrite(Array("no zip".utf8), to: garbage)
    let cases: [(String, [String], Int32)] = [
        ("distill", ["--bogus"], 64),
        ("train-teacher", ["--train", garbage], 64),                                  // --val, --out missing
        ("synthesize", ["--out", dir + "/d", "--rho", "2"], 64),
        ("train-teacher", ["--train", missing, "--val", missing, "--out", dir + "/t.npz"], 74),
        ("train-teacher", ["--train", garbage, "--val", garbage, "--out", dir + "/t.npz"], 65),
        ("evaluate", ["--student", missing, "--teacher", missing, "--data", dir, "--out", dir + "/m.json"], 74),
        ("extract-subspace", ["--teacher", garbage, "--data", garbage, "--out", dir + "/s.npz"], 65),
        ("report", ["--root", dir + "/nothing-here"], 74),
        ("report", ["--root", dir], 65),                                             // no metrics.json
        ("tensors", ["show", missing], 74),
    ]
    for (tool, args, status) in cases {
        let r = try runTool(tool, args)
        #expect(r.status == status, "\(tool) \(args): \(r.status) \(r.err)")
        #expect(r.err.contains("\(tool): error: "), "\(tool) \(args): \(r.err)")
    }
}
