import ArgumentParser
import CLIKit
import Distill
import Foundation
import StageKit
import TensorIO

/// `select-hparams`: the tuning step (docs/methods.md, "Tuning protocol").
/// Reads the tuning students of one method (every grid point × tuning seed,
/// trained in the ρ = 0 world), averages each point's best validation
/// accuracy over the seeds and writes the tuning artifact: every candidate's
/// scores and the chosen values, which `distill --tuned` applies.
struct SelectHParams: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "select-hparams",
        abstract: "Choose a method's hyper-parameters from its tuning students (best mean validation accuracy).",
        discussion: "Each STUDENT is a distill output trained at one point of the method's grid (distill --list-tuning);"
            + " every point needs the same number of students (one per tuning seed). Ties go to the first point in"
            + " grid order. Writes OUT (JSON) atomically.\n\n" + exitStatusHelp,
        version: toolVersion)

    @Option(help: "The method the students were trained with (its grid: distill --list-tuning).") var method: String
    @Option(help: "Output tuning artifact (.json).") var out: String
    @Argument(help: "Tuning students (student.npz).") var students: [String]

    func run() throws {
        let m = try DistillMethod(parsing: method)
        guard !students.isEmpty else { throw DistillError(usage: "no tuning student given") }
        for s in students { try requireFile(s, role: "tuning student") }
        var result = try TuningResult.select(method: m, grid: m.spec.tuningGrid, students: students)
        // Students under OUT's folder are recorded relative to it, so the
        // artifact does not depend on where the artifacts tree lives.
        let base = URL(fileURLWithPath: out).deletingLastPathComponent().standardizedFileURL.path + "/"
        func relative(_ p: String) -> String {
            let a = URL(fileURLWithPath: p).standardizedFileURL.path
            return a.hasPrefix(base) ? String(a.dropFirst(base.count)) : p
        }
        for i in result.candidates.indices { result.candidates[i].students = result.candidates[i].students.map(relative) }
        var inputs: [String: String] = [:]
        for s in students { inputs[relative(s)] = try sha256Hex(ofFile: s) }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        try ensureDirectory(forFile: out)
        try atomicWrite(Array(try enc.encode(result.json(inputs: inputs))), to: out)
        for c in result.candidates {
            StageKit.log(String(format: "select-hparams: %@ %@: mean val acc %.4f over %d", m.name, c.point.arguments, c.mean, c.accuracies.count))
        }
        StageKit.log("select-hparams: chose \(result.choice.arguments) for \(m.name); wrote \(out)")
    }
}

/// Errors print as `select-hparams: error: …` with the exit status of their kind (docs/stages.md, "Exit status").
runMain(SelectHParams.self)
