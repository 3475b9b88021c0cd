import Foundation
import NN
import TensorIO

/// `dkd`: decoupled knowledge distillation (Zhao et al. 2022) with the
/// small-image recipe of the authors' mdistiller (CIFAR-100 configs): CE
/// weight 1, α = 1, β = 8, T = 4, the DKD term warmed up linearly over the
/// first twelfth of the epochs (there 20 of 240). Labels enter twice: in the
/// CE term and to split target from non-target classes. docs/methods.md, "dkd".
public struct DKD: DistillationMethod {
    public init() {}
    public var name: String { "dkd" }
    public var summary: String { "decoupled KD: alpha*TCKD + beta*NCKD with CE and a warm-up (Zhao et al. 2022, mdistiller CIFAR recipe)" }
    public var defaults: MethodDefaults {
        MethodDefaults(lambdaTask: 1, lambdaKD: 0, temperature: 4, usesLabels: true)
    }
    /// T ∈ {1, 4} (Zhao et al.'s ImageNet and CIFAR values) × β ∈ {0.5, 2, 8}.
    public var tuningGrid: TuningGrid { TuningGrid([(.temperature, [1, 4]), (.dkdBeta, [0.5, 2, 8])]) }
    public func makeLogitLoss(config: DistillConfig) -> LogitLoss? {
        DKDTerm(loss: DKDLoss(alpha: config.dkdAlpha, beta: config.dkdBeta, temperature: config.temperature),
                warmupEpochs: config.resolvedDKDWarmup)
    }
    public func parameters(_ config: DistillConfig) -> [String: JSON] {
        ["dkd_alpha": .number(Double(config.dkdAlpha)), "dkd_beta": .number(Double(config.dkdBeta)),
         "dkd_warmup_epochs": .number(config.resolvedDKDWarmup)]
    }
}

/// The DKD term in the objective: w(e) · (α·TCKD + β·NCKD) with the linear
/// warm-up w(e) = min((e + 1) / warm-up, 1) for 0-based epoch e (mdistiller's
/// min(epoch / warmup, 1) with epochs counted from 1); no warm-up when 0.
struct DKDTerm: LogitLoss {
    let loss: DKDLoss
    let warmupEpochs: Double

    var termNames: [String] { ["loss_dkd/tckd", "loss_dkd/nckd"] }

    func factor(epoch: Int) -> Float {
        warmupEpochs > 0 ? Float(min(Double(epoch + 1) / warmupEpochs, 1)) : 1
    }

    func forwardBackward(studentLogits zs: Tensor, teacherLogits zt: Tensor, labels: [Int], epoch: Int)
        -> (loss: Double, terms: [Double], gradStudent: Tensor) {
        let r = loss.forwardBackward(studentLogits: zs, teacherLogits: zt, labels: labels, computeGradient: true)
        var g = r.gradStudent!
        let w = factor(epoch: epoch)
        if w != 1 { g.data.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= w } } }
        return (Double(w) * Double(r.loss), [Double(r.tckd), Double(r.nckd)], g)
    }
}

/// The DKD loss on logits:
///
/// With p = softmax(z/T) over the C classes, y the label, b = (p_y, 1 − p_y)
/// the binary target / non-target split and p̂ = softmax over the C − 1
/// non-target classes:
///
///     TCKD = T² · (1/B) Σ_b KL(b_t ‖ b_s)
///     NCKD = T² · (1/B) Σ_b KL(p̂_t ‖ p̂_s)
///     L    = α · TCKD + β · NCKD            (defaults α = 1, β = 8, T = 4)
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
/// and adds CE: `DKDTerm` and the trainer's CE term do.
public struct DKDLoss {
    public var alpha: Float
    public var beta: Float
    public var temperature: Float

    public init(alpha: Float = 1, beta: Float = 8, temperature: Float = 4) {
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
