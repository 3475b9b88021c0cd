import Foundation
import NN
import StageKit
import Subspace
import TensorIO

/// One λ_layer candidate's training: its per-epoch log and best validation score.
public struct CandidateResult: Equatable {
    public var lambdaLayer: Float
    public var log: TrainingLog
    public var bestValAccuracy: Double { log.best?.accuracy ?? 0 }
    /// 0-based epoch of the kept checkpoint.
    public var bestEpoch: Int { log.best?.epoch ?? -1 }
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

/// The distillation training loop (METHODS.md): every method minimises
///
///     L = λ_task · CE(z_s − s, y) + λ_kd · T² · KL(p_t ‖ softmax((z_s − s)/T)) + [DKD(z_s − s, z_t; y)]
///       + λ_layer · Σ_l L_l(t_l, s_l)
///
/// with s = log w the robust objective's logit shift (nil for `std`), p_t =
/// softmax(z_t/T) or, calibrated, softmax((z_t − log w_t)/T). Training
/// defaults: AdamW (lr 1e-3, weight decay 0), batch 32 with the last
/// incomplete batch dropped, step decay ×0.5 every quarter of the epochs,
/// the checkpoint with the best validation accuracy kept.
///
/// With several λ_layer values one student is trained per value (same seed,
/// same initialisation, same batches) and the best on validation is kept.
public final class DistillTrainer {
    public let config: DistillConfig
    public let train: Dataset
    public let val: Dataset
    public let teacher: TeacherOutputs?
    public let pairs: [LayerPair]
    public let classes: Int
    let bases: [SubspaceBasis?]
    /// Per pair: student tap shape [H, W, k].
    let studentShapes: [[Int]]
    /// p_t = softmax(z_eff / T) for every training image (N×C).
    let targets: CachedRows?
    /// z_eff = z_t (− log w_t when calibrated), for DKD (N×C).
    let teacherLogits: CachedRows?
    /// π per robust group (classes, or class × artifact state).
    public let groupPriors: [Double]
    let termNames: [String]
    let dkd: DKDLoss

    // The current candidate.
    public private(set) var student: Model!
    public private(set) var losses: [LayerLoss] = []
    private var optimizer: AdamW!
    public private(set) var robust: RobustObjective!
    private var lambdaLayer: Float = 0
    // Batch workspaces, reused from step to step.
    private var x = Tensor(shape: [0])
    private var pBatch = Tensor(shape: [0])
    private var zBatch = Tensor(shape: [0])
    private var mapBatch: [Tensor] = []

    // MARK: Set-up

    /// Checks that everything fits together; the teacher outputs must come
    /// from `train` (same order).
    /// - Parameters:
    ///   - pairs: resolved paired layers (empty for logit-only methods).
    ///   - bases: per pair, the SubDistill basis (nil entries for other methods).
    public init(config: DistillConfig, train: Dataset, val: Dataset, teacher: TeacherOutputs?,
                pairs: [LayerPair], bases: [SubspaceBasis?]) throws {
        try config.validate()
        let method = config.method
        let classes = train.numClasses
        self.classes = classes
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
        let probe = try config.makeStudent(inputShape: train.imageShape)
        guard probe.outputShape == [classes] else {
            throw DistillError("the student architecture '\(config.architecture)' outputs \(probe.outputShape), the subtask has \(classes) classes (end it with fc\(classes))")
        }
        if method.layerLoss == nil {
            guard pairs.isEmpty else { throw DistillError("\(method.rawValue) has no layer loss, but pairs were given") }
        } else {
            guard !pairs.isEmpty else { throw DistillError("\(method.rawValue) needs at least one paired layer") }
        }
        var shapes: [[Int]] = []
        for p in pairs {
            guard probe.tapNames.contains(p.student) else {
                throw DistillError("the student has no layer '\(p.student)' (its paired layers: \(probe.tapNames.joined(separator: ", ")))")
            }
            shapes.append(probe.tapShape(p.student))
        }
        studentShapes = shapes
        guard bases.count == pairs.count else { throw DistillError("\(bases.count) bases for \(pairs.count) pairs") }
        if method.layerLoss == .subdistill {
            for (i, b) in bases.enumerated() {
                guard let b else { throw DistillError("\(method.rawValue): no subspace basis for pair \(pairs[i])") }
                guard b.k == shapes[i][2] else {
                    throw DistillError("subspace basis of teacher layer \(pairs[i].teacher) has k = \(b.k) directions, the student layer \(pairs[i].student) has \(shapes[i][2]) channels (extract the subspace with this --student-arch)")
                }
            }
        }
        if method.usesTeacher {
            guard let teacher else { throw DistillError("\(method.rawValue) needs the teacher's outputs") }
            guard teacher.count == train.count, teacher.classes == classes else {
                throw DistillError("teacher outputs cover \(teacher.count) images × \(teacher.classes) classes, the training split \(train.count) × \(classes)")
            }
            guard teacher.maps.count == pairs.count else {
                throw DistillError("teacher outputs hold \(teacher.maps.count) maps for \(pairs.count) pairs")
            }
            for (i, m) in teacher.maps.enumerated() {
                guard m.count == train.count, m.itemShape.count == 3 else {
                    throw DistillError("teacher map of pair \(pairs[i]) has \(m.count) items of shape \(m.itemShape)")
                }
                let s = shapes[i]
                if method.layerLoss == .subdistill {
                    guard m.itemShape == s else {
                        throw DistillError("projected teacher map of pair \(pairs[i]) is \(m.itemShape), the student map \(s)")
                    }
                } else if method.layerLoss == .attention {
                    guard m.itemShape == [s[0], s[1], 1] else {
                        throw DistillError("teacher attention map of pair \(pairs[i]) is \(m.itemShape), expected \([s[0], s[1], 1])")
                    }
                } else if method.layerLoss == .vkd {
                    guard m.itemShape[0] == 1, m.itemShape[1] == 1 else {
                        throw DistillError("teacher summary of pair \(pairs[i]) is \(m.itemShape), expected 1×1×d (VkD's LN(t̄))")
                    }
                } else if method.layerLoss != .spkd {
                    guard m.itemShape[0] == s[0], m.itemShape[1] == s[1] else {
                        throw DistillError("teacher map of pair \(pairs[i]) is \(m.itemShape[0])×\(m.itemShape[1]), the student's \(s[0])×\(s[1]): pool the teacher first")
                    }
                }
            }
        }
        self.config = config
        self.train = train
        self.val = val
        self.teacher = method.usesTeacher ? teacher : nil
        self.pairs = pairs
        self.bases = bases
        dkd = DKDLoss(alpha: config.dkdAlpha, beta: config.dkdBeta, temperature: config.temperature)

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
            groupPriors = method.usesLabels
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
        if method == .dkd { names += ["loss_dkd/tckd", "loss_dkd/nckd"] }
        for p in pairs { names.append("loss_layer/\(p.label)") }
        termNames = names
        // Fail early on robust settings that cannot work (e.g. worst-group without both states).
        _ = try makeRobust()
    }

    /// Resolves the pairs, computes the teacher outputs once and builds the trainer.
    /// - Parameters:
    ///   - teacher: the frozen teacher (nil only for `label-only`).
    ///   - teacherLogShift: its log w_t over all its classes (zeros for `erm`).
    ///   - classIndices: the teacher class ids of the subtask (label i ↔ class classIndices[i]).
    ///   - bases: SubDistill bases by teacher layer name (only read by subdistill methods).
    public static func prepare(config: DistillConfig, teacher: Model?, teacherLogShift: [Float]?, classIndices: [Int],
                               train: Dataset, val: Dataset, bases: [String: SubspaceBasis] = [:],
                               progress: (Int, Int) -> Void = { _, _ in }) throws -> DistillTrainer {
        let method = config.method
        var pairs: [LayerPair] = []
        var pairBases: [SubspaceBasis?] = []
        var outputs: TeacherOutputs?
        if method.usesTeacher {
            guard let teacher else { throw DistillError("\(method.rawValue) needs a teacher") }
            let student = try config.makeStudent(inputShape: train.imageShape)
            var requests: [TeacherMapRequest] = []
            if let kind = method.layerLoss {
                pairs = config.pairs ?? LayerPair.defaults(teacherTaps: teacher.tapNames, studentTaps: student.tapNames)
                for p in pairs {
                    guard teacher.tapNames.contains(p.teacher) else {
                        throw DistillError("the teacher has no layer '\(p.teacher)' (its paired layers: \(teacher.tapNames.joined(separator: ", ")))")
                    }
                    guard student.tapNames.contains(p.student) else {
                        throw DistillError("the student has no layer '\(p.student)' (its paired layers: \(student.tapNames.joined(separator: ", ")))")
                    }
                    let ss = student.tapShape(p.student), ts = teacher.tapShape(p.teacher)
                    var projection: SubDistillLoss?
                    var basis: SubspaceBasis?
                    if kind == .subdistill {
                        guard let b = bases[p.teacher] else {
                            throw DistillError("the subspace holds no \(method.basisKind?.rawValue ?? "?") basis for teacher layer \(p.teacher) (has: \(bases.keys.sorted().joined(separator: ", ")))")
                        }
                        guard b.channels == ts[2] else {
                            throw DistillError("the subspace basis of \(p.teacher) has d = \(b.channels), the teacher layer \(ts[2]) channels")
                        }
                        guard b.k == ss[2] else {
                            throw DistillError("subspace basis of teacher layer \(p.teacher) has k = \(b.k) directions, the student layer \(p.student) has \(ss[2]) channels (extract the subspace with this --student-arch)")
                        }
                        var rng = RNG(seed: 0)
                        projection = try subDistillLoss(name: "cache", basis: b, normalization: config.normalization,
                                                        initialization: .identity, rng: &rng)
                        basis = b
                    }
                    pairBases.append(basis)
                    requests.append(TeacherMapRequest(tap: p.teacher, poolTo: kind == .spkd ? nil : (ss[0], ss[1]),
                                                      projection: projection,
                                                      attention: kind == .attention ? AttentionLoss() : nil,
                                                      vkdSummary: kind == .vkd))
                }
            } else if let given = config.pairs, !given.isEmpty {
                throw DistillError("--pairs given, but \(method.rawValue) has no layer loss")
            }
            outputs = try TeacherOutputs.compute(
                teacher: teacher, data: train, classIndices: classIndices,
                logShift: teacherLogShift ?? [Float](repeating: 0, count: teacher.outputShape.reduce(1, *)),
                requests: requests, batch: config.evalBatch, progress: progress)
        }
        return try DistillTrainer(config: config, train: train, val: val, teacher: outputs, pairs: pairs, bases: pairBases)
    }

    private func makeRobust() throws -> RobustObjective {
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

    /// Fresh student, layer losses, optimiser and robust objective for candidate `c`
    /// (same seed for every candidate, so they differ only in λ_layer).
    func setUpCandidate(_ c: Int) throws {
        lambdaLayer = config.lambdaLayers[c]
        student = try config.makeStudent(inputShape: train.imageShape)
        var ls: [LayerLoss] = []
        for (i, p) in pairs.enumerated() {
            var rng = RNG(seed: config.seed, stream: Distill.Stream.layerLoss + UInt64(i))
            let k = studentShapes[i][2]
            let d = config.method.layerLoss == .subdistill ? bases[i]!.channels : teacher!.maps[i].itemShape[2]
            let loss: LayerLoss
            switch config.method.layerLoss! {
            case .fitnet: loss = FitNetLoss(name: p.label, teacherChannels: d, studentChannels: k, relu: config.fitnetReLU, rng: &rng)
            case .attention: loss = AttentionLoss()
            case .vid: loss = VIDLoss(name: p.label, teacherChannels: d, studentChannels: k, rng: &rng)
            case .vkd: loss = VkDLoss(name: p.label, teacherChannels: d, studentChannels: k, rng: &rng)
            case .spkd: loss = SPKDLoss()
            case .subdistill:
                loss = try Self.subDistillLoss(name: p.label, basis: bases[i]!, normalization: config.normalization,
                                               initialization: .random, rng: &rng)
            }
            let b = config.batchSize
            if let sd = loss as? SubDistillLoss {
                try sd.validate(projectedTeacherShape: [b] + teacher!.maps[i].itemShape, studentShape: [b] + studentShapes[i])
            } else if let vk = loss as? VkDLoss {
                try vk.validate(teacherSummaryShape: [b] + teacher!.maps[i].itemShape, studentShape: [b] + studentShapes[i])
            } else {
                try loss.validate(teacherShape: [b] + teacher!.maps[i].itemShape, studentShape: [b] + studentShapes[i])
            }
            ls.append(loss)
        }
        losses = ls
        mapBatch = pairs.map { _ in Tensor(shape: [0]) }
        optimizer = try AdamW(parameters: student.parameters + ls.flatMap(\.parameters),
                              learningRate: config.learningRate, weightDecay: config.weightDecay)
        robust = try makeRobust()
    }

    static func subDistillLoss(name: String, basis b: SubspaceBasis, normalization: StudentNormalization,
                               initialization: OrthogonalInit, rng: inout RNG) throws -> SubDistillLoss {
        do {
            return try SubDistillLoss(name: name, basis: b.uk.map { Float($0) }, mean: b.mean.map { Float($0) },
                                      variances: b.sigma2.map { Float($0) }, teacherChannels: b.channels,
                                      studentChannels: b.k, normalization: normalization,
                                      initialization: initialization, rng: &rng)
        } catch let e as LayerLossError {
            throw DistillError("subspace basis of \(b.layer) (\(b.kind.rawValue)): \(e.message)")
        }
    }

    // MARK: One step

    /// Loss terms of one batch (unweighted, in `termNames` order) and the
    /// weighted total. With `update`, back-propagates and takes an optimiser
    /// step; without, leaves ∂L/∂θ in every parameter's `grad` (λ-weighted,
    /// the gradient of the combined L) and changes no value.
    @discardableResult
    func step(_ idx: ArraySlice<Int>, update: Bool, meters: inout [DeadChannelMeter], hits: inout Int)
        throws -> (terms: [Double], total: Double) {
        let method = config.method
        optimizer.zeroGrad()
        train.gather(idx, into: &x)
        let labels = idx.map { train.labels[$0] }
        let zs = student.forward(x, training: true)
        var g = Tensor(shape: zs.shape)
        let shift = robust.logShift()
        var terms: [Double] = []
        var total = 0.0
        if config.lambdaTask > 0 {
            let w = config.groups == .group ? try robust.exampleWeights(groups: idx.map { train.group[$0] }) : nil
            let (l, gt) = try Loss.crossEntropy(zs, labels: labels, logShift: shift, weights: w)
            axpy(&g, config.lambdaTask, gt)
            terms.append(Double(l)); total += Double(config.lambdaTask) * Double(l)
        }
        if config.lambdaKD > 0 {
            targets!.gather(idx, into: &pBatch)
            if config.groups == .group && config.objective != .std {
                pBatch = try robust.reweightTargets(pBatch, states: idx.map { train.artifact[$0] ? 1 : 0 })
            }
            let (l, gk) = try Loss.distillation(student: zs, teacherProbs: pBatch, temperature: config.temperature,
                                                logShift: shift)
            axpy(&g, config.lambdaKD, gk)
            terms.append(Double(l)); total += Double(config.lambdaKD) * Double(l)
        }
        if method == .dkd {
            teacherLogits!.gather(idx, into: &zBatch)
            var zsh = zs
            if let shift {
                zsh.data.withUnsafeMutableBufferPointer { p in
                    for i in 0..<idx.count { for j in 0..<classes { p[i * classes + j] -= shift[j] } }
                }
            }
            let r = dkd.forwardBackward(studentLogits: zsh, teacherLogits: zBatch, labels: labels, computeGradient: true)
            axpy(&g, 1, r.gradStudent!)
            terms += [Double(r.tckd), Double(r.nckd)]; total += Double(r.loss)
        }
        var tapGrads: [String: Tensor] = [:]
        let lam = lambdaLayer
        for i in pairs.indices {
            let s = student.activation(tap: pairs[i].student)
            meters[i].observe(s)
            teacher!.maps[i].gather(idx, into: &mapBatch[i])
            let r: (loss: Float, gradStudent: Tensor?)
            if let sd = losses[i] as? SubDistillLoss {
                r = sd.forwardBackward(projectedTeacher: mapBatch[i], student: s, training: true, computeGradient: lam > 0)
            } else if let at = losses[i] as? AttentionLoss {
                r = at.forwardBackward(teacherAttention: mapBatch[i], student: s, training: true, computeGradient: lam > 0)
            } else if let vk = losses[i] as? VkDLoss {
                r = vk.forwardBackward(teacherSummary: mapBatch[i], student: s, training: true, computeGradient: lam > 0)
            } else {
                r = losses[i].forwardBackward(teacher: mapBatch[i], student: s, training: true, computeGradient: lam > 0)
            }
            terms.append(Double(r.loss)); total += Double(lam) * Double(r.loss)
            if var gs = r.gradStudent {
                // The loss accumulated ∂L_l/∂θ into its own parameters (zero before): weight by λ.
                for p in losses[i].parameters { scale(&p.grad, lam) }
                scale(&gs.data, lam)
                if var acc = tapGrads[pairs[i].student] { axpy(&acc, 1, gs); tapGrads[pairs[i].student] = acc } else { tapGrads[pairs[i].student] = gs }
            }
        }
        let pred = Loss.argmax(zs)
        for (j, y) in labels.enumerated() where pred[j] == y { hits += 1 }
        guard total.isFinite, terms.allSatisfy(\.isFinite) else {
            let shown = zip(termNames, terms).map { "\($0.0) \($0.1)" }.joined(separator: ", ")
            throw DistillError("the loss is not finite (\(shown)); training diverged, no artifact written (try a smaller --lr or --lambda-layer)")
        }
        student.backward(g, tapGradients: tapGrads)
        if update { optimizer.step() }
        return (terms, total)
    }

    /// Predictions of the student (evaluation mode) for `indices` of `data`.
    func predict(_ data: Dataset, _ indices: [Int]) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(indices.count)
        var xb = Tensor(shape: [0])
        var start = 0
        while start < indices.count {
            let end = min(indices.count, start + config.evalBatch)
            data.gather(indices[start..<end], into: &xb)
            out += Loss.argmax(student.forward(xb, training: false))
            start = end
        }
        return out
    }

    /// One exponentiated-gradient step on λ: per-group error on a validation batch (true labels).
    private func droUpdate(_ rng: inout RNG) throws {
        let idx = Array(rng.permutation(val.count).prefix(min(config.droBatch, val.count)))
        let preds = predict(val, idx)
        let labels = idx.map { val.labels[$0] }
        let ids = config.groups == .class ? labels : idx.map { val.group[$0] }
        let (err, _) = try Robust.groupErrors(predictions: preds, labels: labels, groups: ids, groupCount: robust.groups)
        try robust.update(groupErrors: err)
    }

    // MARK: Epochs

    private struct Timing {
        var start = ProgressLine.now()
        var batchesDone = 0
        var lastShown = -1e9
    }

    /// Trains one epoch of the current candidate; returns its log entry.
    private func runEpoch(_ epoch: Int, candidate: Int, hooks: TrainerHooks, timing: inout Timing,
                          batchesLeft: Int) throws -> [(String, Double)] {
        let b = config.batchSize
        let nBatches = train.count / b
        let schedule = try StepLR.quarterly(baseLearningRate: config.learningRate, epochs: config.epochs)
        let lr = schedule.learningRate(epoch: epoch)
        optimizer.learningRate = lr
        var rng = RNG(seed: config.seed, stream: Distill.Stream.epoch + UInt64(epoch))
        let order = rng.permutation(train.count)
        var droRng = RNG(seed: config.seed, stream: Distill.Stream.dro + UInt64(epoch))
        var meters = studentShapes.map { DeadChannelMeter(channels: $0[2]) }
        var sums = [Double](repeating: 0, count: termNames.count)
        var totalSum = 0.0
        var hits = 0
        for bi in 0..<nBatches {
            let (terms, total) = try step(order[(bi * b)..<((bi + 1) * b)], update: true, meters: &meters, hits: &hits)
            for t in terms.indices { sums[t] += terms[t] }
            totalSum += total
            if robust.isUpdateDue(step: epoch * nBatches + bi + 1) { try droUpdate(&droRng) }
            timing.batchesDone += 1
            if let line = hooks.progress {
                let now = ProgressLine.now()
                if now - timing.lastShown >= 0.25 || bi == nBatches - 1 {
                    timing.lastShown = now
                    let elapsed = now - timing.start
                    let perBatch = elapsed / Double(timing.batchesDone)
                    let left = Double(batchesLeft - (bi + 1)) * perBatch
                    let n = Double(bi + 1)
                    var text = "distill \(config.method.rawValue)"
                    if config.lambdaLayers.count > 1 {
                        text += " λ_layer \(fmt(Double(lambdaLayer))) (\(candidate + 1)/\(config.lambdaLayers.count))"
                    }
                    text += " epoch \(epoch + 1)/\(config.epochs) batch \(bi + 1)/\(nBatches) loss \(fmt(totalSum / n))"
                    for (t, name) in termNames.enumerated() {
                        text += " \(name.replacingOccurrences(of: "loss_", with: "")) \(fmt(sums[t] / n))"
                    }
                    text += String(format: " | %.0f img/s | left %@", Double(timing.batchesDone * b) / max(elapsed, 1e-9),
                                   ProgressLine.format(seconds: left))
                    line.update(text)
                }
            }
        }
        let n = Double(nBatches)
        let valPred = predict(val, Array(0..<val.count))
        let valAcc = Loss.accuracy(predictions: valPred, labels: val.labels)
        let worst = (try? Robust.worstClassAccuracy(predictions: valPred, labels: val.labels, classes: classes)) ?? 0
        var entry: [(String, Double)] = [("loss_total", totalSum / n)]
        for (t, name) in termNames.enumerated() { entry.append((name, sums[t] / n)) }
        for (i, p) in pairs.enumerated() { entry.append(("dead_channels/\(p.label)", Double(meters[i].deadCount))) }
        entry.append(("train_accuracy", Double(hits) / Double(nBatches * b)))
        entry.append(("val_accuracy", valAcc))
        entry.append(("val_worst_class_accuracy", worst))
        entry.append(("learning_rate", Double(lr)))
        return entry
    }

    /// Trains every λ_layer candidate (resuming from `checkpoint` when it holds
    /// this run's state) and returns the kept student.
    public func run(checkpoint: EpochCheckpoint? = nil, hooks: TrainerHooks = TrainerHooks()) throws -> DistillResult {
        let nCand = config.lambdaLayers.count, epochs = config.epochs
        var cand = 0, epoch = 0
        var logs: [TrainingLog] = []
        var best: Snapshot?
        var chosen: (index: Int, snapshot: Snapshot)?
        var resumed = false
        if let ck = checkpoint, let a = ck.load() {
            let r = try restoreCheckpoint(a)
            (cand, epoch, logs, best, chosen) = (r.candidate, r.epoch, r.logs, r.best, r.chosen)
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
                if logs[cand].best!.epoch == epoch { best = snapshot() }
                let va = logs[cand]["val_accuracy"]!.last!
                hooks.progress?.finish()
                hooks.log(String(format: "distill: epoch %d/%d val acc %.4f (best %.4f at epoch %d)", epoch + 1, epochs, va,
                                 logs[cand].best!.accuracy, logs[cand].best!.epoch + 1)
                          + (nCand > 1 ? " λ_layer \(fmt(Double(lambdaLayer)))" : ""))
                epoch += 1
                let done = epoch == epochs
                if done {
                    if chosen == nil || logs[cand].best!.accuracy > logs[chosen!.index].best!.accuracy {
                        chosen = (cand, best!)
                    }
                    for w in warnings(candidate: cand, log: logs[cand]) { hooks.warn(w) }
                    cand += 1
                    epoch = 0
                    best = nil
                }
                if let ck = checkpoint {
                    try ck.save(checkpointArtifact(candidate: cand, epoch: epoch, logs: logs, best: best, chosen: chosen),
                                epoch: cand * epochs + epoch)
                }
                epochsThisCall += 1
                if let stop = hooks.stopAfterEpochs, epochsThisCall >= stop { throw TrainingInterrupted() }
                if done { break }
            }
        }
        guard let chosen else { throw DistillError("no candidate was trained") }
        try setUpCandidate(chosen.index)
        try restore(chosen.snapshot)
        let candidates = logs.enumerated().map { CandidateResult(lambdaLayer: config.lambdaLayers[$0.offset], log: $0.element) }
        let allWarnings = logs.indices.flatMap { warnings(candidate: $0, log: logs[$0]) }
        return DistillResult(student: student, methodState: exportMethodState(), candidates: candidates,
                             chosen: chosen.index, warnings: allWarnings, pairs: pairs)
    }

    /// Failures made visible: dead student channels at the end of training
    /// (the SubDistill scale trap) and validation accuracy near chance.
    func warnings(candidate c: Int, log: TrainingLog) -> [String] {
        var out: [String] = []
        let tag = config.lambdaLayers.count > 1 ? "λ_layer \(fmt(Double(config.lambdaLayers[c]))): " : ""
        for (i, p) in pairs.enumerated() {
            if let d = log["dead_channels/\(p.label)"]?.last, d > 0 {
                out.append("\(tag)paired layer \(p.label) ends with \(Int(d)) of \(studentShapes[i][2]) student channels dead (zero on every training image of the last epoch); consider a smaller --lambda-layer")
            }
        }
        let chance = 1 / Double(classes)
        if let b = log.best, b.accuracy < chance + 0.1 {
            out.append("\(tag)best validation accuracy \(String(format: "%.3f", b.accuracy)) is near chance (\(String(format: "%.3f", chance)))")
        }
        return out
    }

    // MARK: State

    /// Everything that defines the current candidate's weights: the student's
    /// state, the layer losses' parameters and buffers, the robust λ.
    struct Snapshot {
        var model: [(String, [Int], [Float])]
        var method: [(String, [Int], [Float])]
    }

    func snapshot() -> Snapshot {
        var m: [(String, [Int], [Float])] = []
        for (i, l) in losses.enumerated() {
            for p in l.parameters { m.append(("param/\(p.name)", p.shape, p.value)) }
            for (n, s, v) in l.stateBuffers { m.append(("buffer/\(pairs[i].label).\(n)", s, v)) }
        }
        for (n, s, v) in robust.exportState() { m.append(("robust/\(n)", s, v)) }
        return Snapshot(model: student.state.map { ($0.name, $0.shape, $0.values) }, method: m)
    }

    func restore(_ s: Snapshot) throws {
        do {
            try student.setState(s.model.map { (name: $0.0, shape: $0.1, values: $0.2) })
        } catch let e as NNError {
            throw DistillError("checkpoint does not fit the student: \(e.message)")
        }
        func strip(_ prefix: String) -> [(String, [Int], [Float])] {
            s.method.filter { $0.0.hasPrefix(prefix) }.map { (String($0.0.dropFirst(prefix.count)), $0.1, $0.2) }
        }
        let params = strip("param/")
        for (i, l) in losses.enumerated() {
            try Checkpoint.restore(l.parameters, from: params)
            try l.loadStateBuffers(strip("buffer/\(pairs[i].label)."))
        }
        try robust.importState(strip("robust/"))
    }

    /// The method's state for `student.npz` (`method/<name>`), see `DistillResult.methodState`.
    func exportMethodState() -> [(String, [Int], [Float])] {
        var out: [(String, [Int], [Float])] = []
        for (i, l) in losses.enumerated() {
            let label = pairs[i].label
            for p in l.parameters { out.append((p.name, p.shape, p.value)) }
            for (n, s, v) in l.stateBuffers { out.append(("\(label).\(n)", s, v)) }
            if let v = l as? VIDLoss {
                out.append(("\(label).variance", [v.teacherChannels], v.alpha.value.map { VIDLoss.softplus($0) + VIDLoss.eps }))
            } else if let sd = l as? SubDistillLoss {
                let k = sd.studentChannels
                out.append(("\(label).rotation.Q", [k, k], sd.rotation.value))
                out.append(("\(label).teacher_variances", [k], sd.variances))
            } else if let vk = l as? VkDLoss {
                out.append(("\(label).projection.P", [vk.teacherChannels, vk.studentChannels], vk.projectionMatrix))
            }
        }
        for (n, s, v) in robust.exportState() { out.append(("robust/\(n)", s, v)) }
        let shift = robust.logShift() ?? [Float](repeating: 0, count: classes)
        out.append(("robust/log_shift", [classes], shift))
        out.append(("robust/lambda", [robust.groups], robust.lambda.map { Float($0) }))
        return out
    }

    private func checkpointArtifact(candidate: Int, epoch: Int, logs: [TrainingLog], best: Snapshot?,
                                    chosen: (index: Int, snapshot: Snapshot)?) throws -> Artifact {
        var a = Artifact(meta: ArtifactMeta(stage: "distill-checkpoint"))
        func counter(_ name: String, _ v: Int) { a.set("counter/\(name)", NDArray([Int64(v)], shape: [1])) }
        counter("candidate", candidate)
        counter("epoch", epoch)
        counter("logs", logs.count)
        counter("chosen", chosen?.index ?? -1)
        if epoch > 0 {
            let cur = snapshot()
            try Checkpoint.add(cur.model, prefix: "cur/model/", to: &a)
            try Checkpoint.add(cur.method, prefix: "cur/method/", to: &a)
            try Checkpoint.add(optimizer.exportState(), prefix: "cur/optim/", to: &a)
            guard let best else { throw DistillError("internal: no best snapshot mid-candidate") }
            try Checkpoint.add(best.model, prefix: "best/model/", to: &a)
            try Checkpoint.add(best.method, prefix: "best/method/", to: &a)
        }
        if let chosen {
            try Checkpoint.add(chosen.snapshot.model, prefix: "chosen/model/", to: &a)
            try Checkpoint.add(chosen.snapshot.method, prefix: "chosen/method/", to: &a)
        }
        for (c, l) in logs.enumerated() { l.write(into: &a, prefix: "log\(c)/") }
        return a
    }

    private func restoreCheckpoint(_ a: Artifact) throws -> (candidate: Int, epoch: Int, logs: [TrainingLog],
                                                             best: Snapshot?, chosen: (index: Int, snapshot: Snapshot)?) {
        func counter(_ name: String) throws -> Int {
            guard let v = a["counter/\(name)"], v.dtype == .int64, v.count == 1 else {
                throw DistillError("checkpoint: no counter '\(name)'")
            }
            return Int(try v.int64s()[0])
        }
        let cand = try counter("candidate"), epoch = try counter("epoch"), nLogs = try counter("logs")
        let ch = try counter("chosen")
        guard cand >= 0, cand <= config.lambdaLayers.count, epoch >= 0, epoch < config.epochs,
              nLogs == (epoch > 0 ? cand + 1 : cand), ch < cand else {
            throw DistillError("checkpoint: inconsistent counters (candidate \(cand), epoch \(epoch), logs \(nLogs), chosen \(ch))")
        }
        let logs = try (0..<nLogs).map { try TrainingLog(from: a, prefix: "log\($0)/") }
        var best: Snapshot?
        if epoch > 0 {
            try setUpCandidate(cand)
            try restore(Snapshot(model: Checkpoint.arrays(prefix: "cur/model/", from: a),
                                 method: Checkpoint.arrays(prefix: "cur/method/", from: a)))
            try optimizer.importState(Checkpoint.arrays(prefix: "cur/optim/", from: a))
            best = Snapshot(model: try Checkpoint.arrays(prefix: "best/model/", from: a),
                            method: try Checkpoint.arrays(prefix: "best/method/", from: a))
        }
        var chosen: (index: Int, snapshot: Snapshot)?
        if ch >= 0 {
            chosen = (ch, Snapshot(model: try Checkpoint.arrays(prefix: "chosen/model/", from: a),
                                   method: try Checkpoint.arrays(prefix: "chosen/method/", from: a)))
        }
        return (cand, epoch, logs, best, chosen)
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
            return try Model(architecture: architecture, inputShape: inputShape, batchNorm: batchNorm, seed: seed)
        } catch let e as NNError {
            throw DistillError("student architecture '\(architecture)': \(e.message)")
        }
    }
}
