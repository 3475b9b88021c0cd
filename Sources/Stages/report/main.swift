// `report`: gathers every metrics.json of a pipeline into results.csv,
// summary.md and SVG figures. The work is in the Reporting library.
import ArgumentParser
import CLIKit
import Foundation
import Reporting

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Summarise every student run of a pipeline: results.csv, summary.md and SVG figures.",
        discussion: """
            Reads every metrics.json under --root (recursively, in sorted path order)
            and writes to --out, each file atomically:

            results.csv: one row per run.
            summary.md: per metric a methods × ρ table (mean ± half-width of the
            95 % confidence interval over seeds, Student t; with a teacher row),
            the methods that cannot be told apart at the largest ρ, the runs found
            per method × ρ, missing runs, and teacher × student objective grids
            when the objectives vary.
            accuracy-vs-rho.svg: test (published), clean and conflict accuracy vs ρ.
            relevance-vs-rho.svg: share of relevance inside the artifact patch vs ρ.
            worst-vs-overall.svg: worst-class vs overall accuracy per objective
            pair (only when the objectives vary).

            When the teacher or student objectives vary (the worst-class study,
            pipelines/longtail.mk), summary.md adds: the Pareto view per imbalance
            factor (every teacher × student objective, calibrated-teacher variant
            and β; mean [95 % interval] of overall and worst-class test accuracy;
            the front of the means; baselines: the erm teacher's std, logit-adjusted
            std (std+LA, derived from evaluate's logit_adjusted block) and reweighted
            students; which baselines each combination dominates); the teachers'
            calibration (own accuracies, per-class ECE mean/max raw and with the
            shift removed); Spearman and Pearson correlations of the teacher's
            per-class ECE and of its worst-class accuracy with the student's
            worst-class accuracy, per student objective and pooled (also within
            each imbalance factor when it varies); and the DRO
            group weights (updates, log λ range). Figures: pareto-<panel>.svg,
            reliability-<teacher>.svg, dro-trajectory.svg; figures of this kind
            left from an earlier report that no longer match are removed.

            A partial set of runs gives a report over what exists; the runs found
            per method × ρ and expected-but-absent runs (--expect) are printed on
            stderr and listed in summary.md. Exit status 0 when at least one run
            was read; 65 when none was (nothing is written) or on bad input, and
            with --strict also when runs are missing or unreadable (after writing
            the report); 74 when --root or --expect cannot be read or the report
            cannot be written; 64 on a usage error (docs/stages.md, "Exit status").
            """,
        version: toolVersion)

    @Option(help: ArgumentHelp("Folder searched recursively for metrics.json files.", valueName: "dir"))
    var root: String

    @Option(help: ArgumentHelp("Output folder for the report (created if needed). Default: <root>/report.", valueName: "dir"))
    var out: String?

    @Option(help: ArgumentHelp("Comma-separated display order of methods; unlisted methods follow in order of first appearance.",
                               valueName: "m1,m2,..."))
    var methods: String?

    @Option(help: ArgumentHelp("File listing the expected metrics.json paths, one per line (relative to the current folder or to --root); absent ones are reported.",
                               valueName: "file"))
    var expect: String?

    @Flag(help: "Exit with status 65 (after writing the report) when expected runs are missing or metrics.json files are unreadable.")
    var strict = false

    @OptionGroup var quietFlag: QuietFlag

    func run() throws {
        let order = (methods ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let options = ReportOptions(root: root, out: out ?? (root.hasSuffix("/") ? root + "report" : root + "/report"),
                                    methodOrder: order, expectFile: expect)
        let quiet = quietFlag.quiet
        let result = try ReportStage.run(options) { line in
            let important = line.hasPrefix("warning") || line.hasPrefix("unreadable") || line.contains("missing")
            if !quiet || important { eprint("report: " + line) }
        }
        let g = result.gaps
        if strict && (!g.missing.isEmpty || !g.unreadable.isEmpty) {
            throw ReportError.incomplete(missing: g.missing.count, unreadable: g.unreadable.count)
        }
    }
}

func eprint(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

runMain(ReportCommand.self)
