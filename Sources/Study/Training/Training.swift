import NN
import StageKit
import TensorIO

/// Stage 2 of the pipeline, `train-teacher` (issue 5): the teacher's
/// training loop (`trainTeacher`), its log series, and small evaluation helpers.
public enum Training {}

extension Training {
    /// The teacher's training-log series (`TrainingLog`), in order: epoch
    /// (from 1), mean training loss over the epoch's batches (the
    /// objective's loss, i.e. on shifted logits for `balanced`/`dro`),
    /// accuracy of the argmax of the raw logits on the (augmented) training
    /// batches, validation accuracy, minimum per-class recall on the
    /// validation split, learning rate, and the wall time of the epoch
    /// including validation (not deterministic: meta.json only). Kept in the
    /// checkpoint (so a resumed run ends with the whole history) and written
    /// as `log/...` entries and `meta.extra["log"]` of the teacher artifact.
    public static let logSeries = ["epoch", "loss", "train_acc", "val_acc", "val_worst_class", "lr", "seconds"]
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
