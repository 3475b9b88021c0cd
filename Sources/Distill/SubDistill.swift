import NN

/// Student-side normalisation N of the SubDistill loss.
public enum StudentNormalization: String, CaseIterable {
    /// N(s) = (s − mean) / √(var + ε): what the authors' code does in training
    /// (their `Centering2D` calls `F.batch_norm`, which divides by the batch
    /// standard deviation). Default.
    case standardize
    /// N(s) = s − mean: what the authors' comment says.
    case center
}

/// `subdistill` layer loss, the relevant-subspace loss (Chormai et al. 2026):
///
///     teacher side (fixed):   t̃ = U_kᵀ (t − μ)          at every pixel (1×1 projection d → k)
///     student side (learned): s̃ = Q · N(s)              at every pixel
///     L = (1/B) Σ_b Σ_c mean_hw (s̃ − t̃)² / Σ_i σ²_i  =  Σ (s̃ − t̃)² / (B·H·W · Σ_i σ²_i)
///
/// U_k (d×k), μ (d), σ²_i = (U_kᵀ Σa U_k)_ii (k) come from the subspace stage.
/// N is per-channel standardisation (or centring) without affine parameters:
/// batch statistics over the B·H·W pixels in training (biased variance, as
/// batch norm), running statistics at evaluation; running statistics are
/// updated in training with momentum 0.1 (running var from the unbiased
/// batch variance, as PyTorch); ε = 1e-5. Q is k×k and exactly orthogonal
/// (`OrthogonalParameter`, Cayley map).
///
/// Authors' code, for the record: in eval mode their `Centering2D` passes a
/// fresh ones-vector as running variance, so at evaluation it only centres
/// (÷√(1+ε)) even though training standardises. Here `standardize` uses the
/// tracked running variance at evaluation, as METHODS.md says. The layer
/// loss's eval mode affects only logged validation losses, never the student.
///
/// Precomputed projection: `projectTeacher(_:)` gives t̃ once per image so a
/// training loop can cache it and call `forwardBackward(projectedTeacher:…)`;
/// `forwardBackward(teacher:…)` (the `LayerLoss` entry) projects on the fly.
public final class SubDistillLoss: LayerLoss {
    public static let momentum: Float = 0.1
    public static let eps: Float = 1e-5
    public let teacherChannels: Int
    public let studentChannels: Int
    public let normalization: StudentNormalization
    /// U_k, d×k row-major.
    public let basis: [Float]
    /// μ, d.
    public let mean: [Float]
    /// σ², k.
    public let variances: [Float]
    /// Σ_i σ²_i, the loss's denominator.
    public let varianceSum: Float
    /// Q, k×k.
    public let rotation: OrthogonalParameter
    public private(set) var runningMean: [Float]
    public private(set) var runningVar: [Float]
    private let muU: [Float]             // μᵀ U_k, k
    private let ws = Workspace(), ws2 = Workspace()

    /// - Throws: `LayerLossError` if U, μ, σ² do not have shapes d×k, d, k, or
    ///   σ² is not finite and non-negative with a positive sum.
    public init(name: String, basis: [Float], mean: [Float], variances: [Float],
                teacherChannels d: Int, studentChannels k: Int,
                normalization: StudentNormalization = .standardize,
                initialization: OrthogonalInit = .random, rng: inout RNG) throws {
        guard d > 0, k > 0, k <= d else {
            throw LayerLossError("subdistill \(name): need 0 < k ≤ d, got d=\(d) k=\(k)")
        }
        guard basis.count == d * k else {
            throw LayerLossError("subdistill \(name): basis U_k has \(basis.count) values, expected d×k = \(d)×\(k)")
        }
        guard mean.count == d else {
            throw LayerLossError("subdistill \(name): mean μ has \(mean.count) values, expected d = \(d)")
        }
        guard variances.count == k else {
            throw LayerLossError("subdistill \(name): variances σ² have \(variances.count) values, expected k = \(k)")
        }
        guard basis.allSatisfy({ $0.isFinite }), mean.allSatisfy({ $0.isFinite }),
              variances.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw LayerLossError("subdistill \(name): basis, mean and variances must be finite, variances non-negative")
        }
        let total = variances.reduce(0.0) { $0 + Double($1) }
        guard total > 0 else {
            throw LayerLossError("subdistill \(name): Σσ² = \(total), must be positive")
        }
        teacherChannels = d
        studentChannels = k
        self.normalization = normalization
        self.basis = basis
        self.mean = mean
        self.variances = variances
        varianceSum = Float(total)
        rotation = OrthogonalParameter(name: "\(name).rotation", rows: k, cols: k,
                                       initialization: initialization, rng: &rng)
        runningMean = [Float](repeating: 0, count: k)
        runningVar = [Float](repeating: 1, count: k)
        var mu = [Float](repeating: 0, count: k)
        for j in 0..<k {
            var s = 0.0
            for i in 0..<d { s += Double(mean[i]) * Double(basis[i * k + j]) }
            mu[j] = Float(s)
        }
        muU = mu
    }

    public var parameters: [Parameter] { [rotation.raw] }

    public var stateBuffers: [(String, [Int], [Float])] {
        let k = studentChannels
        return [("runningMean", [k], runningMean), ("runningVar", [k], runningVar)]
            + rotation.stateBuffers.map { ("rotation.\($0.0)", $0.1, $0.2) }
    }

    public func loadStateBuffers(_ buffers: [(String, [Int], [Float])]) throws {
        let k = studentChannels
        let v = try matchBuffers("subdistill", buffers,
                                 expected: [("runningMean", [k]), ("runningVar", [k]), ("rotation.base", [k, k])])
        try rotation.loadStateBuffers([("base", [k, k], v["rotation.base"]!)])
        runningMean = v["runningMean"]!
        runningVar = v["runningVar"]!
    }

    public func validate(teacherShape: [Int], studentShape: [Int]) throws {
        try checkMaps("subdistill", teacher: teacherShape, student: studentShape, d: teacherChannels, k: studentChannels)
    }

    /// Checks a precomputed-projection pair (t̃ B×H×W×k, s B×H×W×k).
    public func validate(projectedTeacherShape: [Int], studentShape: [Int]) throws {
        try checkMaps("subdistill (projected teacher)", teacher: projectedTeacherShape, student: studentShape,
                      d: studentChannels, k: studentChannels)
    }

    /// t̃ = U_kᵀ (t − μ) per pixel = t·U_k − 1·(μᵀU_k). B×H×W×d → B×H×W×k.
    public func projectTeacher(_ t: Tensor) -> Tensor {
        let d = teacherChannels, k = studentChannels
        precondition(t.rank == 4 && t.shape[3] == d, "SubDistillLoss: teacher map \(t.shape) has not d=\(d) channels")
        let rows = t.count / d
        var out = [Float](repeating: 0, count: rows * k)
        out.withUnsafeMutableBufferPointer { o in
            muU.withUnsafeBufferPointer { m in
                for i in 0..<rows {
                    for j in 0..<k { o[i * k + j] = -m[j] }
                }
            }
            t.data.withUnsafeBufferPointer { tp in
                basis.withUnsafeBufferPointer { u in
                    sgemm(false, false, rows, k, d, 1, tp.baseAddress!, d, u.baseAddress!, k, 1, o.baseAddress!, k)
                }
            }
        }
        return Tensor(shape: [t.shape[0], t.shape[1], t.shape[2], k], data: out)
    }

    // t: B×H×W×d, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(teacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        forwardBackward(projectedTeacher: projectTeacher(t), student: s, training: training,
                        computeGradient: computeGradient)
    }

    // t̃: B×H×W×k, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(projectedTeacher tp: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        let k = studentChannels
        precondition(tp.shape == s.shape && s.rank == 4 && s.shape[3] == k,
                     "SubDistillLoss: projected teacher \(tp.shape) and student \(s.shape) must both be B×H×W×\(k)")
        let rows = s.count / k, m = rows * k
        let buf = ws.get(2 * m + 2 * k)
        let xhat = buf, st = buf + m          // N(s), then s̃ and ∂L/∂s̃
        let shift = buf + 2 * m, scale = shift + k   // per channel: x̂ = (s − shift)·scale
        let standardize = normalization == .standardize
        // N(s): batch statistics (training) or running statistics (evaluation).
        if training {
            var mu = [Double](repeating: 0, count: k), va = [Double](repeating: 0, count: k)
            s.data.withUnsafeBufferPointer { sp in
                for i in 0..<rows { for c in 0..<k { mu[c] += Double(sp[i * k + c]) } }
                for c in 0..<k { mu[c] /= Double(rows) }
                for i in 0..<rows { for c in 0..<k { let z = Double(sp[i * k + c]) - mu[c]; va[c] += z * z } }
            }
            let unbias = rows > 1 ? Double(rows) / Double(rows - 1) : 1
            let mom = Double(Self.momentum)
            for c in 0..<k {
                va[c] /= Double(rows)
                shift[c] = Float(mu[c])
                scale[c] = standardize ? Float(1 / (va[c] + Double(Self.eps)).squareRoot()) : 1
                runningMean[c] = Float((1 - mom) * Double(runningMean[c]) + mom * mu[c])
                runningVar[c] = Float((1 - mom) * Double(runningVar[c]) + mom * va[c] * unbias)
            }
        } else {
            for c in 0..<k {
                shift[c] = runningMean[c]
                scale[c] = standardize ? 1 / (runningVar[c] + Self.eps).squareRoot() : 1
            }
        }
        s.data.withUnsafeBufferPointer { sp in
            for i in 0..<rows {
                let o = i * k
                for c in 0..<k { xhat[o + c] = (sp[o + c] - shift[c]) * scale[c] }
            }
        }
        // s̃ = x̂ Qᵀ (each pixel row rotated by Q).
        let q = rotation.value
        q.withUnsafeBufferPointer { sgemm(false, true, rows, k, k, 1, xhat, k, $0.baseAddress!, k, 0, st, k) }
        // L = Σ(s̃ − t̃)² / (rows·Σσ²); ∂L/∂s̃ = 2(s̃ − t̃) / (rows·Σσ²).
        let denom = Double(rows) * Double(varianceSum)
        let gscale = Float(2 / denom)
        var sum = 0.0
        tp.data.withUnsafeBufferPointer { t in
            for i in 0..<m {
                let diff = st[i] - t[i]
                sum += Double(diff * diff)
                st[i] = gscale * diff
            }
        }
        let loss = Float(sum / denom)
        guard computeGradient else { return (loss, nil) }
        // ∂L/∂Q = (∂L/∂s̃)ᵀ x̂ (k×k), through the Cayley map into the raw parameter.
        let gq = ws2.get(k * k + m)
        sgemm(true, false, k, k, rows, 1, st, k, xhat, k, 0, gq, k)
        rotation.backward(gradValue: UnsafeBufferPointer(start: gq, count: k * k))
        // ∂L/∂x̂ = ∂L/∂s̃ Q.
        let gx = gq + k * k
        q.withUnsafeBufferPointer { sgemm(false, false, rows, k, k, 1, st, k, $0.baseAddress!, k, 0, gx, k) }
        var grad = [Float](repeating: 0, count: m)
        grad.withUnsafeMutableBufferPointer { g in
            if training {
                // Batch statistics depend on s: standardise ⇒ ∂s = scale·(gx − mean(gx) − x̂·mean(gx·x̂));
                // centre ⇒ ∂s = gx − mean(gx).
                var mg = [Double](repeating: 0, count: k), mgx = [Double](repeating: 0, count: k)
                for i in 0..<rows {
                    let o = i * k
                    for c in 0..<k {
                        mg[c] += Double(gx[o + c])
                        mgx[c] += Double(gx[o + c]) * Double(xhat[o + c])
                    }
                }
                for c in 0..<k { mg[c] /= Double(rows); mgx[c] /= Double(rows) }
                for i in 0..<rows {
                    let o = i * k
                    for c in 0..<k {
                        var v = Double(gx[o + c]) - mg[c]
                        if standardize { v -= Double(xhat[o + c]) * mgx[c] }
                        g[o + c] = Float(v) * scale[c]
                    }
                }
            } else {
                for i in 0..<rows {
                    let o = i * k
                    for c in 0..<k { g[o + c] = gx[o + c] * scale[c] }
                }
            }
        }
        return (loss, Tensor(shape: s.shape, data: grad))
    }
}
