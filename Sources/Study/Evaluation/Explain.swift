import NN
import StageKit

/// One network as the evaluation sees it: a `Model` whose logits are cut to
/// the subtask classes (`classColumns[k]` = logit column of subtask class k;
/// the identity for a student, the split's `subtask_classes` for the teacher).
/// Every pass is in evaluation mode (BN running statistics).
public final class NetworkEvaluator {
    public let model: Model
    public let classColumns: [Int]
    public let batchSize: Int
    public let lrp: LRP
    private var batch = Tensor(shape: [0])

    public var numClasses: Int { classColumns.count }

    public init(model: Model, classColumns: [Int], batchSize: Int = 50, epsilonFactor: Float = 0.25) throws {
        let outputs = model.outputShape.reduce(1, *)
        guard model.outputShape.count == 1 else {
            throw EvaluationError("network '\(model.architecture)' does not end in a flat logit vector")
        }
        guard !classColumns.isEmpty, classColumns.allSatisfy({ $0 >= 0 && $0 < outputs }) else {
            throw EvaluationError("class columns \(classColumns) do not fit the \(outputs) outputs of '\(model.architecture)'")
        }
        guard batchSize > 0 else { throw EvaluationError("batch size must be positive, got \(batchSize)") }
        self.model = model
        self.classColumns = classColumns
        self.batchSize = batchSize
        self.lrp = try LRP(model: model, epsilonFactor: epsilonFactor)
    }

    /// Subtask logits (N×K, row-major) of every image of `data`. With
    /// `collectStatistics`, the LRP pre-activation statistics are reset, fed
    /// with these forwards and turned into ε (see `LRP`).
    public func logits(_ data: StageKit.Dataset, collectStatistics: Bool = false) -> [Float] {
        let k = classColumns.count, outputs = model.outputShape[0]
        var out = [Float](repeating: 0, count: data.count * k)
        if collectStatistics { lrp.resetStatistics() }
        var start = 0
        while start < data.count {
            let end = min(start + batchSize, data.count)
            data.gather(Array(start..<end)[...], into: &batch)
            let z = model.forward(batch, training: false)
            if collectStatistics { lrp.accumulateStatistics() }
            z.data.withUnsafeBufferPointer { zp in
                out.withUnsafeMutableBufferPointer { o in
                    for i in 0..<(end - start) {
                        for c in 0..<k { o[(start + i) * k + c] = zp[i * outputs + classColumns[c]] }
                    }
                }
            }
            start = end
        }
        if collectStatistics { lrp.updateEpsilons() }
        return out
    }

    /// Argmax over the subtask logits (first index on ties).
    public func predictions(_ data: StageKit.Dataset) -> [Int] {
        NetworkEvaluator.argmax(logits(data), classes: numClasses)
    }

    public static func argmax(_ logits: [Float], classes k: Int) -> [Int] {
        let n = logits.count / k
        var out = [Int](repeating: 0, count: n)
        logits.withUnsafeBufferPointer { z in
            for i in 0..<n {
                var best = 0
                for c in 1..<max(k, 1) where z[i * k + c] > z[i * k + best] { best = c }
                out[i] = best
            }
        }
        return out
    }

    /// What `relevance(_:patch:keep:)` measures per image.
    public struct RelevanceResult {
        /// Subtask logits (N×K) of the same forwards.
        public var logits: [Float]
        /// Logit margin f = z_y − max_{c≠y} z_c of each image.
        public var margins: [Float]
        /// Share of |gradient × input| inside the patch (nil: no relevance).
        public var shareGxi: [Double?]
        /// Share of |LRP-ε relevance| inside the patch.
        public var shareLrp: [Double?]
        /// Pixel relevance maps R_pixel = Σ_channels R (H×W) of the kept
        /// images, LRP-ε and gradient × input, in `keep` order.
        public var keptLrp: [[Float]]
        public var keptGxi: [[Float]]
    }

    /// Relevance of the logit margin f = z_y − max_{c≠y} z_c (y the true
    /// label, over the subtask logits) on every image of `data`, by gradient
    /// × input (`Model.backward(…, inputGradient: true)` after an
    /// evaluation-mode forward: R = x ⊙ ∂f/∂x) and by LRP-ε (relevance
    /// initialised at the logits as R_c = m_c·z_c, m = +1 at y, −1 at the
    /// runner-up, so Σ_c R_c = f). The LRP ε must have been set first
    /// (`logits(_:collectStatistics: true)` on some split). Returns the
    /// logits, margins and each image's share of
    /// relevance inside the top-left `patch`×`patch` square, see
    /// `Scores.patchShare`.
    public func relevance(_ data: StageKit.Dataset, patch: Int, keep: [Int] = []) -> RelevanceResult {
        let k = classColumns.count, outputs = model.outputShape[0]
        let (h, w, ch) = (data.height, data.width, data.channels)
        let p = data.pixelsPerImage
        var result = RelevanceResult(logits: [Float](repeating: 0, count: data.count * k),
                                     margins: [Float](repeating: 0, count: data.count),
                                     shareGxi: [Double?](repeating: nil, count: data.count),
                                     shareLrp: [Double?](repeating: nil, count: data.count),
                                     keptLrp: [[Float]](repeating: [], count: keep.count),
                                     keptGxi: [[Float]](repeating: [], count: keep.count))
        var keepSlots: [Int: [Int]] = [:]
        for (slot, i) in keep.enumerated() { keepSlots[i, default: []].append(slot) }
        var seed = Tensor(shape: [0]), lrpSeed = Tensor(shape: [0]), lrpOut = Tensor(shape: [0])
        var sub = [Float](repeating: 0, count: k)
        var start = 0
        while start < data.count {
            let end = min(start + batchSize, data.count)
            let b = end - start
            data.gather(Array(start..<end)[...], into: &batch)
            let z = model.forward(batch, training: false)
            if seed.shape != [b, outputs] {
                seed = Tensor(shape: [b, outputs]); lrpSeed = Tensor(shape: [b, outputs])
            }
            // m: +1 at the label's column, −1 at the runner-up's.
            z.data.withUnsafeBufferPointer { zp in
                seed.data.withUnsafeMutableBufferPointer { g in
                    lrpSeed.data.withUnsafeMutableBufferPointer { r in
                        g.update(repeating: 0); r.update(repeating: 0)
                        for i in 0..<b {
                            for c in 0..<k {
                                sub[c] = zp[i * outputs + classColumns[c]]
                                result.logits[(start + i) * k + c] = sub[c]
                            }
                            let y = data.labels[start + i]
                            guard y >= 0 && y < k else { continue }
                            let (ru, f) = sub.withUnsafeBufferPointer { Scores.margin($0.baseAddress!, classes: k, label: y) }
                            result.margins[start + i] = f
                            guard ru != y else { continue }
                            let cy = i * outputs + classColumns[y], cr = i * outputs + classColumns[ru]
                            g[cy] = 1; g[cr] = -1
                            r[cy] = zp[cy]; r[cr] = -zp[cr]
                        }
                    }
                }
            }
            // LRP first: the model's layer outputs still hold this forward.
            lrp.relevance(input: batch, outputRelevance: lrpSeed, into: &lrpOut)
            let grad = model.backward(seed, inputGradient: true)!
            model.zeroGrad()
            batch.data.withUnsafeBufferPointer { xp in
                grad.data.withUnsafeBufferPointer { gp in
                    lrpOut.data.withUnsafeBufferPointer { rp in
                        var gxi = [Float](repeating: 0, count: p)
                        gxi.withUnsafeMutableBufferPointer { gx in
                            for i in 0..<b {
                                let o = i * p
                                for j in 0..<p { gx[j] = xp[o + j] * gp[o + j] }
                                result.shareGxi[start + i] = Scores.patchShare(gx.baseAddress!, height: h, width: w, channels: ch, patch: patch)
                                result.shareLrp[start + i] = Scores.patchShare(rp.baseAddress! + o, height: h, width: w, channels: ch, patch: patch)
                                for slot in keepSlots[start + i] ?? [] {
                                    result.keptGxi[slot] = pixelSums(gx.baseAddress!, pixels: h * w, channels: ch)
                                    result.keptLrp[slot] = pixelSums(rp.baseAddress! + o, pixels: h * w, channels: ch)
                                }
                            }
                        }
                    }
                }
            }
            start = end
        }
        return result
    }
}

/// R_pixel = Σ_channels R of one H×W×C relevance map.
func pixelSums(_ r: UnsafePointer<Float>, pixels: Int, channels: Int) -> [Float] {
    var out = [Float](repeating: 0, count: pixels)
    for i in 0..<pixels {
        var s: Float = 0
        for c in 0..<channels { s += r[i * channels + c] }
        out[i] = s
    }
    return out
}
