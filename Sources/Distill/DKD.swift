import Foundation
import NN

/// `dkd`: decoupled knowledge distillation (Zhao et al. 2022), on logits.
///
/// With p = softmax(z/T) over the C classes, y the label, b = (p_y, 1 − p_y)
/// the binary target / non-target split and p̂ = softmax over the C − 1
/// non-target classes:
///
///     TCKD = T² · (1/B) Σ_b KL(b_t ‖ b_s)
///     NCKD = T² · (1/B) Σ_b KL(p̂_t ‖ p̂_s)
///     L    = α · TCKD + β · NCKD            (α = 1, β = 8, T = 1)
///
/// Same value as mdistiller's `dkd_loss` (which the authors copied): there the
/// non-target softmax is formed by subtracting 1000 from the target logit,
/// which in float32 is exactly the softmax over the other classes. Here the
/// logs are computed by log-sum-exp in Double, so p_y → 1 does not produce
/// log 0. Gradient w.r.t. the student logits, per sample (before T²/B):
///
///     ∂TCKD/∂z = (1/T) [ p_s − b_t,1 e_y − b_t,2 p̂_s ]      (p̂_s zero at y)
///     ∂NCKD/∂z = (1/T) [ p̂_s − p̂_t ]                         (zero at y)
///
/// mdistiller multiplies the whole term by a warm-up factor min(epoch / 20, 1)
/// and adds CE; both belong to the training loop, not here.
public struct DKDLoss {
    public var alpha: Float
    public var beta: Float
    public var temperature: Float

    public init(alpha: Float = 1, beta: Float = 8, temperature: Float = 1) {
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature
    }

    // zs, zt: B×C logits, labels: B → L, TCKD, NCKD, ∂L/∂zs: B×C
    public func forwardBackward(studentLogits zs: Tensor, teacherLogits zt: Tensor, labels: [Int],
                                computeGradient: Bool) -> (loss: Float, tckd: Float, nckd: Float, gradStudent: Tensor?) {
        precondition(zs.rank == 2 && zs.shape == zt.shape, "DKDLoss: logits must be B×C and equal in shape, got \(zs.shape) \(zt.shape)")
        let batch = zs.shape[0], classes = zs.shape[1]
        precondition(labels.count == batch, "DKDLoss: \(labels.count) labels for a batch of \(batch)")
        precondition(classes >= 2, "DKDLoss: needs at least two classes")
        let invT = 1 / Double(temperature)
        let t2 = Double(temperature) * Double(temperature)
        var tckd = 0.0, nckd = 0.0
        var grad = [Float](repeating: 0, count: computeGradient ? zs.count : 0)
        var ls = [Double](repeating: 0, count: classes), lt = ls
        zs.data.withUnsafeBufferPointer { s in
            zt.data.withUnsafeBufferPointer { t in
                for b in 0..<batch {
                    let y = labels[b]
                    precondition(y >= 0 && y < classes, "DKDLoss: label \(y) outside 0..<\(classes)")
                    for j in 0..<classes {
                        ls[j] = Double(s[b * classes + j]) * invT
                        lt[j] = Double(t[b * classes + j]) * invT
                    }
                    // log-sum-exp over all classes and over the non-target ones.
                    let (allS, otherS) = Self.logSumExps(ls, excluding: y)
                    let (allT, otherT) = Self.logSumExps(lt, excluding: y)
                    // Binary split: log b_1 = z_y − lse_all, log b_2 = lse_other − lse_all.
                    let lbs1 = ls[y] - allS, lbs2 = otherS - allS
                    let lbt1 = lt[y] - allT, lbt2 = otherT - allT
                    let bt1 = exp(lbt1), bt2 = exp(lbt2)
                    tckd += bt1 * (lbt1 - lbs1) + bt2 * (lbt2 - lbs2)
                    // Non-target distributions: log p̂_j = z_j − lse_other.
                    for j in 0..<classes where j != y {
                        let lpt = lt[j] - otherT, lps = ls[j] - otherS
                        nckd += exp(lpt) * (lpt - lps)
                    }
                    guard computeGradient else { continue }
                    let f = t2 * invT / Double(batch)
                    for j in 0..<classes {
                        let ps = exp(ls[j] - allS)
                        var gT = ps, gN = 0.0
                        if j == y {
                            gT -= bt1
                        } else {
                            let phs = exp(ls[j] - otherS), pht = exp(lt[j] - otherT)
                            gT -= bt2 * phs
                            gN = phs - pht
                        }
                        grad[b * classes + j] = Float(f * (Double(alpha) * gT + Double(beta) * gN))
                    }
                }
            }
        }
        tckd *= t2 / Double(batch)
        nckd *= t2 / Double(batch)
        let loss = Double(alpha) * tckd + Double(beta) * nckd
        return (Float(loss), Float(tckd), Float(nckd),
                computeGradient ? Tensor(shape: zs.shape, data: grad) : nil)
    }

    /// (log Σ_j e^{x_j}, log Σ_{j≠y} e^{x_j}).
    static func logSumExps(_ x: [Double], excluding y: Int) -> (Double, Double) {
        var mAll = -Double.infinity, mOther = -Double.infinity
        for j in x.indices {
            mAll = max(mAll, x[j])
            if j != y { mOther = max(mOther, x[j]) }
        }
        var sAll = 0.0, sOther = 0.0
        for j in x.indices {
            sAll += exp(x[j] - mAll)
            if j != y { sOther += exp(x[j] - mOther) }
        }
        return (mAll + log(sAll), mOther + log(sOther))
    }
}
