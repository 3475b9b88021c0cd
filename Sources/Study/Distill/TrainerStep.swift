import NN
import StageKit

extension DistillTrainer {
    // MARK: One step

    /// Loss terms of one batch (unweighted, in `termNames` order) and the
    /// weighted total. With `update`, back-propagates and takes an optimiser
    /// step; without, leaves ∂L/∂θ in every parameter's `grad` (λ-weighted,
    /// the gradient of the combined L) and changes no value.
    @discardableResult
    func step(_ idx: ArraySlice<Int>, epoch: Int = 0, update: Bool, meters: inout [DeadChannelMeter], hits: inout Int)
        throws -> (terms: [Double], total: Double) {
        optimizer.zeroGrad()
        train.gather(idx, into: &x)
        let labels = idx.map { train.labels[$0] }
        let zs = student.forward(x, training: true)
        var g = Tensor(shape: zs.shape)
        let shift = robust.logShift()
        var terms: [Double] = []
        var total = 0.0
        // Per-example weights: the within-class part r of a worst-group margin
        // objective, or the whole cost w_g of `reweighted` (which uses the
        // labels even for a teacher-only method: the weight is the example's
        // class cost); nil otherwise.
        let w = try robust.exampleWeights(groups: config.groups == .group ? idx.map { train.group[$0] } : labels)
        if config.lambdaTask > 0 {
            let (l, gt) = try Loss.crossEntropy(zs, labels: labels, logShift: shift, weights: w)
            axpy(&g, config.lambdaTask, gt)
            terms.append(Double(l)); total += Double(config.lambdaTask) * Double(l)
        }
        if config.lambdaKD > 0 {
            targets!.gather(idx, into: &pBatch)
            // Margin objectives carry r on the soft targets (no label needed);
            // `reweighted` weights the example's whole KD term by w_(g_b).
            if config.groups == .group && config.objective.shiftsLogits {
                pBatch = try robust.reweightTargets(pBatch, states: idx.map { train.artifact[$0] ? 1 : 0 })
            }
            let (l, gk) = try Loss.distillation(student: zs, teacherProbs: pBatch, temperature: config.temperature,
                                                logShift: shift, weights: config.objective == .reweighted ? w : nil)
            axpy(&g, config.lambdaKD, gk)
            terms.append(Double(l)); total += Double(config.lambdaKD) * Double(l)
        }
        if let logitLoss {
            teacherLogits!.gather(idx, into: &zBatch)
            var zsh = zs
            if let shift {
                zsh.data.withUnsafeMutableBufferPointer { p in
                    for i in 0..<idx.count { for j in 0..<classes { p[i * classes + j] -= shift[j] } }
                }
            }
            let r = logitLoss.forwardBackward(studentLogits: zsh, teacherLogits: zBatch, labels: labels, epoch: epoch)
            axpy(&g, 1, r.gradStudent)
            terms += r.terms; total += r.loss
        }
        var tapGrads: [String: Tensor] = [:]
        let lam = lambdaLayer
        for i in pairs.indices {
            let s = student.activation(tap: pairs[i].student)
            meters[i].observe(s)
            teacher!.maps[i].gather(idx, into: &mapBatch[i])
            let r = losses[i].forwardBackward(cachedTeacher: mapBatch[i], student: s, training: true,
                                              computeGradient: lam > 0)
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
            throw DistillError("the loss is not finite (\(shown)); training diverged, no artifact written (try a smaller --lr or --lambda-layer)", kind: .failure)
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

    struct Timing {
        var start = ProgressLine.now()
        var batchesDone = 0
        var lastShown = -1e9
    }

    /// Trains one epoch of the current candidate; returns its log entry.
    func runEpoch(_ epoch: Int, candidate: Int, hooks: TrainerHooks, timing: inout Timing,
                          batchesLeft: Int) throws -> [(String, Double)] {
        let b = config.batchSize
        let nBatches = train.count / b
        let schedule = try StepLR.quarterly(baseLearningRate: config.learningRate, epochs: config.epochs)
        let lr = schedule.learningRate(epoch: epoch)
        optimizer.learningRate = lr
        var rng = RNG(seed: config.seed, stream: Distill.Stream.epoch + UInt64(epoch))
        let order = rng.permutation(train.count)
        var droRng = RNG(seed: config.seed, stream: Distill.Stream.dro + UInt64(epoch))
        var meters = contexts.map { DeadChannelMeter(channels: $0.studentChannels) }
        var sums = [Double](repeating: 0, count: termNames.count)
        var totalSum = 0.0
        var hits = 0
        for bi in 0..<nBatches {
            let (terms, total) = try step(order[(bi * b)..<((bi + 1) * b)], epoch: epoch, update: true, meters: &meters,
                                          hits: &hits)
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
                    var text = "distill \(config.method.name)"
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
}
