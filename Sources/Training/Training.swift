import NN
import StageKit
import TensorIO

/// Stage 2 of the pipeline, `train-teacher` (issue 5): the teacher's
/// training loop (`trainTeacher`), its log, and small evaluation helpers.
public enum Training {}

/// Per-epoch training log, kept in the checkpoint (so a resumed run ends
/// with the whole history) and written as `log/...` entries and
/// `meta.extra["log"]` of the teacher artifact.
public struct TrainingLog: Equatable, Sendable {
    /// Epoch number, counted from 1.
    public var epoch: [Int] = []
    /// Mean training loss over the epoch's batches (the objective's loss,
    /// i.e. on shifted logits for `balanced`/`dro`).
    public var loss: [Double] = []
    /// Accuracy of the argmax of the raw logits on the (augmented) training batches.
    public var trainAccuracy: [Double] = []
    public var valAccuracy: [Double] = []
    /// Minimum per-class recall on the validation split.
    public var valWorstClass: [Double] = []
    /// Learning rate of the epoch.
    public var learningRate: [Double] = []
    /// Wall time of the epoch including validation (not deterministic).
    public var seconds: [Double] = []

    public init() {}

    public var count: Int { epoch.count }

    mutating func append(epoch e: Int, loss l: Double, trainAccuracy t: Double, valAccuracy v: Double,
                         valWorstClass w: Double, learningRate lr: Double, seconds s: Double) {
        epoch.append(e); loss.append(l); trainAccuracy.append(t); valAccuracy.append(v)
        valWorstClass.append(w); learningRate.append(lr); seconds.append(s)
    }

    /// The log as JSON (meta.extra["log"] and the checkpoint).
    public var json: JSON {
        func nums(_ a: [Double]) -> JSON { .array(a.map { .number($0) }) }
        return .object([
            "epoch": .array(epoch.map { .number(Double($0)) }),
            "loss": nums(loss), "train_acc": nums(trainAccuracy), "val_acc": nums(valAccuracy),
            "val_worst_class": nums(valWorstClass), "lr": nums(learningRate), "seconds": nums(seconds),
        ])
    }

    /// Reads what `json` wrote; nil when malformed.
    public init?(json: JSON?) {
        guard let o = json?.object else { return nil }
        func nums(_ k: String) -> [Double]? { o[k]?.array?.compactMap { $0.number } }
        guard let e = nums("epoch"), let l = nums("loss"), let t = nums("train_acc"), let v = nums("val_acc"),
              let w = nums("val_worst_class"), let r = nums("lr"), let s = nums("seconds") else { return nil }
        let n = e.count
        guard [l, t, v, w, r, s].allSatisfy({ $0.count == n }) else { return nil }
        epoch = e.map { Int($0) }; loss = l; trainAccuracy = t; valAccuracy = v
        valWorstClass = w; learningRate = r; seconds = s
    }

    /// `log/epoch` (int64) and `log/loss`, `log/train_acc`, `log/val_acc`,
    /// `log/val_worst_class`, `log/lr` (float64), one row per epoch. Wall-clock
    /// seconds stay in meta.extra only: tensors must be identical between
    /// two runs of the same seed (the pipeline tests compare them bit for bit).
    public func write(into a: inout Artifact) {
        a.set("log/epoch", NDArray(epoch.map(Int64.init), shape: [count]))
        a.set("log/loss", NDArray(loss, shape: [count]))
        a.set("log/train_acc", NDArray(trainAccuracy, shape: [count]))
        a.set("log/val_acc", NDArray(valAccuracy, shape: [count]))
        a.set("log/val_worst_class", NDArray(valWorstClass, shape: [count]))
        a.set("log/lr", NDArray(learningRate, shape: [count]))
    }
}

/// Accuracy figures of a model on a split.
public struct SplitEvaluation: Sendable {
    public var accuracy: Double
    /// Minimum per-class recall over the classes present.
    public var worstClassAccuracy: Double
    /// Per-class recall (nil: class absent from the split).
    public var perClassRecall: [Double?]
    public var predictions: [Int]
}

extension Training {
    /// Evaluates `model` (evaluation mode: batch-norm running statistics) on
    /// `dataset`. With `classes`, the logits are first cut to those columns
    /// (label i ↔ logit column classes[i]), as the subtask's view of the
    /// teacher; else label i ↔ column i.
    public static func evaluate(model: Model, dataset: Dataset, classes: [Int]? = nil,
                                batch: Int = 64) throws -> SplitEvaluation {
        guard dataset.imageShape == model.inputShape else {
            throw StageError("\(dataset.name): images are \(dataset.imageShape.map(String.init).joined(separator: "×")), the model expects \(model.inputShape.map(String.init).joined(separator: "×"))")
        }
        guard dataset.count > 0 else { throw StageError("\(dataset.name): no images to evaluate") }
        guard batch > 0 else { throw StageError("evaluate: batch must be positive") }
        let outputs = model.outputShape.reduce(1, *)
        let cols = classes ?? Array(0..<outputs)
        if let bad = cols.first(where: { $0 < 0 || $0 >= outputs }) {
            throw StageError("\(dataset.name): class id \(bad) is outside the model's \(outputs) outputs")
        }
        let k = cols.count
        if let bad = dataset.labels.first(where: { $0 < 0 || $0 >= k }) {
            throw StageError("\(dataset.name): label \(bad) is outside 0..<\(k)")
        }
        let predictions = predict(model: model, dataset: dataset, indices: Array(0..<dataset.count), columns: cols, batch: batch)
        let acc = Loss.accuracy(predictions: predictions, labels: dataset.labels)
        let recall = try Robust.perClassRecall(predictions: predictions, labels: dataset.labels, classes: k)
        let worst = recall.compactMap { $0 }.min() ?? 0
        return SplitEvaluation(accuracy: acc, worstClassAccuracy: worst, perClassRecall: recall, predictions: predictions)
    }

    /// argmax over `columns` of the logits (evaluation mode) of the images
    /// `indices`, forwarded `batch` at a time (the layers' workspaces grow to
    /// the largest batch seen, so evaluation in training-sized chunks costs
    /// no extra memory). Callers check shapes and column ids.
    static func predict(model: Model, dataset: Dataset, indices: [Int], columns cols: [Int], batch: Int) -> [Int] {
        let outputs = model.outputShape.reduce(1, *)
        let k = cols.count
        var predictions = [Int](repeating: 0, count: indices.count)
        var x = Tensor(shape: [0])
        var start = 0
        while start < indices.count {
            let end = min(start + batch, indices.count)
            dataset.gather(indices[start..<end], into: &x)
            let z = model.forward(x, training: false)
            z.data.withUnsafeBufferPointer { zp in
                for r in 0..<(end - start) {
                    let row = r * outputs
                    var best = 0, bestValue = zp[row + cols[0]]
                    for j in 1..<k where zp[row + cols[j]] > bestValue {
                        best = j; bestValue = zp[row + cols[j]]
                    }
                    predictions[start + r] = best
                }
            }
            start = end
        }
        return predictions
    }

    /// The teacher's accuracy on a subtask split (distill-*, test*): logits
    /// cut to the split's `subtask_classes` (meta.parameters), argmax over
    /// those. For measurements and tests; the evaluation stage has its own.
    public static func subtaskAccuracy(teacher: TeacherArtifact, dataset: Dataset, batch: Int = 64) throws -> Double {
        guard let classes = dataset.subtaskClasses, !classes.isEmpty else {
            throw StageError("\(dataset.name): no subtask_classes in its metadata (not a subtask split?)")
        }
        return try evaluate(model: teacher.model, dataset: dataset, classes: classes, batch: batch).accuracy
    }
}
