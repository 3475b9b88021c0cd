import Foundation
import NN
import StageKit
import Subspace
import TensorIO

/// One λ_layer candidate's training: its per-epoch log and the kept epoch.
public struct CandidateResult: Equatable {
    public var lambdaLayer: Float
    public var log: TrainingLog
    /// The score that keeps an epoch (`DistillConfig.selectBy`).
    public var selectBy: EpochSelection = .valAccuracy
    /// 0-based epoch of the kept checkpoint.
    public var bestEpoch: Int { log.best(by: selectBy.series)?.epoch ?? -1 }
    /// Validation accuracy at the kept epoch.
    public var bestValAccuracy: Double {
        guard bestEpoch >= 0, let v = log["val_accuracy"] else { return 0 }
        return v[bestEpoch]
    }
}

/// What a finished run hands to the stage: the student at its best
/// validation epoch (of the best λ_layer candidate) and everything to record.
public struct DistillResult {
    public var student: Model
    /// The method's learned state at that epoch, (name, shape, values) for
    /// `method/<name>`: loss parameters (`<pair>.regressor.weight`, …), loss
    /// buffers (`<pair>.runningMean`, `<pair>.rotation.base`, …), derived
    /// values (`<pair>.variance` of VID, `<pair>.rotation.Q` of SubDistill,
    /// `<pair>.projection.P` of VkD) and the robust objective (`robust/…`).
    public var methodState: [(String, [Int], [Float])]
    public var candidates: [CandidateResult]
    /// Index of the kept candidate.
    public var chosen: Int
    public var warnings: [String]
    public var pairs: [LayerPair]
    /// `dro` only: the kept candidate's λ trajectory over its whole training
    /// (`RobustObjective.droRecord`), for `meta.extra.dro`; nil otherwise.
    public var dro: JSON?
    public var chosenLambdaLayer: Float { candidates[chosen].lambdaLayer }
}

/// Side channels of a run.
public struct TrainerHooks {
    /// Progress line (epoch, batch, loss terms, images/s, time left); nil: silent.
    public var progress: ProgressLine?
    /// Informational lines (one per finished epoch and candidate).
    public var log: (String) -> Void = { _ in }
    /// Warnings (dead channels, near-chance accuracy): the stage prints them on stderr.
    public var warn: (String) -> Void = { _ in }
    /// Stop with `TrainingInterrupted` after this many epochs of this call,
    /// right after their checkpoint (tests of resume).
    public var stopAfterEpochs: Int?
    public init() {}
}

/// Thrown when `TrainerHooks.stopAfterEpochs` interrupts a run.
public struct TrainingInterrupted: Error, CustomStringConvertible {
    public var description: String { "training interrupted (stopAfterEpochs)" }
}

/// The distillation training loop (docs/methods.md, "Objective" and
/// "Training defaults"): every method minimises
///
///     L = λ_task · CE(z_s − s, y) + λ_kd · T² · KL(p_t ‖ softmax((z_s − s)/T)) + [logit term(z_s − s, z_t; y)]
///       + λ_layer · Σ_l L_l(t_l, s_l)
///
/// with s = log w the robust objective's logit shift (nil for `std`), p_t =
/// softmax(z_t/T) or, calibrated, softmax((z_t − log w_t)/T). The method
/// (`DistillationMethod`) supplies the logit term (DKD) and the layer terms;
/// the trainer knows no method by name. Training defaults: AdamW (lr 1e-3,
/// weight decay 0), batch 32 with the last incomplete batch dropped, step
/// decay ×0.5 every quarter of the epochs, the checkpoint with the best
/// validation accuracy kept.
///
/// With several λ_layer values one student is trained per value (same seed,
/// same initialisation, same batches) and the best on validation is kept.
///
/// Reading order: set-up (this file), one step and one epoch
/// (`TrainerStep.swift`), the candidate and epoch loop `run` (this file),
/// state and checkpoints (`TrainerCheckpoint.swift`).
public final class DistillTrainer {
    public let config: DistillConfig
    public let train: Dataset
    public let val: Dataset
    public let teacher: TeacherOutputs?
    public let pairs: [LayerPair]
    public let classes: Int
    /// Per pair: the layers' shapes and basis, as the method builds its term from them.
    let contexts: [PairContext]
    /// p_t = softmax(z_eff / T) for every training image (N×C).
    let targets: CachedRows?
    /// z_eff = z_t (− log w_t when calibrated), for a logit term (N×C).
    let teacherLogits: CachedRows?
    /// π per robust group (classes, or class × artifact state).
    public let groupPriors: [Double]
    let termNames: [String]
    /// The method's logit term (DKD), nil for most.
    let logitLoss: LogitLoss?

    // The current candidate.
    public internal(set) var student: Model!
    public internal(set) var losses: [LayerLoss] = []
    var optimizer: AdamW!
    public internal(set) var robust: RobustObjective!
    var lambdaLayer: Float = 0
    // Batch workspaces, reused from step to step.
    var x = Tensor(shape: [0])
    var pBatch = Tensor(shape: [0])
    var zBatch = Tensor(shape: [0])
    var mapBatch: [Tensor] = []

    // MARK: Set-up

    /// Checks that everything fits together; the teacher outputs must come
    /// from `train` (same order).
    /// - Parameters:
    ///   - pairs: resolved paired layers (empty for logit-only methods).
    ///   - bases: per pair, the subspace basis (nil entries for methods without one).
    public init(config: DistillConfig, train: Dataset, val: Dataset, teacher: TeacherOutputs?,
                pairs: [LayerPair], bases: [SubspaceBasis?]) throws {
        try config.validate()
        let method = config.method
        let classes = train.numClasses
        self.classes = classes
        try Self.checkSplits(config: config, train: train, val: val)
        let probe = try config.makeStudent(inputShape: train.imageShape)
        guard probe.outputShape == [classes] else {
            throw DistillError("the student architecture '\(config.architecture)' outputs \(probe.outputShape), the subtask has \(classes) classes (end it with fc\(classes))")
        }
        if method.hasLayerTerm {
            guard !pairs.isEmpty else { throw DistillError("\(method.name) needs at least one paired layer") }
        } else {
            guard pairs.isEmpty else { throw DistillError("\(method.name) has no layer loss, but pairs were given") }
        }
        guard bases.count == pairs.count else { throw DistillError("\(bases.count) bases for \(pairs.count) pairs") }
        for p in pairs where !probe.hasTap(p.student) {
            throw DistillError("the student has no layer '\(p.student)' (its paired layers: \(probe.tapNames.joined(separator: ", ")))")
        }
        if method.usesTeacher {
            guard let teacher else { throw DistillError("\(method.name) needs the teacher's outputs") }
            guard teacher.count == train.count, teacher.classes == classes else {
                throw DistillError("teacher outputs cover \(teacher.count) images × \(teacher.classes) classes, the training split \(train.count) × \(classes)")
            }
            guard teacher.maps.count == pairs.count, teacher.tapShapes.count == pairs.count else {
                throw DistillError("teacher outputs hold \(teacher.maps.count) maps for \(pairs.count) pairs")
            }
        }
        contexts = pairs.indices.map { i in
            PairContext(pair: pairs[i], teacherShape: teacher?.tapShapes[i] ?? [], studentShape: probe.tapShape(pairs[i].student),
                        basis: bases[i])
        }
        if method.usesTeacher, let teacher {
            for (i, c) in contexts.enumerated() {
                try Self.checkCachedMap(teacher.maps[i], context: c, method: method.spec, images: train.count)
            }
        }
        self.config = config
        self.train = train
        self.val = val
        self.teacher = method.usesTeacher ? teacher : nil
        self.pairs = pairs
        logitLoss = method.spec.makeLogitLoss(config: config)

        // Teacher targets, once: z_eff = z_t (− s_t), p_t = softmax(z_eff / T).
        if method.usesTeacher, let teacher {
            var z = Tensor(shape: [teacher.count, classes], data: teacher.logits.data)
            if config.calibratedTeacher {
                z.data.withUnsafeMutableBufferPointer { p in
                    for i in 0..<teacher.count { for j in 0..<classes { p[i * classes + j] -= teacher.logShift[j] } }
                }
            }
            teacherLogits = CachedRows(itemShape: [classes], data: z.data)
            targets = CachedRows(itemShape: [classes], data: Loss.softmax(z, temperature: config.temperature).data)
            // Group priors without labels: the teacher's (calibrated) mean probabilities.
            let p1 = Loss.softmax(z).data
            let a = config.groups.statesPerClass
            var pri = [Double](repeating: 0, count: classes * a)
            for i in 0..<teacher.count {
                let s = a == 1 ? 0 : (train.artifact[i] ? 1 : 0)
                for j in 0..<classes { pri[j * a + s] += Double(p1[i * classes + j]) }
            }
            // `reweighted` weights examples by their label's cost, so its
            // priors are the label frequencies (mean weight 1 over the split).
            groupPriors = method.usesLabels || config.objective == .reweighted
                ? try Robust.priors(ids: a == 1 ? train.labels : train.group, count: classes * a)
                : pri.map { $0 / Double(teacher.count) }
        } else {
            teacherLogits = nil
            targets = nil
            let a = config.groups.statesPerClass
            groupPriors = try Robust.priors(ids: a == 1 ? train.labels : train.group, count: classes * a)
        }
        if config.groups == .group {
            if let bad = train.group.first(where: { $0 < 0 || $0 >= 2 * classes }) {
                throw DistillError("\(train.name): group id \(bad) outside 0..<\(2 * classes)")
            }
        }
        var names: [String] = []
        if config.lambdaTask > 0 { names.append("loss_task") }
        if config.lambdaKD > 0 { names.append("loss_kd") }
        names += logitLoss?.termNames ?? []
        for p in pairs { names.append("loss_layer/\(p.label)") }
        termNames = names
        // Fail early on robust settings that cannot work (e.g. worst-group without both states).
        _ = try makeRobust()
    }

    /// Labels in range, equal class counts and image shapes, at least one batch.
    private static func checkSplits(config: DistillConfig, train: Dataset, val: Dataset) throws {
        let classes = train.numClasses
        guard classes >= 2 else { throw DistillError("\(train.name): needs at least two classes, has \(classes)") }
        guard val.numClasses == classes else {
            throw DistillError("\(train.name) has \(classes) classes but \(val.name) has \(val.numClasses)")
        }
        guard train.imageShape == val.imageShape else {
            throw DistillError("\(train.name) images are \(train.imageShape), \(val.name) images \(val.imageShape)")
        }
        for d in [train, val] {
            if let bad = d.labels.first(where: { $0 < 0 || $0 >= classes }) {
                throw DistillError("\(d.name): label \(bad) outside 0..<\(classes)")
            }
        }
        guard train.count >= config.batchSize else {
            throw DistillError("\(train.name) has \(train.count) images, fewer than one batch of \(config.batchSize)")
        }
        guard val.count > 0 else { throw DistillError("\(val.name) is empty") }
    }

    /// The cached teacher side of a pair is what the method's transform makes
    /// of the teacher layer at the student's size.
    private static func checkCachedMap(_ m: CachedRows, context c: PairContext, method: any DistillationMethod,
                                       images: Int) throws {
        guard m.count == images else {
            throw DistillError("teacher map of pair \(c.pair) has \(m.count) items for \(images) images")
        }
        var input = c.teacherShape
        if method.poolsTeacherToStudentSize && input.count == 3 && c.studentShape.count == 3 {
            input = [c.studentShape[0], c.studentShape[1], input[2]]
        }
        let expected = try method.teacherTransform(c).outputShape(input)
        guard m.itemShape == expected else {
            throw DistillError("teacher map of pair \(c.pair) is cached as \(m.itemShape), \(method.name) reads \(expected) (teacher layer \(c.teacherShape), student layer \(c.studentShape))")
        }
    }

    /// Resolves the pairs, computes the teacher outputs once and builds the trainer.
    /// - Parameters:
    ///   - teacher: the frozen teacher (nil only for a method without one).
    ///   - teacherLogShift: its log w_t over all its classes (zeros for `erm`).
    ///   - classIndices: the teacher class ids of the subtask (label i ↔ class classIndices[i]).
    ///   - bases: subspace bases by teacher layer name (read by methods with a `basis`).
    public static func prepare(config: DistillConfig, teacher: Model?, teacherLogShift: [Float]?, classIndices: [Int],
                               train: Dataset, val: Dataset, bases: [String: SubspaceBasis] = [:],
                               progress: (Int, Int) -> Void = { _, _ in }) throws -> DistillTrainer {
        let method = config.method, spec = method.spec
        var pairs: [LayerPair] = []
        var pairBases: [SubspaceBasis?] = []
        var outputs: TeacherOutputs?
        if method.usesTeacher {
            guard let teacher else { throw DistillError("\(method.name) needs a teacher") }
            let student = try config.makeStudent(inputShape: train.imageShape)
            var requests: [TeacherMapRequest] = []
            if method.hasLayerTerm {
                pairs = config.pairs ?? spec.pairing.pairs(teacher: teacher, student: student)
                for p in pairs {
                    guard teacher.hasTap(p.teacher) else {
                        throw DistillError("the teacher has no layer '\(p.teacher)' (its paired layers: \(teacher.tapNames.joined(separator: ", ")))")
                    }
                    guard student.hasTap(p.student) else {
                        throw DistillError("the student has no layer '\(p.student)' (its paired layers: \(student.tapNames.joined(separator: ", ")))")
                    }
                    let ss = student.tapShape(p.student)
                    var basis: SubspaceBasis?
                    if let kind = spec.basis {
                        guard let b = bases[p.teacher] else {
                            throw DistillError("the subspace holds no \(kind.rawValue) basis for teacher layer \(p.teacher) (has: \(bases.keys.sorted().joined(separator: ", ")))")
                        }
                        basis = b
                    }
                    pairBases.append(basis)
                    let context = PairContext(pair: p, teacherShape: teacher.tapShape(p.teacher), studentShape: ss, basis: basis)
                    let pool = spec.poolsTeacherToStudentSize && ss.count == 3 ? (h: ss[0], w: ss[1]) : nil
                    requests.append(TeacherMapRequest(tap: p.teacher, poolTo: pool, transform: try spec.teacherTransform(context)))
                }
            } else if let given = config.pairs, !given.isEmpty {
                throw DistillError(usage: "--pairs given, but \(method.name) has no layer loss")
            }
            outputs = try TeacherOutputs.compute(
                teacher: teacher, data: train, classIndices: classIndices,
                logShift: teacherLogShift ?? [Float](repeating: 0, count: teacher.outputShape.reduce(1, *)),
                requests: requests, batch: config.evalBatch, progress: progress)
        }
        return try DistillTrainer(config: config, train: train, val: val, teacher: outputs, pairs: pairs, bases: pairBases)
    }

    func makeRobust() throws -> RobustObjective {
        do {
            return try RobustObjective(mode: config.objective, classes: classes,
                                       statesPerClass: config.groups.statesPerClass,
                                       groupPriors: config.objective == .std
                                           ? [Double](repeating: 1, count: classes * config.groups.statesPerClass)
                                           : groupPriors,
                                       beta: config.robustBeta, eta: config.eta, updateEvery: config.droEvery)
        } catch let e as TrainError {
            let hint = config.groups == .group
                ? " (--groups group needs every class both with and without the artifact in \(train.name), i.e. 0 < ρ < 1)" : ""
            let msg = e.message.hasPrefix("robust objective: ") ? String(e.message.dropFirst("robust objective: ".count)) : e.message
            throw DistillError("robust objective \(config.objective.rawValue): \(msg)\(hint)")
        }
    }

    /// Fresh student, layer terms, optimiser and robust objective for candidate `c`
    /// (same seed for every candidate, so they differ only in λ_layer).
    func setUpCandidate(_ c: Int) throws {
        lambdaLayer = config.lambdaLayers[c]
        student = try config.makeStudent(inputShape: train.imageShape)
        var ls: [LayerLoss] = []
        for (i, context) in contexts.enumerated() {
            var rng = RNG(seed: config.seed, stream: Distill.Stream.layerLoss + UInt64(i))
            let loss = try config.method.spec.makeLayerLoss(context, config: config, rng: &rng)
            let b = config.batchSize
            do {
                try loss.validate(cachedTeacherShape: [b] + teacher!.maps[i].itemShape, studentShape: [b] + context.studentShape)
            } catch let e as LayerLossError {
                throw DistillError("pair \(context.pair): \(e.message)")
            }
            ls.append(loss)
        }
        losses = ls
        mapBatch = pairs.map { _ in Tensor(shape: [0]) }
        optimizer = try AdamW(parameters: student.parameters + ls.flatMap(\.parameters),
                              learningRate: config.learningRate, weightDecay: config.weightDecay)
        robust = try makeRobust()
    }

    // MARK: The candidate and epoch loop

    /// Trains every λ_layer candidate (resuming from `checkpoint` when it holds
    /// this run's state) and returns the kept student.
    public func run(checkpoint: EpochCheckpoint? = nil, hooks: TrainerHooks = TrainerHooks()) throws -> DistillResult {
        let nCand = config.lambdaLayers.count, epochs = config.epochs
        var cand = 0, epoch = 0
        var logs: [TrainingLog] = []
        var best: Snapshot?
        var chosen: (index: Int, snapshot: Snapshot)?
        // The kept candidate's λ trajectory over all its epochs (the robust
        // state itself is restored to the kept epoch at the end).
        var chosenHistory: [[Double]] = []
        var resumed = false
        if let ck = checkpoint, let a = ck.load() {
            let r = try restoreCheckpoint(a)
            (cand, epoch, logs, best, chosen) = (r.candidate, r.epoch, r.logs, r.best, r.chosen)
            chosenHistory = r.chosenHistory
            resumed = true
            hooks.log("distill: resuming from \(ck.path): λ_layer candidate \(min(cand, nCand - 1) + 1)/\(nCand), \(epoch) epochs done")
        }
        var timing = Timing()
        var epochsThisCall = 0
        let batchesPerEpoch = train.count / config.batchSize
        while cand < nCand {
            if !(resumed && epoch > 0) { try setUpCandidate(cand) }
            resumed = false
            if logs.count == cand { logs.append(TrainingLog()) }
            while epoch < epochs {
                let batchesLeft = ((nCand - cand) * epochs - epoch) * batchesPerEpoch
                let entry = try runEpoch(epoch, candidate: cand, hooks: hooks, timing: &timing, batchesLeft: batchesLeft)
                logs[cand].append(entry)
                let selection = config.selectBy.series
                if logs[cand].best(by: selection)!.epoch == epoch { best = snapshot() }
                let va = logs[cand]["val_accuracy"]!.last!
                hooks.progress?.finish()
                hooks.log(String(format: "distill: epoch %d/%d val acc %.4f (best %.4f at epoch %d)", epoch + 1, epochs, va,
                                 logs[cand].best!.accuracy, logs[cand].best!.epoch + 1)
                          + (nCand > 1 ? " λ_layer \(fmt(Double(lambdaLayer)))" : ""))
                epoch += 1
                let done = epoch == epochs
                if done {
                    let mine = logs[cand].bestScores(by: selection)!
                    if chosen == nil || logs[chosen!.index].bestScores(by: selection)!.lexicographicallyPrecedes(mine) {
                        chosen = (cand, best!)
                        chosenHistory = robust.history
                    }
                    for w in warnings(candidate: cand, log: logs[cand]) { hooks.warn(w) }
                    cand += 1
                    epoch = 0
                    best = nil
                }
                if let ck = checkpoint {
                    try ck.save(checkpointArtifact(candidate: cand, epoch: epoch, logs: logs, best: best, chosen: chosen,
                                                   chosenHistory: chosenHistory),
                                epoch: cand * epochs + epoch)
                }
                epochsThisCall += 1
                if let stop = hooks.stopAfterEpochs, epochsThisCall >= stop { throw TrainingInterrupted() }
                if done { break }
            }
        }
        guard let chosen else { throw DistillError("no candidate was trained", kind: .failure) }
        try setUpCandidate(chosen.index)
        try restore(chosen.snapshot)
        let candidates = logs.enumerated().map {
            CandidateResult(lambdaLayer: config.lambdaLayers[$0.offset], log: $0.element, selectBy: config.selectBy)
        }
        let allWarnings = logs.indices.flatMap { warnings(candidate: $0, log: logs[$0]) }
        // Spelled out: JSON is nil-literal-expressible, so a `? … : nil`
        // would give JSON.null instead of no record.
        var dro: JSON?
        if config.objective == .dro {
            dro = RobustObjective.droRecord(history: chosenHistory, groups: robust.groups, every: config.droEvery, eta: config.eta)
        }
        return DistillResult(student: student, methodState: exportMethodState(), candidates: candidates,
                             chosen: chosen.index, warnings: allWarnings, pairs: pairs, dro: dro)
    }

    /// Failures made visible: dead student channels at the end of training
    /// (the SubDistill scale trap) and validation accuracy near chance.
    func warnings(candidate c: Int, log: TrainingLog) -> [String] {
        var out: [String] = []
        let tag = config.lambdaLayers.count > 1 ? "λ_layer \(fmt(Double(config.lambdaLayers[c]))): " : ""
        for (i, p) in pairs.enumerated() {
            if let d = log["dead_channels/\(p.label)"]?.last, d > 0 {
                out.append("\(tag)paired layer \(p.label) ends with \(Int(d)) of \(contexts[i].studentChannels) student channels dead (zero on every training image of the last epoch); consider a smaller --lambda-layer")
            }
        }
        let chance = 1 / Double(classes)
        if let b = log.best, b.accuracy < chance + 0.1 {
            out.append("\(tag)best validation accuracy \(String(format: "%.3f", b.accuracy)) is near chance (\(String(format: "%.3f", chance)))")
        }
        return out
    }

}

// MARK: - Small kernels

/// y += α·x over equal-shaped tensors.
@inline(__always) func axpy(_ y: inout Tensor, _ alpha: Float, _ x: Tensor) {
    precondition(y.count == x.count, "axpy: \(y.shape) vs \(x.shape)")
    y.data.withUnsafeMutableBufferPointer { yp in
        x.data.withUnsafeBufferPointer { xp in
            for i in 0..<yp.count { yp[i] += alpha * xp[i] }
        }
    }
}

/// v *= α.
@inline(__always) func scale(_ v: inout [Float], _ alpha: Float) {
    if alpha == 1 { return }
    v.withUnsafeMutableBufferPointer { p in
        for i in 0..<p.count { p[i] *= alpha }
    }
}

/// Compact number for progress lines.
func fmt(_ x: Double) -> String {
    if x == 0 { return "0" }
    if abs(x) >= 1000 || abs(x) < 0.001 { return String(format: "%.3g", x) }
    return String(format: "%.4g", x)
}

extension DistillConfig {
    /// A freshly initialised student (seeded by `seed`, so every call gives the
    /// same weights); a bad architecture string is a `DistillError`.
    func makeStudent(inputShape: [Int]) throws -> Model {
        do {
            return try Model(architecture: architecture, inputShape: inputShape, batchNorm: batchNorm, seed: seed,
                             weightInit: weightInit)
        } catch let e as NNError {
            throw DistillError(usage: "student architecture '\(architecture)': \(e.message)")
        }
    }
}
