#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif
import TensorIO

/// Every failure of the training machinery on bad input (losses, optimisers,
/// robust objectives, checkpoints): the message names what was wrong.
public struct TrainError: MessageError, Equatable {
    public var message: String
    /// The exit status it causes: bad input data unless it says otherwise (`FailureKind`).
    public var kind: FailureKind
    public init(_ message: String, kind: FailureKind = .data) { self.message = message; self.kind = kind }
}

/// Classification and regression losses with their gradients.
///
/// Conventions shared by every loss here:
/// - logits are a `Tensor` of shape B×C, row-major (one row per example);
/// - the loss is **averaged over the batch** (divided by B, the way PyTorch's
///   `reduction="mean"` / `"batchmean"` does), and `grad` is dLoss/dlogits of
///   that averaged loss, same shape as the logits;
/// - `logShift` s (length C) is the per-class logit shift of the robust
///   objectives (docs/methods.md, "Robust objectives"): s_c = log w_c and the loss
///   sees the logits z − s. `nil` means no shift;
/// - `weights` (length B) are optional per-example weights ω_b; the loss is
///   then (1/B) Σ_b ω_b ℓ_b (still divided by B, not by Σω, so the weights'
///   mean sets the scale). `nil` means ω ≡ 1;
/// - every log-softmax is computed stably: log softmax(u)_j = u_j − m −
///   log Σ_k exp(u_k − m) with m = max_k u_k (log-sum-exp).
public enum Loss {

    // MARK: - Softmax helpers

    /// Row-wise softmax(z / T), B×C → B×C.
    public static func softmax(_ logits: Tensor, temperature: Float = 1) -> Tensor {
        var out = logits
        let (b, c) = rowsCols(logits)
        out.data.withUnsafeMutableBufferPointer { o in
            for i in 0..<b { _ = softmaxRow(o.baseAddress! + i * c, c, temperature: temperature) }
        }
        return out
    }

    /// Row-wise log softmax(z / T) = z/T − logsumexp(z/T), B×C → B×C.
    public static func logSoftmax(_ logits: Tensor, temperature: Float = 1) -> Tensor {
        var out = logits
        let (b, c) = rowsCols(logits)
        out.data.withUnsafeMutableBufferPointer { o in
            for i in 0..<b {
                let row = o.baseAddress! + i * c
                let lse = logSumExpScaled(UnsafePointer(row), c, temperature: temperature)
                let invT = 1 / temperature
                for j in 0..<c { row[j] = row[j] * invT - lse }
            }
        }
        return out
    }

    /// Index of the largest logit of each row (first one on ties, as
    /// `torch.argmax`), B×C → B.
    public static func argmax(_ logits: Tensor) -> [Int] {
        let (b, c) = rowsCols(logits)
        var out = [Int](repeating: 0, count: b)
        if c == 0 { return out }
        logits.data.withUnsafeBufferPointer { z in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<b {
                    var best = 0
                    var bestValue = z[i * c]
                    for j in 1..<c where z[i * c + j] > bestValue {
                        best = j; bestValue = z[i * c + j]
                    }
                    o[i] = best
                }
            }
        }
        return out
    }

    /// Fraction of rows whose argmax equals the label (0 for an empty batch).
    public static func accuracy(_ logits: Tensor, labels: [Int]) throws -> Double {
        let (b, _) = rowsCols(logits)
        guard labels.count == b else {
            throw TrainError("accuracy: \(labels.count) labels for \(b) rows of logits")
        }
        return accuracy(predictions: argmax(logits), labels: labels)
    }

    /// Fraction of predictions equal to the labels (0 for empty input).
    public static func accuracy(predictions: [Int], labels: [Int]) -> Double {
        precondition(predictions.count == labels.count, "accuracy: predictions/labels length mismatch")
        if labels.isEmpty { return 0 }
        var hits = 0
        for i in labels.indices where predictions[i] == labels[i] { hits += 1 }
        return Double(hits) / Double(labels.count)
    }

    // MARK: - Cross-entropy (hard labels)

    /// Cross-entropy with hard labels and the optional logit-adjusted margin
    /// of the robust objectives:
    ///
    ///     ℓ(y, z) = −log softmax(z − log w)_y,    L = (1/B) Σ_b ω_b ℓ(y_b, z_b)
    ///     ∂L/∂z_bj = ω_b (softmax(z_b − s)_j − [j = y_b]) / B
    ///
    /// with s = `logShift` = log w (nil: s = 0, the plain CE(z_s, y) of
    /// docs/methods.md, "Objective"). Logits B×C, labels B → loss, grad B×C.
    public static func crossEntropy(_ logits: Tensor, labels: [Int], logShift: [Float]? = nil,
                                    weights: [Float]? = nil) throws -> (loss: Float, grad: Tensor) {
        let (b, c) = try checkLogits(logits, "crossEntropy")
        guard labels.count == b else {
            throw TrainError("crossEntropy: \(labels.count) labels for a batch of \(b)")
        }
        for (i, y) in labels.enumerated() where y < 0 || y >= c {
            throw TrainError("crossEntropy: label \(y) of example \(i) is outside 0..<\(c)")
        }
        try checkShift(logShift, c, "crossEntropy")
        try checkWeights(weights, b, "crossEntropy")
        var grad = logits
        var total = 0.0
        let invB = 1 / Float(b)
        grad.data.withUnsafeMutableBufferPointer { g in
            for i in 0..<b {
                let row = g.baseAddress! + i * c
                subtractShift(row, c, logShift)
                let y = labels[i]
                let uy = row[y]
                // Row becomes softmax(z − s); −log q_y = lse − u_y.
                let lse = softmaxRow(row, c, temperature: 1)
                let w = weights?[i] ?? 1
                total += Double(w) * Double(lse - uy)
                row[y] -= 1
                let scale = w * invB
                for j in 0..<c { row[j] *= scale }
            }
        }
        return (Float(total / Double(b)), grad)
    }

    // MARK: - Cross-entropy (soft targets)

    /// Cross-entropy against soft targets p (B×C, e.g. teacher probabilities),
    /// with the optional logit shift:
    ///
    ///     ℓ(p, z) = Σ_j p_j · (−log softmax(z − log w)_j),   L = (1/B) Σ_b ω_b ℓ_b
    ///     ∂L/∂z_bj = ω_b (q_bj · Σ_k p_bk − p_bj) / B,        q = softmax(z − s)
    ///
    /// The targets need not sum to one (the robust group re-weighting scales
    /// them per class); the gradient above is exact either way.
    /// Logits B×C, targets B×C → loss, grad B×C.
    public static func softCrossEntropy(_ logits: Tensor, targets: Tensor, logShift: [Float]? = nil,
                                        weights: [Float]? = nil) throws -> (loss: Float, grad: Tensor) {
        let (b, c) = try checkLogits(logits, "softCrossEntropy")
        guard targets.shape == logits.shape else {
            throw TrainError("softCrossEntropy: targets \(targets.shape) do not match logits \(logits.shape)")
        }
        try checkShift(logShift, c, "softCrossEntropy")
        try checkWeights(weights, b, "softCrossEntropy")
        var grad = logits
        var total = 0.0
        let invB = 1 / Float(b)
        targets.data.withUnsafeBufferPointer { p in
            grad.data.withUnsafeMutableBufferPointer { g in
                for i in 0..<b {
                    let row = g.baseAddress! + i * c
                    let pr = p.baseAddress! + i * c
                    subtractShift(row, c, logShift)
                    // Σ_j p_j (lse − u_j), taken before the row is overwritten.
                    let lse = logSumExpScaled(UnsafePointer(row), c, temperature: 1)
                    var rowLoss: Float = 0, mass: Float = 0
                    for j in 0..<c {
                        rowLoss += pr[j] * (lse - row[j])
                        mass += pr[j]
                    }
                    for j in 0..<c { row[j] = expf(row[j] - lse) }
                    let w = weights?[i] ?? 1
                    total += Double(w) * Double(rowLoss)
                    let scale = w * invB
                    for j in 0..<c { row[j] = (row[j] * mass - pr[j]) * scale }
                }
            }
        }
        return (Float(total / Double(b)), grad)
    }

    // MARK: - Knowledge distillation

    /// The KD term of docs/methods.md, "Objective" (Hinton et al. 2015), mean over the batch:
    ///
    ///     L = (1/B) Σ_b ω_b · T² · KL( softmax(z_t/T) ‖ softmax((z_s − s)/T) )
    ///     ∂L/∂z_s,bj = ω_b · T · (q_bj · Σ_k p_bk − p_bj) / B
    ///
    /// with p = softmax(z_t/T), q = softmax((z_s − s)/T). Gradient with
    /// respect to the student logits only (the teacher is fixed). Equals
    /// PyTorch's `T² · kl_div(log_softmax(z_s/T), softmax(z_t/T), "batchmean")`
    /// when s = 0 and ω ≡ 1. The shift s = log w is in logit units, applied
    /// before the temperature, so the student's Bayes decision is
    /// argmax_y w_y p(y|x) as in the robust objectives.
    /// Student B×C, teacher B×C → loss, grad B×C.
    public static func distillation(student: Tensor, teacher: Tensor, temperature: Float = 4,
                                    logShift: [Float]? = nil,
                                    weights: [Float]? = nil) throws -> (loss: Float, grad: Tensor) {
        guard teacher.shape == student.shape else {
            throw TrainError("distillation: teacher logits \(teacher.shape) do not match student logits \(student.shape)")
        }
        guard temperature > 0, temperature.isFinite else {
            throw TrainError("distillation: temperature must be positive, got \(temperature)")
        }
        return try distillation(student: student, teacherProbs: softmax(teacher, temperature: temperature),
                                temperature: temperature, logShift: logShift, weights: weights)
    }

    /// KD term with teacher probabilities given directly (the `calibrated`
    /// teacher, or targets re-weighted per class by the robust objective):
    ///
    ///     L = (1/B) Σ_b ω_b · T² · Σ_j p_bj (log p_bj − log softmax((z_s − s)/T)_j)
    ///     ∂L/∂z_s,bj = ω_b · T · (q_bj · Σ_k p_bk − p_bj) / B
    ///
    /// Terms with p_bj = 0 contribute 0 (0·log 0 = 0). p need not sum to one.
    /// Student B×C, teacherProbs B×C → loss, grad B×C.
    public static func distillation(student: Tensor, teacherProbs: Tensor, temperature: Float = 4,
                                    logShift: [Float]? = nil,
                                    weights: [Float]? = nil) throws -> (loss: Float, grad: Tensor) {
        let (b, c) = try checkLogits(student, "distillation")
        guard teacherProbs.shape == student.shape else {
            throw TrainError("distillation: teacher probabilities \(teacherProbs.shape) do not match student logits \(student.shape)")
        }
        guard temperature > 0, temperature.isFinite else {
            throw TrainError("distillation: temperature must be positive, got \(temperature)")
        }
        try checkShift(logShift, c, "distillation")
        try checkWeights(weights, b, "distillation")
        var grad = student
        var total = 0.0
        let invB = 1 / Float(b)
        let invT = 1 / temperature
        teacherProbs.data.withUnsafeBufferPointer { p in
            grad.data.withUnsafeMutableBufferPointer { g in
                for i in 0..<b {
                    let row = g.baseAddress! + i * c
                    let pr = p.baseAddress! + i * c
                    subtractShift(row, c, logShift)
                    for j in 0..<c { row[j] *= invT }
                    let lse = logSumExpScaled(UnsafePointer(row), c, temperature: 1)
                    var kl: Float = 0, mass: Float = 0
                    for j in 0..<c {
                        let pj = pr[j]
                        mass += pj
                        if pj > 0 { kl += pj * (logf(pj) - (row[j] - lse)) }
                    }
                    let w = weights?[i] ?? 1
                    total += Double(w) * Double(temperature * temperature * kl)
                    let scale = w * temperature * invB
                    for j in 0..<c { row[j] = (expf(row[j] - lse) * mass - pr[j]) * scale }
                }
            }
        }
        return (Float(total / Double(b)), grad)
    }

    // MARK: - Regression losses

    /// Mean squared error over all elements (PyTorch `mse_loss`, mean):
    ///
    ///     L = (1/N) Σ_i (a_i − b_i)²,   ∂L/∂a_i = 2 (a_i − b_i) / N
    ///
    /// Any shape, a and b equal shapes → loss, grad (shape of a).
    public static func mse(_ a: Tensor, _ b: Tensor) throws -> (loss: Float, grad: Tensor) {
        guard a.shape == b.shape else {
            throw TrainError("mse: shapes \(a.shape) and \(b.shape) differ")
        }
        let n = a.count
        guard n > 0 else { throw TrainError("mse: empty tensors") }
        var grad = a
        var total = 0.0
        let scale = 2 / Float(n)
        b.data.withUnsafeBufferPointer { bb in
            grad.data.withUnsafeMutableBufferPointer { g in
                for i in 0..<n {
                    let d = g[i] - bb[i]
                    total += Double(d * d)
                    g[i] = d * scale
                }
            }
        }
        return (Float(total / Double(n)), grad)
    }

    /// Smooth-L1 (Huber with PyTorch's `beta`; `smooth_l1_loss`, mean):
    ///
    ///     ℓ(d) = 0.5 d²/β  if |d| < β,  else |d| − 0.5 β;   L = (1/N) Σ_i ℓ(a_i − b_i)
    ///     ∂L/∂a_i = (d/β if |d| < β, else sign(d)) / N
    ///
    /// Used by `vkd` (docs/methods.md, "vkd") with β = 1. Any shape → loss, grad (shape of a).
    public static func smoothL1(_ a: Tensor, _ b: Tensor, beta: Float = 1) throws -> (loss: Float, grad: Tensor) {
        guard a.shape == b.shape else {
            throw TrainError("smoothL1: shapes \(a.shape) and \(b.shape) differ")
        }
        guard beta > 0 else { throw TrainError("smoothL1: beta must be positive, got \(beta)") }
        let n = a.count
        guard n > 0 else { throw TrainError("smoothL1: empty tensors") }
        var grad = a
        var total = 0.0
        let invN = 1 / Float(n)
        let invBeta = 1 / beta
        b.data.withUnsafeBufferPointer { bb in
            grad.data.withUnsafeMutableBufferPointer { g in
                for i in 0..<n {
                    let d = g[i] - bb[i]
                    if abs(d) < beta {
                        total += Double(0.5 * d * d * invBeta)
                        g[i] = d * invBeta * invN
                    } else {
                        total += Double(abs(d) - 0.5 * beta)
                        g[i] = (d > 0 ? invN : -invN)
                    }
                }
            }
        }
        return (Float(total / Double(n)), grad)
    }

    // MARK: - Row kernels

    /// B and C of a B×C tensor (a rank-1 tensor is one row).
    @inline(__always) static func rowsCols(_ t: Tensor) -> (Int, Int) {
        if t.rank == 2 { return (t.shape[0], t.shape[1]) }
        if t.rank == 1 { return (1, t.shape[0]) }
        precondition(false, "expected a B×C tensor, got shape \(t.shape)")
        return (0, 0)
    }

    static func checkLogits(_ t: Tensor, _ who: String) throws -> (Int, Int) {
        guard t.rank == 2, t.shape[0] > 0, t.shape[1] > 0 else {
            throw TrainError("\(who): logits must be a non-empty B×C tensor, got shape \(t.shape)")
        }
        return (t.shape[0], t.shape[1])
    }

    static func checkShift(_ s: [Float]?, _ c: Int, _ who: String) throws {
        if let s, s.count != c {
            throw TrainError("\(who): logShift has \(s.count) entries for \(c) classes")
        }
    }

    static func checkWeights(_ w: [Float]?, _ b: Int, _ who: String) throws {
        if let w, w.count != b {
            throw TrainError("\(who): \(w.count) example weights for a batch of \(b)")
        }
    }

    /// row ← row − s (no-op for nil).
    @inline(__always) static func subtractShift(_ row: UnsafeMutablePointer<Float>, _ c: Int, _ s: [Float]?) {
        guard let s else { return }
        s.withUnsafeBufferPointer { sp in
            for j in 0..<c { row[j] -= sp[j] }
        }
    }

    /// log Σ_j exp(x_j / T), stably.
    @inline(__always) static func logSumExpScaled(_ x: UnsafePointer<Float>, _ c: Int, temperature: Float) -> Float {
        let invT = 1 / temperature
        var m = -Float.infinity
        for j in 0..<c { m = max(m, x[j] * invT) }
        var s: Float = 0
        for j in 0..<c { s += expf(x[j] * invT - m) }
        return m + logf(s)
    }

    /// In place: row ← softmax(row / T). Returns logsumexp(row / T) of the
    /// input, so a caller can form log-probabilities without a second pass.
    @discardableResult @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ c: Int, temperature: Float) -> Float {
        let invT = 1 / temperature
        var m = -Float.infinity
        for j in 0..<c { m = max(m, row[j] * invT) }
        var s: Float = 0
        for j in 0..<c {
            let e = expf(row[j] * invT - m)
            row[j] = e
            s += e
        }
        let inv = 1 / s
        for j in 0..<c { row[j] *= inv }
        return m + logf(s)
    }
}
