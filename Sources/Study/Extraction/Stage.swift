import Foundation
import NN
import StageKit
import Subspace
import TensorIO

/// Everything `extract-subspace` is told (the CLI maps its options here).
public struct ExtractSubspaceConfig {
    public var teacher: String
    /// The distillation training split the bases are estimated on.
    public var data: String
    /// The split of the basis@k check; nil skips the check.
    public var val: String?
    public var out: String
    /// Student architecture whose taps give the default k (stage i pairs with stage i).
    public var studentArch: String?
    /// Comma-separated teacher taps; nil: every tap of the teacher.
    public var layers: String?
    /// k per layer: "8" (all layers), "8,16,16" (one per layer, in order) or
    /// "stage1=8,stage3=16" (named; the rest from the student).
    public var k: String?
    /// Comma-separated basis kinds or `all`.
    public var bases: String = ExtractSubspaceConfig.defaultBases
    public var positions: Int = Subspace.defaultPositionsPerImage
    public var seed: UInt64 = 0
    public var batch: Int = 64
    public var capAtContextRank = false
    /// ks of the basis@k check (each capped at d); nil: {1, 2, 4, paired k, 2 × paired k}.
    public var checkK: [Int]?
    public var quiet = false
    /// Run even when --val comes from another world than --data; the
    /// mismatch goes into the artifact's `meta.extra` (`ProvenanceChecks`).
    public var allowMismatch = false

    /// What the pipelines' `subdistill*` methods need by default; the Makefile adds more.
    public static let defaultBases = "prcaposdef,pca"

    public init(teacher: String, data: String, val: String?, out: String) {
        self.teacher = teacher; self.data = data; self.val = val; self.out = out
    }
}

/// Stage 3, `extract-subspace` (docs/methods.md, "Relevant subspace"): the
/// relevant subspace of each chosen teacher layer, estimated on the
/// distillation training split, written as `subspace.npz`.
///
/// Artifact: per layer and basis the entries of `SubspaceBasis.write`
/// (`<layer>/<kind>/U`, `mu`, `sigma2`, `eigenvalues`, `context_rank`,
/// `n_samples`); meta.parameters holds the options, the k per layer, the
/// subtask classes and `basis_split` (the name of the split estimated on,
/// see `basisSplit(of:)`); meta.inputs the SHA-256 of teacher, data and val;
/// meta.extra the speed (`images_per_second`, `pass_seconds`), `context_rank`
/// per layer, `layer_seeds` and the `basis_at_k` table.
public enum ExtractSubspaceStage {
    public static let stageName = "extract-subspace"

    /// Parses `--bases`: comma-separated kinds, or `all`.
    public static func parseBases(_ text: String) throws -> [BasisKind] {
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !names.isEmpty else { throw ExtractionError(usage: "--bases is empty; choose from \(BasisKind.allCases.map(\.rawValue).joined(separator: ", ")) or all") }
        var out: [BasisKind] = []
        for n in names {
            if n == "all" {
                for k in BasisKind.allCases where !out.contains(k) { out.append(k) }
                continue
            }
            guard let k = BasisKind(rawValue: n) else {
                throw ExtractionError("unknown basis '\(n)'; choose from \(BasisKind.allCases.map(\.rawValue).joined(separator: ", ")) or all")
            }
            if !out.contains(k) { out.append(k) }
        }
        return out
    }

    /// Parses `--layers` against the teacher's taps (nil: all of them).
    public static func parseLayers(_ text: String?, teacher: Model) throws -> [String] {
        guard let text else {
            guard !teacher.tapNames.isEmpty else {
                throw ExtractionError("the teacher '\(teacher.architecture)' has no stages (no pooling layer), so no layer to extract")
            }
            return teacher.tapNames
        }
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !names.isEmpty else { throw ExtractionError(usage: "--layers is empty; the teacher's layers are \(teacher.tapNames.joined(separator: ", "))") }
        for n in names where !teacher.tapNames.contains(n) {
            throw ExtractionError("the teacher ('\(teacher.architecture)') has no layer '\(n)'; its layers are \(teacher.tapNames.joined(separator: ", "))")
        }
        guard Set(names).count == names.count else { throw ExtractionError(usage: "--layers names a layer twice: \(text)") }
        return names
    }

    /// Channel count of each student stage built on the teacher's input,
    /// keyed by the teacher tap it pairs with (stage i ↔ stage i). Throws
    /// when the student has another number of stages.
    public static func studentWidths(architecture: String, teacher: Model) throws -> [String: Int] {
        let student: Model
        do {
            student = try Model(architecture: architecture, inputShape: teacher.inputShape, seed: 0)
        } catch let e as NNError {
            throw ExtractionError(usage: "--student-arch '\(architecture)' on \(teacher.inputShape) inputs: \(e.message)")
        }
        guard student.tapNames.count == teacher.tapNames.count else {
            throw ExtractionError("the student '\(architecture)' has \(student.tapNames.count) stages, the teacher '\(teacher.architecture)' has \(teacher.tapNames.count); stage i pairs with stage i, so both need the same number of stages (or give --k explicitly)")
        }
        var out: [String: Int] = [:]
        for name in student.tapNames { out[name] = student.tapShape(name)[2] }
        return out
    }

    /// The ks `--k` gives explicitly (see `ExtractSubspaceConfig.k`); layers it
    /// leaves out are absent.
    public static func explicitK(_ text: String?, layers: [String]) throws -> [String: Int] {
        var out: [String: Int] = [:]
        guard let text else { return out }
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        func number(_ s: String) throws -> Int {
            guard let v = Int(s), v > 0 else { throw ExtractionError(usage: "--k: '\(s)' is not a positive integer") }
            return v
        }
        if items.contains(where: { $0.contains("=") }) {
            for item in items {
                let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2 else { throw ExtractionError(usage: "--k: mix of named and plain entries in '\(text)'; use layer=k for every entry") }
                guard layers.contains(parts[0]) else {
                    throw ExtractionError(usage: "--k names layer '\(parts[0])', which is not extracted (layers: \(layers.joined(separator: ", ")))")
                }
                guard out[parts[0]] == nil else { throw ExtractionError(usage: "--k gives layer \(parts[0]) twice") }
                out[parts[0]] = try number(parts[1])
            }
        } else if items.count == 1 {
            let v = try number(items[0])
            for l in layers { out[l] = v }
        } else {
            guard items.count == layers.count else {
                throw ExtractionError(usage: "--k has \(items.count) values for \(layers.count) layers (\(layers.joined(separator: ", "))); give one, one per layer, or layer=k pairs")
            }
            for (l, s) in zip(layers, items) { out[l] = try number(s) }
        }
        return out
    }

    /// k per layer: `--k` where given, else the paired student stage's width.
    /// The student is consulted (and must pair stage by stage with the
    /// teacher) only when some layer has no explicit k.
    public static func resolveK(_ text: String?, layers: [String], studentArch: String?, teacher: Model) throws -> [String: Int] {
        var out = try explicitK(text, layers: layers)
        let missing = layers.filter { out[$0] == nil }
        guard !missing.isEmpty else { return out }
        guard let studentArch else {
            throw ExtractionError("no k for layer \(missing.joined(separator: ", ")): give --student-arch (k = the paired student layer's channel count) or --k")
        }
        let widths = try studentWidths(architecture: studentArch, teacher: teacher)
        for l in missing {
            guard let w = widths[l] else { throw ExtractionError("the student has no stage paired with teacher layer \(l)") }
            out[l] = w
        }
        return out
    }

    /// Runs the stage: checks everything up front, extracts, checks basis@k,
    /// writes `config.out` atomically. Returns what it wrote.
    @discardableResult
    public static func run(_ config: ExtractSubspaceConfig, log: @escaping (String) -> Void = StageKit.log) throws -> Artifact {
        // Inputs and options, before any long work.
        try requireFile(config.data, role: "distillation data (--data)")
        if let v = config.val { try requireFile(v, role: "validation data (--val)") }
        let teacherArtifact = try TeacherArtifact.load(config.teacher)
        let teacher = teacherArtifact.model
        let bases = try parseBases(config.bases)
        let layers = try parseLayers(config.layers, teacher: teacher)
        let ks = try resolveK(config.k, layers: layers, studentArch: config.studentArch, teacher: teacher)
        guard config.positions > 0 else { throw ExtractionError(usage: "--positions must be positive, got \(config.positions)") }
        guard config.batch > 0 else { throw ExtractionError(usage: "--batch must be positive, got \(config.batch)") }
        if let ck = config.checkK, let bad = ck.first(where: { $0 < 1 }) {
            throw ExtractionError(usage: "--check-k: k must be positive, got \(bad)")
        }
        let options = ExtractionOptions(layers: layers, k: ks, bases: bases, positions: config.positions,
                                        seed: config.seed, batch: config.batch,
                                        capAtContextRank: config.capAtContextRank)

        let data = try Dataset(path: config.data)
        let margin = try subtaskMargin(of: data, path: config.data, teacher: teacher)
        try RelevantSubspace.validate(teacher: teacher, margin: margin, options: options)
        try checkImages(data, path: config.data, teacher: teacher)
        var val: Dataset?
        if let v = config.val {
            let ds = try Dataset(path: v)
            try checkImages(ds, path: v, teacher: teacher)
            let vm = try subtaskMargin(of: ds, path: v, teacher: teacher)
            guard vm == margin else {
                throw ExtractionError("--val '\(v)' has subtask classes \(vm.subtaskClasses), --data '\(config.data)' has \(margin.subtaskClasses)")
            }
            if let bad = ds.labels.first(where: { $0 < 0 || $0 >= margin.count }) {
                throw ExtractionError("--val '\(v)': label \(bad) outside the subtask's \(margin.count) classes")
            }
            val = ds
        }
        // Provenance: the validation split comes from the data's world.
        var provenance = ProvenanceChecks(allowMismatch: config.allowMismatch)
        let world = SplitWorld(meta: data.meta)
        if let v = val {
            try provenance.world(SplitWorld(meta: v.meta), of: "--val '\(config.val!)'", matches: world, of: "--data '\(config.data)'")
        }
        for w in provenance.warnings { log("extract-subspace: " + w) }
        try ensureDirectory(forFile: config.out)
        var inputs = ["teacher": teacherArtifact.digest, "data": try sha256Hex(ofFile: config.data)]
        if let v = config.val { inputs["val"] = try sha256Hex(ofFile: v) }

        log("extract-subspace: teacher '\(teacher.architecture)', \(data.count) images of \(data.name), subtask classes \(margin.subtaskClasses)")
        log("extract-subspace: layers " + layers.map { "\($0) (d=\(teacher.tapShape($0)[2]), k=\(ks[$0]!))" }.joined(separator: ", ")
            + "; bases \(bases.map(\.rawValue).joined(separator: ","))")

        // The pass.
        let progress = ProgressLine()
        let result = try RelevantSubspace.extract(
            teacher: teacher, images: data.images, count: data.count, margin: margin, options: options,
            progress: config.quiet ? nil : { done, total in
                progress.update("extract-subspace: \(done)/\(total) images")
            })
        if !config.quiet { progress.finish() }
        log(String(format: "extract-subspace: %d images in %.2f s (%.1f images/s), eigen-solves %.3f s",
                   result.images, result.passSeconds, result.imagesPerSecond, result.solveSeconds))
        for l in layers {
            let cov = result.covariances[l]!
            log(String(format: "extract-subspace: %@: context rank %d of d=%d, N=%d, tr Σa=%.4g, tr Σc=%.4g",
                       l, result.contextRanks[l]!, cov.channels, cov.count, cov.traceA, cov.traceC))
        }

        // basis@k on the validation split, with bases fitted to the largest k of each grid.
        var table: BasisAtKTable?
        var checkSeconds = 0.0
        if let val {
            var checkBases: [SubspaceBasis] = []
            var grids: [String: [Int]] = [:]
            for l in layers {
                let d = teacher.tapShape(l)[2]
                let grid = config.checkK.map { Array(Set($0.map { min($0, d) })).sorted() }
                    ?? BasisAtK.defaultGrid(pairedK: ks[l]!, channels: d)
                grids[l] = grid
                for kind in bases { checkBases.append(try result.basis(layer: l, kind: kind, k: grid.last!)) }
            }
            let checkStart = ProgressLine.now()
            let t = try BasisAtK.evaluate(teacher: teacher, images: val.images, labels: val.labels, margin: margin,
                                          bases: checkBases, grid: { grids[$0.layer]! }, batch: config.batch)
            checkSeconds = ProgressLine.now() - checkStart
            log(t.formatted)
            log(String(format: "extract-subspace: basis@k check on %@ in %.2f s", val.name, checkSeconds))
            table = t
        }

        // The artifact.
        var parameters: [String: JSON] = [
            "layers": .array(layers.map { .string($0) }),
            "k": .object(ks.mapValues { .number(Double($0)) }),
            "bases": .array(bases.map { .string($0.rawValue) }),
            "positions": .number(Double(config.positions)),
            "batch": .number(Double(config.batch)),
            "cap_at_context_rank": .bool(config.capAtContextRank),
            "subtask_classes": .array(margin.subtaskClasses.map { .number(Double($0)) }),
            "teacher_architecture": .string(teacher.architecture),
            "data_split": .string(data.name),
            "basis_split": .string(basisSplit(of: data)),
        ]
        if let s = config.studentArch { parameters["student_arch"] = .string(s) }
        if let v = val { parameters["val_split"] = .string(v.name) }
        // What distill checks the student's training split against.
        if let world { parameters["world"] = world.json }
        if let ck = config.checkK { parameters["check_k"] = .array(ck.map { .number(Double($0)) }) }
        var extra: [String: JSON] = [
            "images": .number(Double(result.images)),
            "images_per_second": .number(result.imagesPerSecond),
            "pass_seconds": .number(result.passSeconds),
            "solve_seconds": .number(result.solveSeconds),
            "context_rank": .object(result.contextRanks.mapValues { .number(Double($0)) }),
            "layer_seeds": .object(result.layerSeeds.mapValues { .string(String($0)) }),
            "channels": .object(Dictionary(uniqueKeysWithValues: layers.map { ($0, JSON.number(Double(teacher.tapShape($0)[2]))) })),
        ]
        if let table {
            extra["basis_at_k"] = table.json
            extra["check_seconds"] = .number(checkSeconds)
        }
        var artifact = Artifact(meta: ArtifactMeta(stage: stageName, parameters: parameters, inputs: inputs,
                                                   seed: config.seed, extra: extra.merging(provenance.metaExtra) { a, _ in a }))
        for b in result.bases { b.write(into: &artifact) }
        try NPZ.write(artifact, to: config.out)
        log("extract-subspace: wrote \(config.out)")
        return artifact
    }

    /// The name of the split the bases are estimated on, recorded as
    /// meta.parameters.basis_split (issue 11; `evaluate` copies it into the
    /// run description): the split's own meta `split` parameter (written by
    /// synthesize, e.g. "distill-train-decorrelated"), else the file name
    /// without its extension.
    public static func basisSplit(of data: Dataset) -> String {
        if let s = data.meta?.parameters["split"]?.string, !s.isEmpty { return s }
        return data.name
    }

    /// The subtask of a distillation split, from its meta `subtask_classes`.
    static func subtaskMargin(of data: Dataset, path: String, teacher: Model) throws -> SubtaskMargin {
        let classes = teacher.outputShape.reduce(1, *)
        guard let sub = data.subtaskClasses else {
            throw ExtractionError("'\(path)' names no subtask (meta.parameters.subtask_classes); extract-subspace needs a distillation split written by synthesize")
        }
        do {
            return try SubtaskMargin(subtaskClasses: sub, teacherClasses: classes)
        } catch let e as ExtractionError {
            throw ExtractionError("'\(path)': \(e.message)", causedBy: e)
        }
    }

    static func checkImages(_ data: Dataset, path: String, teacher: Model) throws {
        guard data.imageShape == teacher.inputShape else {
            throw ExtractionError("'\(path)' has \(data.imageShape) images, the teacher takes \(teacher.inputShape)")
        }
        guard data.count > 0 else { throw ExtractionError("'\(path)' holds no images") }
    }
}
