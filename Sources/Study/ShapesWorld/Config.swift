import TensorIO

/// Any problem with the synthesis options or the input files; the message
/// says what is wrong and, where it helps, what would be accepted.
public struct SynthesisError: MessageError, Equatable {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

/// The splits of issue 4. Teacher splits hold all classes (and carry the
/// artifact only on the glyph family of the digit-aware teacher world); the
/// others hold the subtask's classes relabelled 0..<K. Only
/// `distill-train`, `distill-val`, `test` and `distill-train-decorrelated`
/// depend on ρ.
///
/// The first seven are the published protocol's splits (`published`, what
/// `--splits all` writes). The last two (`basis`, issue 11) re-render
/// distill-train's base images for estimating the relevant subspace on
/// other data: `distill-train-clean` without any artifact, and
/// `distill-train-decorrelated` with the artifact on the same round(ρN)
/// images but a digit drawn independently of the label.
public enum SplitName: String, CaseIterable, Sendable, Hashable {
    case teacherTrain = "teacher-train"
    case teacherVal = "teacher-val"
    case distillTrain = "distill-train"
    case distillVal = "distill-val"
    case test = "test"
    case testClean = "test-clean"
    case testConflict = "test-conflict"
    case distillTrainClean = "distill-train-clean"
    case distillTrainDecorrelated = "distill-train-decorrelated"

    /// The published protocol's seven splits, in canonical order.
    public static let published: [SplitName] = [.teacherTrain, .teacherVal, .distillTrain, .distillVal, .test, .testClean, .testConflict]
    /// The splits for estimating the relevant subspace on other data.
    public static let basis: [SplitName] = [.distillTrainClean, .distillTrainDecorrelated]

    public var isTeacher: Bool { self == .teacherTrain || self == .teacherVal }
    public var dependsOnRho: Bool {
        self == .distillTrain || self == .distillVal || self == .test || self == .distillTrainDecorrelated
    }
    /// Training splits follow the long-tail profile when one is asked for
    /// (the basis splits too: they hold distill-train's images).
    public var isTraining: Bool { self == .teacherTrain || basePool == .distillTrain }

    /// The pool of base images: the three test splits share theirs, so they
    /// differ only in the patch; so do distill-train and the basis splits.
    public var basePool: SplitName {
        switch self {
        case .testClean, .testConflict: return .test
        case .distillTrainClean, .distillTrainDecorrelated: return .distillTrain
        default: return self
        }
    }

    /// The MNIST pool a split's patches draw from (`DigitPools`): the test
    /// splits have their own, disjoint from everyone else's.
    public var digitPool: DigitPools.Part { basePool == .test ? .test : .train }

    /// The split whose contamination mask and patch draws (jitter,
    /// brightness, MNIST glyph choice) a split reuses: distill-train-
    /// decorrelated differs from distill-train only in the digit.
    var artifactSource: SplitName {
        self == .distillTrainDecorrelated ? .distillTrain : self
    }

    /// Split groups accepted by `--splits` besides the split names.
    public static let aliases: [String: [SplitName]] = [
        "all": SplitName.published,
        "basis": SplitName.basis,
        "teacher": [.teacherTrain, .teacherVal],
        "distill": [.distillTrain, .distillVal],
        "tests": [.test, .testClean, .testConflict],
        "rho": [.distillTrain, .distillVal, .test],
    ]

    /// Parses a comma-separated list of split names and aliases, keeping the
    /// canonical order and dropping repeats.
    public static func parseList(_ text: String) throws -> [SplitName] {
        var chosen = Set<SplitName>()
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !items.isEmpty else { throw SynthesisError(usage: "--splits: no split named") }
        for item in items {
            if let s = SplitName(rawValue: item) { chosen.insert(s); continue }
            if let group = aliases[item] { chosen.formUnion(group); continue }
            let known = SplitName.allCases.map(\.rawValue) + aliases.keys.sorted()
            throw SynthesisError(usage: "--splits: unknown split '\(item)' (known: \(known.joined(separator: ", ")))")
        }
        return SplitName.allCases.filter { chosen.contains($0) }
    }
}

/// Which classes the teacher splits hold (issue 11).
public enum TeacherWorld: String, CaseIterable, Sendable {
    /// The source's classes only (20 shape classes), all clean.
    case standard
    /// The 20 shape classes, clean, plus the `glyph` family: classes 20–24
    /// (glyph0..glyph4), whose image is an ordinary image of a uniformly
    /// random shape class carrying the corner patch with digit = glyph index.
    /// The teacher thus learns to read the digit as a feature of its own.
    /// Shapes world only.
    case digitAware = "digit-aware"
}

/// Images per class of each base pool (before any long-tail thinning).
public struct PerClassCounts: Equatable, Sendable {
    public var teacherTrain = 1500
    public var teacherVal = 100
    /// Shared by distill-train and the basis splits.
    public var distillTrain = 240
    public var distillVal = 60
    /// Shared by test, test-clean and test-conflict.
    public var test = 200

    public init() {}

    public subscript(split: SplitName) -> Int {
        get {
            switch split.basePool {
            case .teacherTrain: return teacherTrain
            case .teacherVal: return teacherVal
            case .distillTrain: return distillTrain
            case .distillVal: return distillVal
            default: return test
            }
        }
        set {
            switch split.basePool {
            case .teacherTrain: teacherTrain = newValue
            case .teacherVal: teacherVal = newValue
            case .distillTrain: distillTrain = newValue
            case .distillVal: distillVal = newValue
            default: test = newValue
            }
        }
    }
}

/// Which classes of teacher-train the long-tail profile runs over.
public enum ImbalanceClasses: String, CaseIterable, Sendable {
    /// Every class of the source (20 in the shapes world), in class-id order:
    /// the profile of the earlier studies.
    case all
    /// Only the subtask's classes (the family given by `--family`, or
    /// `--subtask-classes`), in subtask order, every other class at full
    /// size: the teacher meets the same tail inside the subtask as the
    /// student does in distill-train.
    case subtask
}

/// Everything `synthesize` can be asked; `SynthesisPlan.prepare` checks it.
public struct SynthesisConfig: Sendable {
    public var seed: UInt64 = 0
    /// Fraction of distillation and test images carrying the artifact.
    public var rho: Double = 0
    /// Subtask: a family of the world (stars, polygons, gratings, dots), a
    /// CIFAR-10 group (animals, vehicles) or a CIFAR-100 superclass (name or
    /// 0–19). nil: gratings, animals or vehicles_1 by source.
    public var family: String? = nil
    /// Explicit subtask as global class ids (instead of a family).
    public var subtaskClasses: [Int]? = nil
    public var splits: [SplitName] = SplitName.published
    /// The teacher's world: the 20 shape classes, or those plus the glyph
    /// family (classes 20–24) labelled by the corner digit.
    public var teacherWorld: TeacherWorld = .standard
    public var perClass = PerClassCounts()
    public var imageSize = 32
    /// Stripe contrast range of the gratings family (see `GratingStyle`).
    public var gratingContrast: ClosedRange<Float> = GratingStyle.defaultContrast
    /// Long-tail imbalance factor r ≥ 1 of the training splits: class c of K
    /// keeps round(n · r^(−c/(K−1))) images, at least 1. 1 = balanced.
    public var imbalance: Double = 1
    /// Over which classes teacher-train's profile runs (distill-train and
    /// its basis splits hold the subtask's classes only, so for them both
    /// choices give the same profile).
    public var imbalanceClasses: ImbalanceClasses = .all
    /// The fewest images a class of a thinned training split may keep;
    /// `prepare` refuses a configuration below it. nil: no floor beyond the
    /// profile's own 1 (the library default, so that existing callers keep
    /// their behaviour; `synthesize` passes its `--min-per-class`, 10).
    public var minPerClass: Int? = nil
    /// Distillation validation gets random digits (like test) instead of digit = label.
    public var valDecorrelated = false
    /// MNIST digits for the glyphs (`--digits mnist:PATH`, `--mnist`): an
    /// IDX images file or a folder of them (`MNISTDigits.locate`); nil: the
    /// 5 × 7 font. `mnistLabels`: the labels file of an images file (nil:
    /// derived from its name).
    public var mnistImages: String? = nil
    public var mnistLabels: String? = nil
    /// CIFAR binary batches for the base images (empty: the shapes world).
    public var cifarPaths: [String] = []
    public var cifarKind: CIFARKind? = nil
    /// Output folder, created if missing; checked for writability by
    /// `prepare` (nil: not checked, for in-memory use).
    public var outputDirectory: String? = nil

    public init() {}

    /// Bounds of the image side.
    public static let imageSizeRange = 32...512
}

import Foundation
