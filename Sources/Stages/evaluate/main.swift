// `evaluate`: stage 5a, the metrics of one student (and of its teacher) on
// the three test splits. The work is in the Evaluation library.
import ArgumentParser
import CLIKit
import Evaluation
import Foundation
import StageKit

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Measure a distilled student and its teacher on test, test-clean and test-conflict.",
        discussion: """
            Reads the student network (model/ entries of student.npz), the teacher \
            (teacher.npz, logits cut to the split's subtask_classes) and DIR/test.npz, \
            DIR/test-clean.npz, DIR/test-conflict.npz. Writes --out (metrics.json: run \
            description, student and teacher metrics) and metrics.npz beside it (the same \
            numbers plus per-class, per-group and per-image arrays, input digests in its \
            metadata), and with --heatmap a PNG of LRP-ε maps of teacher and student on \
            test-conflict images.

            Metrics, evaluation mode: accuracy on test (published metric), test-clean and \
            test-conflict; worst-group accuracy with groups class × artifact state over \
            test-clean ∪ test-conflict (every class has both states at every rho); \
            worst-class accuracy (minimum per-class recall on test); agreement of the \
            student's argmax with the teacher's on test; share of input relevance inside \
            the artifact patch on test-conflict, by gradient × input and by LRP-ε, of the \
            logit margin z_y − max_{c≠y} z_c (share = Σ_patch |R_pixel| / Σ_all |R_pixel|, \
            R_pixel summed over channels, mean over images).

            Artifact probe (always): image pairs that share base images and differ only in \
            the corner patch (test-clean/test-conflict, or --probe-clean/--probe-patched); at \
            every position of each stage tap Δ = a(patched) − a(clean), Σ_art = E[Δ Δᵀ], \
            Σ_total = the centred covariance of a(clean), Σ_digit = the between-digit part \
            of Σ_art. Per layer of student and teacher the artifact share \
            tr Σ_art / tr Σ_total (and digit share tr Σ_digit / tr Σ_total); with --subspace, \
            per teacher layer and basis the share of the artifact-driven variance inside the \
            basis, tr(U_kᵀ Σ_art U_k) / tr Σ_art (near 1: the basis passes the shortcut to \
            the student; near 0: it filters it), and the same for Σ_digit and Σ_total. In \
            metrics.json under "probe", in metrics.npz under probe/.

            Worst-class study (docs/protocol.md, "Metrics"): calibration of the softmax \
            over the subtask logits on test, for the student and the teacher, and for the \
            teacher also with its log_shift removed (the scores a --calibrated-teacher \
            student sees): per-class one-vs-rest ECE with 10 equal-width bins, its mean and \
            max over classes, top-label ECE and reliability bins ("calibration", \
            "calibration_shift_removed"); the student's post-hoc logit adjustment, argmax \
            z_y − log π_y with π the class frequencies it recorded as train_class_counts \
            ("logit_adjusted"; absent for older students); and the "dro" record of a dro \
            student or teacher (meta.extra.dro), copied. A malformed train_class_counts or \
            dro record stops the stage with status 65 before anything is written.

            --set key=value fills the run description (keys: \
            \(RunSettings.knownKeys.joined(separator: ", "))); the student's and teacher's \
            metadata fill what is not set.

            \(exitStatusHelp)
            """,
        version: toolVersion)

    @Option(help: ArgumentHelp("Student artifact (distill output).", valueName: "student.npz"))
    var student: String

    @Option(help: ArgumentHelp("Teacher artifact (train-teacher output).", valueName: "teacher.npz"))
    var teacher: String

    @Option(help: ArgumentHelp("Folder with test.npz, test-clean.npz and test-conflict.npz.", valueName: "dir"))
    var data: String

    @Option(help: ArgumentHelp("metrics.json to write (metrics.npz goes beside it).", valueName: "metrics.json"))
    var out: String

    @Option(help: ArgumentHelp("Heatmap PNG to write (LRP-ε of teacher and student on test-conflict images).", valueName: "heatmap.png"))
    var heatmap: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Run description field, repeatable.", valueName: "key=value"))
    var sets: [String] = []

    @Option(help: "Images per forward/backward batch.")
    var batch: Int = 50

    @Option(name: .customLong("lrp-epsilon"), help: "LRP-ε stabiliser factor: ε = factor · std of each layer's pre-activations over the test split.")
    var lrpEpsilon: Float = 0.25

    @Option(help: "Images shown in the heatmap.")
    var heatmapImages: Int = 8

    @Option(help: "Upscaling factor of the heatmap panels.")
    var heatmapScale: Int = 4

    @Option(help: ArgumentHelp("Cache of the teacher's evaluation, shared by the students of one data folder: read when it matches the teacher, the splits and the options, else written.", valueName: "file.npz"))
    var teacherCache: String?

    @Option(help: ArgumentHelp("Subspace whose bases the probe measures (extract-subspace output); its basis_split fills the run description when the student's metadata has none.", valueName: "subspace.npz"))
    var subspace: String?

    @Option(help: ArgumentHelp("Clean split of the probe's image pairs (default DIR/test-clean.npz); give --probe-patched too.", valueName: "split.npz"))
    var probeClean: String?

    @Option(help: ArgumentHelp("Patched split of the probe's image pairs, the same base images with the patch (default DIR/test-conflict.npz), e.g. distill-train-decorrelated.npz with distill-train-clean.npz.", valueName: "split.npz"))
    var probePatched: String?

    @Flag(help: "Run even when the student records another teacher or subspace than the ones given, or its training split another world than the test splits; the mismatches go into metrics.npz meta.extra.provenance_mismatches (docs/stages.md, \"Provenance\").")
    var allowMismatch = false

    @OptionGroup var threadsOption: ThreadsOption

    func run() throws {
        Threads.configure(requested: threadsOption.threads)
        let options = EvaluateOptions(student: student, teacher: teacher, data: data, out: out, heatmap: heatmap,
                                      sets: sets, batchSize: batch, epsilonFactor: lrpEpsilon,
                                      heatmapImages: heatmapImages, heatmapScale: heatmapScale,
                                      teacherCache: teacherCache, subspace: subspace,
                                      probeClean: probeClean, probePatched: probePatched, allowMismatch: allowMismatch)
        let start = ProgressLine.now()
        _ = try EvaluateStage.run(options) { log("evaluate: " + $0) }
        log("evaluate: wrote \(out) and \(options.npzPath)\(heatmap.map { " and " + $0 } ?? "") in \(ProgressLine.format(seconds: ProgressLine.now() - start))")
    }
}

runMain(Evaluate.self)
