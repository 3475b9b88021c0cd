import Foundation
import NN
import StageKit
import TensorIO

/// What a `trainTeacher` call did.
public struct TeacherRunResult {
    public enum Status: Equatable, Sendable {
        /// Trained (possibly resuming a checkpoint) and wrote the artifact.
        case trained
        /// The output already holds this very run (same fingerprint): nothing done.
        case upToDate
        /// Stopped after `stopAfterEpochs` with a checkpoint and no artifact.
        case stopped
    }
    public var status: Status
    /// Epochs already done when this call started (0: fresh run).
    public var resumedFromEpoch: Int
    public var log: TrainingLog
    /// The teacher as written (nil unless `trained`).
    public var teacher: TeacherArtifact?
    public var fingerprint: String
    /// Training images per second of this call (excluding validation).
    public var imagesPerSecond: Double
}

/// Generator streams of the teacher run, one per epoch and purpose, so that
/// an epoch's draws depend only on (seed, epoch) and a resumed run repeats
/// them exactly; turning augmentation on or off does not change the order.
enum TeacherStreams {
    static let base: UInt64 = 0x7EAC_0000_0000
    static func order(_ epoch: Int) -> UInt64 { base + UInt64(epoch) * 4 }
    static func augment(_ epoch: Int) -> UInt64 { base + UInt64(epoch) * 4 + 1 }
    static func dro(_ epoch: Int) -> UInt64 { base + UInt64(epoch) * 4 + 2 }
}

extension Training {
    /// Trains the teacher (stage 2) and writes `options.outPath`.
    ///
    /// Objective: cross-entropy on the logits shifted by the robust
    /// objective's s = log w (docs/methods.md, "Robust objectives"):
    /// ℓ(y, z) = −log softmax(z − log w)_y, with w ≡ 1 for `erm`, w_y =
    /// ((1 − β)π_y + β/C)/π_y for `balanced`, and λ updated every K steps
    /// from a validation batch's group errors for `dro`
    /// (λ ← λ ⊙ exp(η·err), renormalised). Mini-batches of `batch` images in
    /// a per-epoch random order, the last incomplete batch dropped; learning
    /// rate base·γ^⌊epoch/step⌋.
    ///
    /// Checkpoint policy: the teacher is the network after the LAST epoch,
    /// not the epoch of best validation accuracy. With the step decay the
    /// last epoch runs at the smallest rate, the teacher is frozen for every
    /// later stage, and the validation split stays a held-out monitor (and
    /// the source of `dro`'s group errors) instead of a selection set.
    ///
    /// Resumable: after every epoch the whole state (weights, batch-norm
    /// statistics, optimiser moments and step, robust λ, the log) is saved to
    /// `<out>.ckpt.npz` with a fingerprint of the options and input digests;
    /// a later call with the same fingerprint continues from there and ends
    /// with bit-identical weights. The checkpoint is removed once the
    /// artifact is written. When `<out>` already carries the fingerprint the
    /// call does nothing.
    public static func trainTeacher(_ o: TeacherOptions) throws -> TeacherRunResult {
        let inputs = try TeacherInputs(checking: o)
        if let done = inputs.finishedRun() { return done }
        let run = try TeacherRun(setUp: o, inputs: inputs)
        try run.resumeFromCheckpoint()
        for epoch in run.startEpoch..<o.epochs {
            if let stop = o.stopAfterEpochs, epoch >= stop { return run.stop(before: epoch) }
            try run.trainEpoch(epoch)
            try run.saveCheckpoint(after: epoch)
        }
        return try run.writeTeacher()
    }

    /// Reads a split, naming its role in errors.
    static func loadSplit(_ path: String, role: String) throws -> Dataset {
        let d: Dataset
        do { d = try Dataset(path: path) } catch {
            throw StageError("\(role) '\(path)' cannot be read: \(error)", causedBy: error)
        }
        guard d.count > 0 else { throw StageError("\(role) '\(path)' holds no images") }
        return d
    }

    /// Checks that the splits fit together; returns the number of classes.
    static func checkSplits(train: Dataset, val: Dataset) throws -> Int {
        guard train.imageShape == val.imageShape else {
            throw StageError("image size differs: training split \(train.imageShape.map(String.init).joined(separator: "×")), validation split \(val.imageShape.map(String.init).joined(separator: "×"))")
        }
        if train.subtaskClasses != nil {
            throw StageError("training split '\(train.name)' is a subtask split (it has subtask_classes); the teacher trains on all classes (teacher-train)")
        }
        let classes = train.numClasses
        if let a = train.classNames, let b = val.classNames, a != b {
            throw StageError("the training and validation splits have different classes (\(a.count) vs \(b.count) class names)")
        }
        for (d, role) in [(train, "training"), (val, "validation")] {
            if let bad = d.labels.firstIndex(where: { $0 < 0 || $0 >= classes }) {
                throw StageError("\(role) split: label \(d.labels[bad]) of image \(bad) is outside 0..<\(classes)")
            }
        }
        return classes
    }

    /// Name of the first parameter holding a NaN or infinity.
    static func firstNonFinite(_ parameters: [Parameter]) -> String? {
        for p in parameters {
            let ok = p.value.withUnsafeBufferPointer { v -> Bool in
                // x·0 is ±0 for finite x and NaN for ±∞ or NaN: one
                // branch-free pass.
                var s: Float = 0
                for x in v { s += x * 0 }
                return s == 0
            }
            if !ok { return p.name }
        }
        return nil
    }
}

// MARK: Inputs

/// The checked options and the digests of the two splits: what identifies
/// a run (its fingerprint) before anything is loaded.
struct TeacherInputs {
    let options: TeacherOptions
    let trainDigest: String
    let valDigest: String
    let fingerprint: String
    /// Progress and summary lines on stderr (silent unless `verbose`).
    let say: (String) -> Void

    init(checking o: TeacherOptions) throws {
        try o.validate()
        try requireFile(o.trainPath, role: "training split (--train)")
        try requireFile(o.valPath, role: "validation split (--val)")
        options = o
        trainDigest = try sha256Hex(ofFile: o.trainPath)
        valDigest = try sha256Hex(ofFile: o.valPath)
        fingerprint = runFingerprint(arguments: o.canonicalArguments,
                                     inputDigests: ["train": trainDigest, "val": valDigest])
        say = o.verbose ? { log($0) } : { _ in }
    }

    /// `meta.inputs` of the checkpoints and the artifact.
    var digests: [String: String] { ["train": trainDigest, "val": valDigest] }

    /// The result of a call that has nothing to do: the output already
    /// carries this run's fingerprint.
    func finishedRun() -> TeacherRunResult? {
        let o = options
        guard FileManager.default.fileExists(atPath: o.outPath),
              let done = try? NPZ.read(o.outPath, entries: []),
              done.meta?.extra["fingerprint"]?.string == fingerprint else { return nil }
        say("train-teacher: \(o.outPath) is up to date (same inputs and arguments, fingerprint \(fingerprint.prefix(12))); nothing to do")
        return TeacherRunResult(status: .upToDate, resumedFromEpoch: o.epochs,
                                log: TrainingLog(json: done.meta?.extra["log"], series: Training.logSeries) ?? TrainingLog(),
                                teacher: nil, fingerprint: fingerprint, imagesPerSecond: 0)
    }
}

/// One teacher training run, in the order `Training.trainTeacher` calls
/// it: set-up (splits, network, objective, optimiser), resume, per epoch
/// the steps then validation and checkpoint, and the artifact.
final class TeacherRun {
    let o: TeacherOptions
    let inputs: TeacherInputs
    let train: Dataset, val: Dataset
    let classes: Int
    let model: Model
    let classPriors: [Float]
    /// Robust-objective group of each training / validation image.
    let trainGroups: [Int], valGroups: [Int]
    var objective: RobustObjective
    let optimizer: Optimizer
    let schedule: StepLR
    let checkpoint: EpochCheckpoint
    let augmenter: BatchAugmenter

    private(set) var log = TrainingLog()
    /// Epochs done before this call (0: fresh run).
    private(set) var startEpoch = 0
    /// The objective's logit shift s = log w (nil for `erm`), renewed after each λ update.
    var shift: [Float]?
    /// Per-class validation recall of the last epoch trained in this call.
    var lastRecall: [Double?] = []

    // Batch buffers, reused by every step.
    var x = Tensor(shape: [0])
    var labels: [Int]
    // Speed and progress of this call.
    let progress = ProgressLine()
    var runStart = ProgressLine.now()
    var trainSeconds = 0.0, trainImages = 0, stepsThisRun = 0

    var stepsPerEpoch: Int { train.count / o.batch }
    var imagesPerSecond: Double { trainSeconds > 0 ? Double(trainImages) / trainSeconds : 0 }

    // MARK: Set-up

    /// Loads and checks the splits, builds the network, the robust
    /// objective, the optimiser and the learning-rate schedule.
    init(setUp o: TeacherOptions, inputs: TeacherInputs) throws {
        self.o = o
        self.inputs = inputs
        try ensureDirectory(forFile: o.outPath)

        let train = try Training.loadSplit(o.trainPath, role: "training split (--train)")
        let val = try Training.loadSplit(o.valPath, role: "validation split (--val)")
        let classes = try Training.checkSplits(train: train, val: val)
        (self.train, self.val, self.classes) = (train, val, classes)

        let model: Model
        do {
            model = try Model(architecture: o.architecture, inputShape: train.imageShape, batchNorm: o.batchNorm, seed: o.seed,
                              weightInit: o.weightInit)
        } catch let e as NNError {
            throw StageError(usage: "--arch '\(o.architecture)': \(e.message)")
        }
        self.model = model
        guard model.outputShape == [classes] else {
            throw StageError(usage: "--arch '\(o.architecture)' ends in \(model.outputShape.map(String.init).joined(separator: "×")) outputs, but the training split has \(classes) classes (the last layer must be fc\(classes))")
        }
        guard train.count >= o.batch else {
            throw StageError("the training split has \(train.count) images, fewer than one batch of \(o.batch) (--batch); the last incomplete batch is dropped")
        }

        // Class priors of the training split and the robust objective.
        var classCounts = [Int](repeating: 0, count: classes)
        for y in train.labels { classCounts[y] += 1 }
        classPriors = classCounts.map { Float(Double($0) / Double(train.count)) }
        let states = o.groups.statesPerClass
        let trainStates = train.artifact.map { $0 ? 1 : 0 }
        let trainGroups = try Robust.groupIDs(labels: train.labels, states: o.groups == .group ? trainStates : train.labels.map { _ in 0 },
                                              statesPerClass: states)
        self.trainGroups = trainGroups
        do {
            objective = try RobustObjective(mode: o.objective, classes: classes, statesPerClass: states,
                                            groupPriors: Robust.priors(ids: trainGroups, count: classes * states),
                                            beta: o.beta, eta: o.eta, updateEvery: o.droEvery)
        } catch let e as TrainError {
            let hint = o.groups == .group ? " (--groups group needs training images of every class with and without the artifact)" : ""
            throw StageError(usage: "--objective \(o.objective.rawValue): \(e.message)\(hint)")
        }
        valGroups = try Robust.groupIDs(labels: val.labels, states: o.groups == .group ? val.artifact.map { $0 ? 1 : 0 } : val.labels.map { _ in 0 },
                                        statesPerClass: states)

        switch o.optimizer {
        case .adam: optimizer = try Adam(parameters: model.parameters, learningRate: o.effectiveLearningRate, weightDecay: o.weightDecay)
        case .adamw: optimizer = try AdamW(parameters: model.parameters, learningRate: o.effectiveLearningRate, weightDecay: o.weightDecay)
        case .sgd: optimizer = try SGD(parameters: model.parameters, learningRate: o.effectiveLearningRate, momentum: o.momentum, weightDecay: o.weightDecay)
        }
        schedule = try StepLR(baseLearningRate: o.effectiveLearningRate, stepSize: o.effectiveLRStep, gamma: o.lrGamma)
        checkpoint = EpochCheckpoint(output: o.outPath, fingerprint: inputs.fingerprint)
        augmenter = BatchAugmenter(o.augmentation)
        labels = [Int](repeating: 0, count: o.batch)
        shift = objective.logShift()
    }

    /// Continues from `<out>.ckpt.npz` when it holds this very run: weights,
    /// batch-norm statistics, optimiser moments and step, robust λ, the log.
    func resumeFromCheckpoint() throws {
        if let saved = checkpoint.load() {
            do {
                let s = try Checkpoint.state(from: saved)
                try model.setState(s.model.map { (name: $0.0, shape: $0.1, values: $0.2) })
                try optimizer.importState(s.optimizer)
                try objective.importState(s.extra.filter { $0.0.hasPrefix("robust/") }.map { (String($0.0.dropFirst(7)), $0.1, $0.2) })
                if o.objective == .dro { try objective.importHistory(try Self.historyRows(saved.meta?.extra["dro_history"])) }
                let done = try s.counter("epochs_done")
                guard let l = TrainingLog(json: saved.meta?.extra["log"], series: Training.logSeries), l.epochs == done,
                      (0...o.epochs).contains(done) else {
                    throw StageError("log or epoch count malformed")
                }
                startEpoch = done
                log = l
                inputs.say("train-teacher: resuming from \(checkpoint.path) after epoch \(startEpoch)/\(o.epochs)")
            } catch {
                throw StageError("checkpoint \(checkpoint.path) matches this run but cannot be restored (\(error)); delete it to start over")
            }
        }
        shift = objective.logShift()
        runStart = ProgressLine.now()
    }

    // MARK: The epoch loop

    /// One epoch: the steps over a fresh random order of the training split,
    /// then validation and the log entry.
    func trainEpoch(_ epoch: Int) throws {
        let epochStart = ProgressLine.now()
        let lr = schedule.learningRate(epoch: epoch)
        optimizer.learningRate = lr
        var orderRNG = RNG(seed: o.seed, stream: TeacherStreams.order(epoch))
        var augRNG = RNG(seed: o.seed, stream: TeacherStreams.augment(epoch))
        var droRNG = RNG(seed: o.seed, stream: TeacherStreams.dro(epoch))
        let order = orderRNG.permutation(train.count)
        let steps = stepsPerEpoch
        var lossSum = 0.0, correct = 0
        for b in 0..<steps {
            let t0 = ProgressLine.now()
            let (loss, hits) = try step(order[(b * o.batch)..<((b + 1) * o.batch)], epoch: epoch, batch: b, learningRate: lr,
                                        augRNG: &augRNG, droRNG: &droRNG)
            lossSum += Double(loss)
            correct += hits
            let t1 = ProgressLine.now()
            trainSeconds += t1 - t0
            trainImages += o.batch
            stepsThisRun += 1
            if o.verbose { showProgress(epoch: epoch, batch: b, meanLoss: lossSum / Double(b + 1), now: t1) }
        }

        let ev = try Training.evaluate(model: model, dataset: val, batch: o.batch)
        lastRecall = ev.perClassRecall
        let seconds = ProgressLine.now() - epochStart
        log.append([("epoch", Double(epoch + 1)), ("loss", lossSum / Double(steps)),
                    ("train_acc", Double(correct) / Double(steps * o.batch)), ("val_acc", ev.accuracy),
                    ("val_worst_class", ev.worstClassAccuracy), ("lr", Double(lr)), ("seconds", seconds)])
        if o.verbose {
            let line = String(format: "epoch %d/%d  loss %.4f  train_acc %.4f  val_acc %.4f  val_worst_class %.4f  lr %.2e  %.1f s  %.0f img/s",
                              epoch + 1, o.epochs, lossSum / Double(steps), Double(correct) / Double(steps * o.batch),
                              ev.accuracy, ev.worstClassAccuracy, Double(lr), seconds,
                              Double(trainImages) / max(trainSeconds, 1e-9))
            progress.finish(line)
        }
    }

    // MARK: The step

    /// One optimisation step on the images `idx`: augment, forward, shifted
    /// weighted cross-entropy, backward, update; then `dro`'s λ update when
    /// due. Returns the batch loss and the correct argmaxes of the raw logits.
    func step(_ idx: ArraySlice<Int>, epoch: Int, batch b: Int, learningRate lr: Float,
              augRNG: inout RNG, droRNG: inout RNG) throws -> (loss: Float, correct: Int) {
        train.gather(idx, into: &x)
        augmenter.apply(&x, rng: &augRNG)
        for (j, i) in idx.enumerated() { labels[j] = train.labels[i] }
        let weights = try objective.exampleWeights(groups: idx.map { trainGroups[$0] })
        let logits = model.forward(x, training: true)
        let (loss, grad) = try Loss.crossEntropy(logits, labels: labels, logShift: shift, weights: weights)
        guard loss.isFinite else {
            progress.finish()
            throw StageError("the training loss became \(loss) at epoch \(epoch + 1), batch \(b + 1) (learning rate \(lr)); no teacher written — lower --lr or check the data", kind: .failure)
        }
        let correct = zip(Loss.argmax(logits), labels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
        optimizer.zeroGrad()
        model.backward(grad)
        optimizer.step()
        if let bad = Training.firstNonFinite(model.parameters) {
            progress.finish()
            throw StageError("parameter \(bad) became non-finite at epoch \(epoch + 1), batch \(b + 1) (learning rate \(lr)); no teacher written — lower --lr", kind: .failure)
        }
        if objective.isUpdateDue(step: optimizer.stepCount) { try updateRobustWeights(rng: &droRNG) }
        return (loss, correct)
    }

    /// `dro`: λ ← λ ⊙ exp(η·err) from the group errors on a random
    /// validation batch, and the new logit shift.
    func updateRobustWeights(rng: inout RNG) throws {
        let pick = Array(rng.permutation(val.count).prefix(min(o.droBatch, val.count)))
        let pred = Training.predict(model: model, dataset: val, indices: pick, columns: Array(0..<classes), batch: o.batch)
        let errs = try Robust.groupErrors(predictions: pred, labels: pick.map { val.labels[$0] },
                                          groups: pick.map { valGroups[$0] }, groupCount: objective.groups)
        try objective.update(groupErrors: errs.errors)
        shift = objective.logShift()
    }

    func showProgress(epoch: Int, batch b: Int, meanLoss: Double, now: Double) {
        let rate = Double(trainImages) / max(trainSeconds, 1e-9)
        let perStep = (now - runStart) / Double(stepsThisRun)
        let left = perStep * Double((o.epochs - startEpoch) * stepsPerEpoch - stepsThisRun)
        progress.update(String(format: "epoch %d/%d  batch %d/%d  loss %.4f  %.0f img/s  left %@",
                               epoch + 1, o.epochs, b + 1, stepsPerEpoch, meanLoss, rate,
                               ProgressLine.format(seconds: left)))
    }

    // MARK: Checkpoint

    /// Saves the whole state after `epoch` (0-based) to `<out>.ckpt.npz`.
    func saveCheckpoint(after epoch: Int) throws {
        var state = TrainingState()
        state.model = model.state.map { ($0.name, $0.shape, $0.values) }
        state.optimizer = optimizer.exportState()
        state.extra = objective.exportState().map { ("robust/" + $0.0, $0.1, $0.2) }
        state.counters = [("epochs_done", epoch + 1)]
        var extra: [String: JSON] = ["log": log.json]
        // dro: the λ trajectory so far (JSON numbers round-trip exactly), so
        // a resumed run reports the same history as an uninterrupted one.
        if o.objective == .dro { extra["dro_history"] = .array(objective.history.map { .array($0.map { .number($0) }) }) }
        let meta = ArtifactMeta(stage: "train-teacher-checkpoint", parameters: o.parameters,
                                inputs: inputs.digests, seed: o.seed, extra: extra)
        try checkpoint.save(try Checkpoint.artifact(state, meta: meta), epoch: epoch + 1)
    }

    /// The rows of a checkpoint's `dro_history`.
    static func historyRows(_ json: JSON?) throws -> [[Double]] {
        guard case .array(let rows)? = json else { throw StageError("no dro_history in the checkpoint") }
        return try rows.map { row in
            guard case .array(let v) = row else { throw StageError("malformed dro_history") }
            return try v.map { guard let x = $0.number else { throw StageError("malformed dro_history") }; return x }
        }
    }

    /// `--stop-after`: ends the call before `epoch`, keeping the checkpoint.
    func stop(before epoch: Int) -> TeacherRunResult {
        progress.finish()
        inputs.say("train-teacher: stopping after epoch \(epoch) as asked (--stop-after); rerun without it to continue")
        return TeacherRunResult(status: .stopped, resumedFromEpoch: startEpoch, log: log, teacher: nil,
                                fingerprint: inputs.fingerprint, imagesPerSecond: imagesPerSecond)
    }

    // MARK: The artifact

    /// Writes the teacher: the last epoch's network, the class priors, the
    /// final logit shift, the log and the metadata; removes the checkpoint.
    func writeTeacher() throws -> TeacherRunResult {
        let logShift = objective.logShift() ?? [Float](repeating: 0, count: classes)
        let meta = ArtifactMeta(stage: "train-teacher", parameters: o.parameters,
                                inputs: inputs.digests, seed: o.seed, extra: try artifactExtra())
        let teacher = TeacherArtifact(model: model, classPriors: classPriors, logShift: logShift, meta: meta)
        var artifact = teacher.artifact(meta: meta)
        log.write(into: &artifact, prefix: "log/", integers: ["epoch"], skipping: ["seconds"])
        try NPZ.write(artifact, to: o.outPath)
        checkpoint.remove()
        inputs.say(String(format: "train-teacher: wrote %@ (val_acc %.4f, val_worst_class %.4f, %d epochs, %.0f s in this run)",
                          o.outPath, log["val_acc"]?.last ?? 0, log["val_worst_class"]?.last ?? 0, o.epochs,
                          ProgressLine.now() - runStart))
        return TeacherRunResult(status: .trained, resumedFromEpoch: startEpoch, log: log, teacher: teacher,
                                fingerprint: inputs.fingerprint, imagesPerSecond: imagesPerSecond)
    }

    /// `meta.extra` of the artifact: fingerprint, log, data sizes, final
    /// validation figures (per-class recall included), robust λ, speed.
    func artifactExtra() throws -> [String: JSON] {
        var extra: [String: JSON] = [
            "fingerprint": .string(inputs.fingerprint),
            "log": log.json,
            "checkpoint_policy": "last epoch",
            "train_path": .string(o.trainPath), "val_path": .string(o.valPath),
            "train_images": .number(Double(train.count)), "val_images": .number(Double(val.count)),
            "classes": .number(Double(classes)),
            "parameter_count": .number(Double(model.parameterCount)),
            "final_val_acc": .number(log["val_acc"]?.last ?? 0),
            "final_val_worst_class": .number(log["val_worst_class"]?.last ?? 0),
            "robust_lambda": .array(objective.lambda.map { .number($0) }),
            "robust_updates": .number(Double(objective.updates)),
            "images_per_second": .number(imagesPerSecond),
            "total_seconds": .number(log["seconds"]?.reduce(0, +) ?? 0),
        ]
        if let names = train.classNames { extra["class_names"] = .array(names.map { .string($0) }) }
        // dro: the λ trajectory (updates, log λ range, final, history, K, η).
        if let dro = objective.droRecord { extra["dro"] = dro }
        // Empty when the run resumed from the final checkpoint: recompute
        // (same network, same numbers) so the metadata never depends on it.
        if lastRecall.isEmpty { lastRecall = try Training.evaluate(model: model, dataset: val, batch: o.batch).perClassRecall }
        extra["final_val_class_recall"] = .array(lastRecall.map { $0.map { .number($0) } ?? .null })
        if o.verbose {
            let names = train.classNames ?? (0..<classes).map { "class \($0)" }
            let weakest = lastRecall.enumerated().compactMap { i, r in r.map { (i, $0) } }.sorted { $0.1 < $1.1 }.prefix(5)
            inputs.say("train-teacher: weakest validation classes: " + weakest.map { String(format: "%@ %.2f", names[$0.0], $0.1) }.joined(separator: ", "))
        }
        return extra
    }
}
