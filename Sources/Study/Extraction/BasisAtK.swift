import Foundation
import NN
import Subspace
import TensorIO

/// One cell of the "basis@k" table.
public struct BasisAtKRow: Equatable {
    public var layer: String
    public var kind: BasisKind
    public var k: Int
    /// The teacher's subtask accuracy with `layer` replaced by its rank-k reconstruction.
    public var accuracy: Double
}

/// The "basis@k" check (docs/methods.md, "Relevant subspace", basis@k check):
/// the teacher's subtask accuracy when ONE layer's activation is replaced by
/// its rank-k reconstruction U_k U_kᵀ (a − μ) + μ (`SubspaceProjector.reconstruct`)
/// and the rest of the network runs on it; one row per (layer, basis, k).
public struct BasisAtKTable: Equatable {
    /// Accuracy of the unmodified teacher on the same images.
    public var baselineAccuracy: Double
    public var images: Int
    public var rows: [BasisAtKRow]

    public func accuracy(layer: String, kind: BasisKind, k: Int) -> Double? {
        rows.first { $0.layer == layer && $0.kind == kind && $0.k == k }?.accuracy
    }

    /// `{"baseline_accuracy", "images", "rows": [{"layer", "basis", "k", "accuracy"}]}` for meta.extra.
    public var json: JSON {
        .object([
            "baseline_accuracy": .number(baselineAccuracy),
            "images": .number(Double(images)),
            "rows": .array(rows.map {
                .object(["layer": .string($0.layer), "basis": .string($0.kind.rawValue),
                         "k": .number(Double($0.k)), "accuracy": .number($0.accuracy)])
            }),
        ])
    }

    /// An aligned text table: per layer, one line per basis, one column per k.
    public var formatted: String {
        var lines = [String(format: "basis@k: teacher subtask accuracy with one layer replaced by U_k U_kᵀ(a − μ) + μ; %d images, unmodified teacher %.4f", images, baselineAccuracy)]
        var layers: [String] = []
        for r in rows where !layers.contains(r.layer) { layers.append(r.layer) }
        let kindWidth = max(10, rows.map { $0.kind.rawValue.count }.max() ?? 0)
        let layerWidth = max(6, layers.map(\.count).max() ?? 0)
        for layer in layers {
            let lr = rows.filter { $0.layer == layer }
            var ks: [Int] = []
            for r in lr where !ks.contains(r.k) { ks.append(r.k) }
            ks.sort()
            var kinds: [BasisKind] = []
            for r in lr where !kinds.contains(r.kind) { kinds.append(r.kind) }
            func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
            func lpad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
            lines.append(pad("layer", layerWidth) + "  " + pad("basis", kindWidth) + ks.map { lpad("k=\($0)", 8) }.joined())
            for kind in kinds {
                let cells = ks.map { k in
                    lpad(lr.first { $0.kind == kind && $0.k == k }.map { String(format: "%.4f", $0.accuracy) } ?? "-", 8)
                }
                lines.append(pad(layer, layerWidth) + "  " + pad(kind.rawValue, kindWidth) + cells.joined())
            }
        }
        return lines.joined(separator: "\n")
    }
}

public enum BasisAtK {
    /// k ∈ {1, 2, 4, paired k, 2 × paired k}, capped at d, sorted, distinct.
    public static func defaultGrid(pairedK: Int, channels d: Int) -> [Int] {
        Array(Set([1, 2, 4, pairedK, 2 * pairedK].map { min(max($0, 1), d) })).sorted()
    }

    /// Measures the table on `count` labelled images.
    ///
    /// Each batch runs the full teacher once (the baseline, and every chosen
    /// tap's activation), then for each (basis, k) reconstructs that tap and
    /// runs the layers after it (`Model.forward(fromTap:activation:)`).
    /// Every k of a basis's grid must be at most the k it keeps (fit the
    /// bases with the largest k wanted; smaller ones are its truncations).
    ///
    /// - Parameters:
    ///   - labels: subtask labels 0..<K.
    ///   - grid: the ks to try for each basis (each ≤ that basis's k).
    public static func evaluate(teacher: Model, images: [Float], labels: [Int], margin: SubtaskMargin,
                                bases: [SubspaceBasis], grid: (SubspaceBasis) -> [Int], batch: Int = 64,
                                progress: ((Int, Int) -> Void)? = nil) throws -> BasisAtKTable {
        let pixels = teacher.inputShape.reduce(1, *)
        let count = labels.count
        guard count > 0, images.count == count * pixels else {
            throw ExtractionError("basis@k: need at least one image of shape \(teacher.inputShape); got \(images.count) values for \(count) labels")
        }
        guard batch > 0 else { throw ExtractionError("basis@k: batch size must be positive, got \(batch)") }
        if let bad = labels.first(where: { $0 < 0 || $0 >= margin.count }) {
            throw ExtractionError("basis@k: label \(bad) is outside the subtask's \(margin.count) classes")
        }
        // One projector per (basis, k), built once.
        var configs: [(basis: SubspaceBasis, k: Int, projector: SubspaceProjector)] = []
        for basis in bases {
            _ = try teacher.layerIndex(ofTap: basis.layer)
            guard teacher.tapShape(basis.layer)[2] == basis.channels else {
                throw ExtractionError("basis@k: basis \(basis.layer)/\(basis.kind.rawValue) has d = \(basis.channels), the teacher layer \(teacher.tapShape(basis.layer)[2]) channels")
            }
            for k in grid(basis) {
                guard k >= 1, k <= basis.k else {
                    throw ExtractionError("basis@k: k = \(k) for \(basis.layer)/\(basis.kind.rawValue), which keeps \(basis.k) directions")
                }
                configs.append((basis, k, SubspaceProjector(try basis.truncated(to: k))))
            }
        }
        var layers: [String] = []
        for c in configs where !layers.contains(c.basis.layer) { layers.append(c.basis.layer) }

        var hits = [Int](repeating: 0, count: configs.count)
        var baselineHits = 0
        var x = Tensor(shape: [0])
        var done = 0
        while done < count {
            let b = min(batch, count - done)
            let shape = [b] + teacher.inputShape
            if x.shape != shape { x = Tensor(shape: shape) }
            x.data.withUnsafeMutableBufferPointer { dst in
                images.withUnsafeBufferPointer { src in
                    dst.baseAddress!.update(from: src.baseAddress! + done * pixels, count: b * pixels)
                }
            }
            let batchLabels = labels[done..<(done + b)]
            func hitCount(_ logits: Tensor) -> Int {
                zip(margin.predictions(logits), batchLabels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
            }
            baselineHits += hitCount(teacher.forward(x, training: false))
            // Copies: the partial forwards below overwrite the layers' outputs.
            var taps: [String: Tensor] = [:]
            for name in layers { taps[name] = teacher.activation(tap: name) }
            for (i, c) in configs.enumerated() {
                let a = taps[c.basis.layer]!
                let r = try c.projector.reconstruct(a.data, shape: a.shape)
                hits[i] += hitCount(try teacher.forward(fromTap: c.basis.layer, activation: Tensor(shape: a.shape, data: r)))
            }
            done += b
            progress?(done, count)
        }
        let n = Double(count)
        return BasisAtKTable(baselineAccuracy: Double(baselineHits) / n, images: count,
                             rows: configs.enumerated().map { i, c in
                                 BasisAtKRow(layer: c.basis.layer, kind: c.basis.kind, k: c.k, accuracy: Double(hits[i]) / n)
                             })
    }
}
