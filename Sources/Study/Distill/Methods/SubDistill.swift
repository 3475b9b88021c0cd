import NN
import Subspace
import TensorIO

/// Student-side normalisation N of the SubDistill loss.
public enum StudentNormalization: String, CaseIterable {
    /// N(s) = (s − mean) / √(var + ε): what the authors' code does in training
    /// (their `Centering2D` calls `F.batch_norm`, which divides by the batch
    /// standard deviation). Default.
    case standardize
    /// N(s) = s − mean: what the authors' comment says.
    case center
}

/// `subdistill` and its basis ablations `subdistill-pca`, `-gradpca`,
/// `-prca`, `-random` (Chormai et al. 2026): the student's standardised,
/// rotated map matched to the teacher's map projected onto the relevant
/// subspace of its layer (`extract-subspace`). docs/methods.md,
/// "SubDistill layer loss" and "Relevant subspace".
public struct SubDistill: DistillationMethod {
    /// The basis the method reads from the subspace artifact.
    public let kind: BasisKind
    public init(basis: BasisKind) { kind = basis }
    public var name: String { kind == .prcaposdef ? "subdistill" : "subdistill-\(kind.rawValue)" }
    public var summary: String {
        kind == .prcaposdef ? "relevant-subspace loss on the teacher's prcaposdef basis (Chormai et al. 2026)"
                            : "relevant-subspace loss on a \(kind.rawValue) basis (ablation)"
    }
    public var defaults: MethodDefaults { MethodDefaults(lambdaLayer: 100) }
    public var basis: BasisKind? { kind }

    /// t̃ = U_kᵀ(t − μ), the one `SubspaceProjector`.
    public func teacherTransform(_ p: PairContext) throws -> any TeacherTransform {
        SubspaceProjector(float32Of: try Self.checkedBasis(p))
    }

    public func makeLayerLoss(_ p: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss {
        let b = try Self.checkedBasis(p)
        do {
            return try SubDistillLoss(name: p.label, basis: b, normalization: config.normalization, rng: &rng)
        } catch let e as LayerLossError {
            throw DistillError("subspace basis of \(b.layer) (\(b.kind.rawValue)): \(e.message)")
        }
    }

    public func parameters(_ config: DistillConfig) -> [String: JSON] {
        ["normalization": .string(config.normalization.rawValue)]
    }

    /// The pair's basis, checked against both layers.
    static func checkedBasis(_ p: PairContext) throws -> SubspaceBasis {
        guard let b = p.basis else { throw DistillError("no subspace basis for teacher layer \(p.pair.teacher)") }
        guard b.channels == p.teacherChannels else {
            throw DistillError("the subspace basis of \(p.pair.teacher) has d = \(b.channels), the teacher layer \(p.teacherChannels) channels")
        }
        guard b.k == p.studentChannels else {
            throw DistillError("subspace basis of teacher layer \(p.pair.teacher) has k = \(b.k) directions, the student layer \(p.pair.student) has \(p.studentChannels) channels (extract the subspace with this --student-arch)")
        }
        return b
    }
}

/// t̃ = U_kᵀ(t − μ) as the cached teacher side of the SubDistill loss.
extension SubspaceProjector: TeacherTransform {
    public func outputShape(_ input: [Int]) -> [Int] { Array(input.dropLast()) + [k] }
    // t: B×H×W×d → B×H×W×k
    public func callAsFunction(_ t: Tensor) -> Tensor {
        precondition(t.rank == 4 && t.shape[3] == channels, "SubspaceProjector: teacher map \(t.shape) has not d=\(channels) channels")
        let rows = t.count / channels
        var out = [Float](repeating: 0, count: rows * k)
        t.data.withUnsafeBufferPointer { tp in out.withUnsafeMutableBufferPointer { project(tp, rows: rows, into: $0) } }
        return Tensor(shape: [t.shape[0], t.shape[1], t.shape[2], k], data: out)
    }
}

/// The SubDistill layer term, the relevant-subspace loss:
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
/// tracked running variance at evaluation (docs/methods.md, "SubDistill layer loss"). The layer
/// loss's eval mode affects only logged validation losses, never the student.
///
/// The teacher side t̃ is cached once per image (`SubspaceProjector`);
/// `forwardBackward(cachedTeacher:…)` reads it, `forwardBackward(teacher:…)`
/// projects on the fly.
public final class SubDistillLoss: LayerLoss {
    public static let momentum: Float = 0.1
    public static let eps: Float = 1e-5
    public let teacherChannels: Int
    public let studentChannels: Int
    public let normalization: StudentNormalization
    /// t ↦ U_kᵀ(t − μ).
    public let projector: SubspaceProjector
    /// σ², k.
    public let variances: [Float]
    /// Σ_i σ²_i, the loss's denominator.
    public let varianceSum: Float
    /// Q, k×k.
    public let rotation: OrthogonalParameter
    public private(set) var runningMean: [Float]
    public private(set) var runningVar: [Float]
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
        projector = SubspaceProjector(channels: d, k: k, uk: basis.map(Double.init), mean: mean.map(Double.init))
        self.variances = variances
        varianceSum = Float(total)
        rotation = OrthogonalParameter(name: "\(name).rotation", rows: k, cols: k,
                                       initialization: initialization, rng: &rng)
        runningMean = [Float](repeating: 0, count: k)
        runningVar = [Float](repeating: 1, count: k)
    }

    /// From a basis of the subspace stage (U_k, μ, σ² in double).
    public convenience init(name: String, basis b: SubspaceBasis, normalization: StudentNormalization = .standardize,
                            initialization: OrthogonalInit = .random, rng: inout RNG) throws {
        try self.init(name: name, basis: b.uk.map { Float($0) }, mean: b.mean.map { Float($0) },
                      variances: b.sigma2.map { Float($0) }, teacherChannels: b.channels, studentChannels: b.k,
                      normalization: normalization, initialization: initialization, rng: &rng)
    }

    public var parameters: [Parameter] { [rotation.raw] }

    public var teacherTransform: any TeacherTransform { projector }

    /// `rotation.Q` (k×k) and `teacher_variances` (σ², k).
    public var exportedValues: [(String, [Int], [Float])] {
        let k = studentChannels
        return [("rotation.Q", [k, k], rotation.value), ("teacher_variances", [k], variances)]
    }

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

    /// Checks a cached pair (t̃ B×H×W×k, s B×H×W×k).
    public func validate(cachedTeacherShape: [Int], studentShape: [Int]) throws {
        try checkMaps("subdistill (projected teacher)", teacher: cachedTeacherShape, student: studentShape,
                      d: studentChannels, k: studentChannels)
    }

    // t̃: B×H×W×k, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(cachedTeacher tp: Tensor, student s: Tensor, training: Bool,
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
