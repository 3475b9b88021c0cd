import ArgumentParser
import CLIKit
import Extraction
import Foundation
import StageKit

/// `extract-subspace`: stage 3 (issue 6). Options map onto
/// `ExtractSubspaceConfig`; the work is `ExtractSubspaceStage.run`.
struct ExtractSubspace: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract-subspace",
        abstract: "Relevant subspace of each teacher layer (docs/methods.md, \"Relevant subspace\"), written as subspace.npz.",
        discussion: """
        For every image of --data: the teacher in evaluation mode, f = top-1 minus top-2 of its \
        subtask logits, c = df/da at each chosen layer by back-propagation, --positions random \
        positions per image; then per layer and basis U_k, mu, sigma2 (entries <layer>/<basis>/U, \
        mu, sigma2, eigenvalues, context_rank, n_samples). With --val, logs the teacher's subtask \
        accuracy when one layer is replaced by its rank-k reconstruction (basis@k, also in \
        meta.extra.basis_at_k). --seed seeds the position draws and the random basis.

        \(exitStatusHelp)
        """,
        version: toolVersion)

    @Option(name: .long, help: "Teacher artifact (teacher.npz).")
    var teacher: String

    @Option(name: .long, help: "Split the bases are estimated on, e.g. distill-train.npz or distill-train-decorrelated.npz (its meta gives the subtask classes; its name is recorded as meta.parameters.basis_split).")
    var data: String

    @Option(name: .long, help: "Validation split for the basis@k check (omit to skip the check).")
    var val: String?

    @Option(name: .long, help: "Output artifact (subspace.npz).")
    var out: String

    @Option(name: .long, help: "Student architecture: k of teacher stage i = channel count of student stage i.")
    var studentArch: String?

    @Option(name: .long, help: "Comma-separated teacher layers (default: every stage, stage1,stage2,...).")
    var layers: String?

    @Option(name: .long, help: "k per layer: one value, one per layer (comma-separated) or layer=k pairs (default: from --student-arch).")
    var k: String?

    @Option(name: .long, help: "Comma-separated bases among prcaposdef, pca, gradpca, prca, random, or all.")
    var bases: String = ExtractSubspaceConfig.defaultBases

    @Option(name: .long, help: "Spatial positions drawn per image.")
    var positions: Int = 20

    @OptionGroup var seedOption: SeedOption

    @Option(name: .long, help: "Images per forward/backward batch.")
    var batch: Int = 64

    @Flag(name: .long, help: "Keep min(k, numerical rank of the context covariance) directions per layer.")
    var capAtContextRank = false

    @Option(name: .long, help: "Comma-separated ks of the basis@k check (default 1,2,4,k,2k, capped at the layer width).")
    var checkK: String?

    @Flag(name: .customLong("allow-mismatch"), help: "Run even when --val comes from another world than --data; the mismatch goes into meta.extra.provenance_mismatches (docs/stages.md, \"Provenance\").")
    var allowMismatch = false

    @OptionGroup var threadsOption: ThreadsOption

    @OptionGroup var quietFlag: QuietFlag

    func run() throws {
        Threads.configure(requested: threadsOption.threads)
        var c = ExtractSubspaceConfig(teacher: teacher, data: data, val: val, out: out)
        c.studentArch = studentArch
        c.layers = layers
        c.k = k
        c.bases = bases
        c.positions = positions
        c.seed = seedOption.seed
        c.batch = batch
        c.capAtContextRank = capAtContextRank
        c.quiet = quietFlag.quiet
        c.allowMismatch = allowMismatch
        if let s = checkK {
            c.checkK = try s.split(separator: ",").map {
                guard let v = Int($0.trimmingCharacters(in: .whitespaces)) else {
                    throw ExtractionError(usage: "--check-k: '\($0)' is not an integer")
                }
                return v
            }
        }
        try ExtractSubspaceStage.run(c)
    }
}

runMain(ExtractSubspace.self)
