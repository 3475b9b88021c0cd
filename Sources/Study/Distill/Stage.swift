import Foundation
import NN
import StageKit
import Subspace
import TensorIO

/// The inputs and outputs of one `distill` run.
public struct DistillStageOptions {
    public var teacherPath: String
    public var trainPath: String
    public var valPath: String
    public var subspacePath: String?
    public var outPath: String
    public var config: DistillConfig
    /// A tuning artifact (`select-hparams`) whose chosen values override the
    /// method's defaults; `explicit` names the hyper-parameters the user set
    /// by option, which it must not contradict.
    public var tunedPath: String?
    public var explicit: Set<Hyperparameter> = []
    /// Run even when the inputs' provenance does not match (a validation
    /// split or a subspace's data from another world than the training
    /// split); the mismatches go into student.npz `meta.extra`.
    public var allowMismatch = false

    public init(teacherPath: String, trainPath: String, valPath: String, subspacePath: String?, outPath: String,
                config: DistillConfig, tunedPath: String? = nil, explicit: Set<Hyperparameter> = [],
                allowMismatch: Bool = false) {
        self.allowMismatch = allowMismatch
        self.teacherPath = teacherPath
        self.trainPath = trainPath
        self.valPath = valPath
        self.subspacePath = subspacePath
        self.outPath = outPath
        self.config = config
        self.tunedPath = tunedPath
        self.explicit = explicit
    }
}

/// Stage 4, `distill`: checks the inputs, computes the teacher's outputs
/// once, trains (resumable per epoch), writes `student.npz`:
///
/// | entry | content |
/// |---|---|
/// | `model/…` | the student (StageKit `NetworkArtifact`) at its best validation epoch |
/// | `method/…` | the method's learned state (see `DistillResult.methodState`) |
/// | `log/<series>` | per-epoch log of the kept candidate (float64): `val_accuracy` is the validation curve |
/// | `log/candidate<i>/<series>` | every candidate's log, when `--lambda-layer` lists several |
/// | `log/candidates/lambda_layer`, `log/candidates/best_val_accuracy` | the candidates' scores |
///
/// meta: stage `distill`, every parameter (`lambda_layer` = the kept
/// candidate's, `lambda_layer_candidates` = all, resolved `pairs`,
/// `subtask_classes`, `train_class_counts`, the split's `rho` and `family`), the SHA-256 of
/// teacher, train, val (and subspace), the seed; `extra` holds the log, the
/// candidates, the best epoch, `dead_channels` per pair at the kept epoch
/// (order: `dead_channels_pairs`) and the warnings.
public enum DistillStage {
    public struct Hooks {
        public var progress: ProgressLine?
        public var log: (String) -> Void = { _ in }
        public var warn: (String) -> Void = { _ in }
        /// Tests of resume: interrupt after this many epochs.
        public var stopAfterEpochs: Int?
        public init() {}
    }

    /// Runs the stage; writes `options.outPath` only on success.
    @discardableResult
    public static func run(_ o: DistillStageOptions, hooks: Hooks = Hooks()) throws -> DistillResult {
        var config = o.config
        var tuningDigest: String?
        if let path = o.tunedPath {
            try requireFile(path, role: "tuning artifact (--tuned)")
            let (m, values) = try TuningResult.chosenValues(path: path)
            guard m == config.method.name else {
                throw DistillError("tuning artifact '\(path)' chose hyper-parameters for \(m), not \(config.method.name)")
            }
            for (h, v) in values {
                guard !o.explicit.contains(h) else {
                    throw DistillError(usage: "\(h.option) given and also chosen by the tuning artifact '\(path)'; drop one")
                }
                h.apply(v, to: &config)
            }
            tuningDigest = try sha256Hex(ofFile: path)
        }
        try config.validate()
        let method = config.method
        try requireFile(o.teacherPath, role: "teacher")
        try requireFile(o.trainPath, role: "training split (--train)")
        try requireFile(o.valPath, role: "validation split (--val)")
        if method.basisKind != nil {
            guard let s = o.subspacePath else {
                throw DistillError(usage: "method \(method.name) needs --subspace (the relevant subspace written by extract-subspace for this teacher and student)")
            }
            try requireFile(s, role: "subspace")
        } else if o.subspacePath != nil {
            hooks.log("distill: note: --subspace is only read by the subdistill methods; ignored for \(method.name)")
        }
        try ensureDirectory(forFile: o.outPath)

        let train = try loadSplit(o.trainPath)
        let val = try loadSplit(o.valPath)
        var digests: [String: String] = [
            "teacher": try sha256Hex(ofFile: o.teacherPath),
            "train": try sha256Hex(ofFile: o.trainPath),
            "val": try sha256Hex(ofFile: o.valPath),
        ]
        if let d = tuningDigest { digests["tuning"] = d }
        // Provenance: the validation split and the subspace's data come from
        // the training split's world (ProvenanceChecks).
        var provenance = ProvenanceChecks(allowMismatch: o.allowMismatch)
        let world = SplitWorld(meta: train.meta)
        try provenance.world(SplitWorld(meta: val.meta), of: "validation split '\(o.valPath)'",
                             matches: world, of: "training split '\(o.trainPath)'")

        // The teacher (its network only when the method learns from it).
        var teacher: TeacherArtifact?
        if method.usesTeacher {
            do { teacher = try TeacherArtifact.load(o.teacherPath) } catch let e as TensorIOError {
                throw DistillError("teacher '\(o.teacherPath)': \(e.message)", causedBy: e)
            }
        }
        let classIndices = try subtaskClasses(train: train, val: val, teacherClasses: teacher?.model.outputShape.reduce(1, *))

        // The subspace: same teacher, the method's basis for each teacher layer.
        var bases: [String: SubspaceBasis] = [:]
        if let kind = method.basisKind, let path = o.subspacePath {
            let sub = try NPZ.read(path)
            let digest = try sha256Hex(ofFile: path)
            digests["subspace"] = digest
            let inputs = sub.meta?.inputs ?? [:]
            guard let recorded = inputs["teacher"] ?? inputs.first(where: { $0.key.lowercased().contains("teacher") })?.value else {
                throw DistillError("subspace '\(path)' records no teacher digest in its metadata (meta.inputs.teacher); cannot check that it belongs to teacher '\(o.teacherPath)'")
            }
            guard recorded == digests["teacher"] else {
                throw DistillError("subspace '\(path)' was computed from another teacher: its teacher digest \(recorded.prefix(16))… ≠ sha256 of '\(o.teacherPath)' \(digests["teacher"]!.prefix(16))…; re-run extract-subspace with this teacher")
            }
            try provenance.world(SplitWorld(recorded: sub.meta?.parameters["world"]), of: "the data of subspace '\(path)'",
                                 matches: world, of: "training split '\(o.trainPath)'")
            let stored = SubspaceBasis.stored(in: sub)
            for (layer, k) in stored where k == kind {
                do { bases[layer] = try SubspaceBasis(from: sub, layer: layer, kind: kind) } catch let e as SubspaceError {
                    throw DistillError(e.message)
                }
            }
            guard !bases.isEmpty else {
                let have = stored.map { "\($0.layer)/\($0.kind.rawValue)" }.joined(separator: ", ")
                throw DistillError("subspace '\(path)' holds no \(kind.rawValue) basis (method \(method.name)); it has: \(have.isEmpty ? "none" : have)")
            }
        }

        for w in provenance.warnings { hooks.log("distill: " + w) }

        let t0 = ProgressLine.now()
        let trainer: DistillTrainer
        do {
            trainer = try DistillTrainer.prepare(
                config: config, teacher: teacher?.model, teacherLogShift: teacher?.logShift, classIndices: classIndices,
                train: train, val: val, bases: bases,
                progress: { done, n in hooks.progress?.update("distill: teacher outputs \(done)/\(n) images", force: done == n) })
        } catch let e as LayerLossError {
            throw DistillError(e.message)
        }
        hooks.progress?.finish()
        let cacheSeconds = ProgressLine.now() - t0
        if method.usesTeacher {
            hooks.log(String(format: "distill: teacher outputs on %d images computed once in %.2f s", train.count, cacheSeconds))
        }
        config.pairs = trainer.pairs.isEmpty ? nil : trainer.pairs

        var trainerHooks = TrainerHooks()
        trainerHooks.progress = hooks.progress
        trainerHooks.log = hooks.log
        trainerHooks.warn = hooks.warn
        trainerHooks.stopAfterEpochs = hooks.stopAfterEpochs
        let checkpoint = EpochCheckpoint(output: o.outPath,
                                         fingerprint: runFingerprint(arguments: [canonical(config.parameters)],
                                                                     inputDigests: digests))
        let t1 = ProgressLine.now()
        let result = try trainer.run(checkpoint: checkpoint, hooks: trainerHooks)
        let trainSeconds = ProgressLine.now() - t1

        // student.npz
        var params = config.parameters
        // `lambda_layer` is the kept student's (what evaluate and report read); all candidates apart.
        params["lambda_layer_candidates"] = params["lambda_layer"]
        params["lambda_layer"] = .number(Double(result.chosenLambdaLayer))
        params["chosen_lambda_layer"] = .number(Double(result.chosenLambdaLayer))
        for key in ["rho", "family"] { if let v = train.meta?.parameters[key] { params[key] = v } }
        params["pairs"] = .array(result.pairs.map { .string($0.description) })
        params["subtask_classes"] = .array(classIndices.map { .number(Double($0)) })
        // Class frequencies of the training split: evaluate's post-hoc logit adjustment needs them.
        params["train_class_counts"] = .array((0..<train.numClasses).map { c in .number(Double(train.labels.filter { $0 == c }.count)) })
        if let world { params["world"] = world.json }
        if let t = o.tunedPath { params["tuned"] = .string(t) }
        let chosen = result.candidates[result.chosen]
        // Dead student channels per paired layer during the kept epoch.
        let dead: [JSON] = result.pairs.map { p in
            .number(chosen.log["dead_channels/\(p.label)"].map { $0[max(chosen.bestEpoch, 0)] } ?? 0)
        }
        var extra: [String: JSON] = [
            "dead_channels": .array(dead),
            "dead_channels_pairs": .array(result.pairs.map { .string($0.label) }),
            "log": chosen.log.json,
            "best_epoch": .number(Double(chosen.bestEpoch)),
            "best_val_accuracy": .number(chosen.bestValAccuracy),
            "candidates": .array(result.candidates.map {
                .object(["lambda_layer": .number(Double($0.lambdaLayer)), "best_val_accuracy": .number($0.bestValAccuracy),
                         "best_epoch": .number(Double($0.bestEpoch)), "log": $0.log.json])
            }),
            "warnings": .array(result.warnings.map { .string($0) }),
            "teacher_cache_seconds": .number(cacheSeconds),
            "train_seconds": .number(trainSeconds),
            "train_images": .number(Double(train.count)),
            "val_images": .number(Double(val.count)),
        ]
        // `dro`: the λ trajectory (updates, log λ range, final, history, K, η);
        // evaluate copies it into metrics.json.
        if let dro = result.dro { extra["dro"] = dro }
        var a = Artifact(meta: ArtifactMeta(stage: "distill", parameters: params, inputs: digests, seed: config.seed,
                                            extra: extra.merging(provenance.metaExtra) { a, _ in a }))
        NetworkArtifact.write(result.student, into: &a)
        for (n, s, v) in result.methodState { a.set("method/" + n, NDArray(v, shape: s)) }
        chosen.log.write(into: &a, prefix: "log/")
        if result.candidates.count > 1 {
            a.set("log/candidates/lambda_layer", NDArray(result.candidates.map { Double($0.lambdaLayer) }, shape: [result.candidates.count]))
            a.set("log/candidates/best_val_accuracy", NDArray(result.candidates.map(\.bestValAccuracy), shape: [result.candidates.count]))
            for (i, c) in result.candidates.enumerated() { c.log.write(into: &a, prefix: "log/candidate\(i)/") }
        }
        try NPZ.write(a, to: o.outPath)
        checkpoint.remove()
        return result
    }

    static func loadSplit(_ path: String) throws -> Dataset {
        do { return try Dataset(path: path) } catch let e as TensorIOError {
            throw DistillError("cannot read split '\(path)': \(e.message)", causedBy: e)
        }
    }

    /// The teacher class ids of the subtask: the split's `subtask_classes`
    /// (equal in train and val); a split without them is accepted only when
    /// the teacher has exactly the split's classes.
    static func subtaskClasses(train: Dataset, val: Dataset, teacherClasses: Int?) throws -> [Int] {
        let c = train.numClasses
        if let a = train.subtaskClasses, let b = val.subtaskClasses, a != b {
            throw DistillError("\(train.name) and \(val.name) are different subtasks (subtask_classes \(a) vs \(b))")
        }
        if let s = train.subtaskClasses ?? val.subtaskClasses {
            guard s.count == c else { throw DistillError("\(train.name): subtask_classes has \(s.count) entries, the split \(c) classes") }
            if let t = teacherClasses, let bad = s.first(where: { $0 < 0 || $0 >= t }) {
                throw DistillError("\(train.name): subtask class \(bad) is not one of the teacher's \(t) classes")
            }
            return s
        }
        if let t = teacherClasses, t != c {
            throw DistillError("\(train.name) has no subtask_classes in its metadata and \(c) classes, the teacher \(t): cannot cut the teacher's logits to the subtask")
        }
        return Array(0..<c)
    }

    /// Sorted-key JSON text of the parameters (the run's fingerprint).
    static func canonical(_ p: [String: JSON]) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return (try? enc.encode(JSON.object(p))).flatMap { String(data: $0, encoding: .utf8) } ?? "\(p)"
    }
}
