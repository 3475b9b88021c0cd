/// Any problem with the synthesis options or the input files; the message
/// says what is wrong and, where it helps, what would be accepted.
public struct SynthesisError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The splits of issue 4. Teacher splits hold all classes and never carry
/// the artifact; the others hold the subtask's classes relabelled 0..<K.
/// Only `distill-train`, `distill-val` and `test` depend on ρ.
public enum SplitName: String, CaseIterable, Sendable, Hashable {
    case teacherTrain = "teacher-train"
    case teacherVal = "teacher-val"
    case distillTrain = "distill-train"
    case distillVal = "distill-val"
    case test = "test"
    case testClean = "test-clean"
    case testConflict = "test-conflict"

    public var isTeacher: Bool { self == .teacherTrain || self == .teacherVal }
    public var dependsOnRho: Bool { self == .distillTrain || self == .distillVal || self == .test }
    /// Training splits follow the long-tail profile when one is asked for.
    public var isTraining: Bool { self == .teacherTrain || self == .distillTrain }

    /// The pool of base images: the three test splits share theirs, so they
    /// differ only in the patch.
    public var basePool: SplitName {
        switch self {
        case .testClean, .testConflict: return .test
        default: return self
        }
    }

    /// Split groups accepted by `--splits` besides the split names.
    public static let aliases: [String: [SplitName]] = [
        "all": SplitName.allCases,
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
        guard !items.isEmpty else { throw SynthesisError("--splits: no split named") }
        for item in items {
            if let s = SplitName(rawValue: item) { chosen.insert(s); continue }
            if let group = aliases[item] { chosen.formUnion(group); continue }
            let known = SplitName.allCases.map(\.rawValue) + aliases.keys.sorted()
            throw SynthesisError("--splits: unknown split '\(item)' (known: \(known.joined(separator: ", ")))")
        }
        return SplitName.allCases.filter { chosen.contains($0) }
    }
}

/// Images per class of each base pool (before any long-tail thinning).
public struct PerClassCounts: Equatable, Sendable {
    public var teacherTrain = 500
    public var teacherVal = 100
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
    public var splits: [SplitName] = SplitName.allCases
    public var perClass = PerClassCounts()
    public var imageSize = 32
    /// Long-tail imbalance factor r ≥ 1 of the training splits: class c of K
    /// keeps round(n · r^(−c/(K−1))) images, at least 1. 1 = balanced.
    public var imbalance: Double = 1
    /// Distillation validation gets random digits (like test) instead of digit = label.
    public var valDecorrelated = false
    /// MNIST IDX images file for the glyphs, and its labels file (nil:
    /// derived from the images path).
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
