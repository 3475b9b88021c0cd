import NN

/// `spkd`: similarity-preserving KD (Tung & Mori 2019), the batch's
/// image-by-image similarities of teacher and student maps. docs/methods.md, "spkd".
public struct SPKD: DistillationMethod {
    public init() {}
    public var name: String { "spkd" }
    public var summary: String { "row-normalised batch Gram matrices of teacher and student maps, Frobenius distance (Tung & Mori 2019)" }
    public var defaults: MethodDefaults { MethodDefaults(lambdaLayer: 100) }
    /// The authors' SPKD compares the raw maps: no pooling.
    public var poolsTeacherToStudentSize: Bool { false }
    public func makeLayerLoss(_ p: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss { SPKDLoss() }
}

/// The SPKD layer term:
///
///     G(F) = row-ℓ2-normalised(F Fᵀ)     (B×B; F = the batch flattened to B×(h·w·c))
///     L    = ‖G(t) − G(s)‖_F / B²         (`.frobenius`, default)
///     L    = ‖G(t) − G(s)‖_F² / B²        (`.squaredFrobenius`)
///
/// Which norm: Tung & Mori's eq. 4 and the reference implementations
/// (RepDistiller, mdistiller, torchdistill) use the SQUARED Frobenius norm.
/// The authors' code (p16i/subdistill `spkd.py`: `torch.norm(G_t − G_s, p="fro") / b**2`)
/// and this project (docs/methods.md, "spkd") use the plain norm; the default follows them so numbers are
/// comparable with the published setup, `.squaredFrobenius` gives the paper's.
///
/// Row normalisation as F.normalize (÷ max(‖row‖, 1e-12)). G is invariant to
/// the order of features within a row, so NHWC flattening gives the same G as
/// NCHW. No spatial alignment: the authors' SPKD compares the raw maps
/// (`SPKD.poolsTeacherToStudentSize` is false). No parameters.
public final class SPKDLoss: LayerLoss {
    public enum Norm { case frobenius, squaredFrobenius }
    public let norm: Norm
    static let eps = 1e-12
    private let ws = Workspace()

    public init(norm: Norm = .frobenius) { self.norm = norm }

    public var parameters: [Parameter] { [] }

    public func validate(cachedTeacherShape teacherShape: [Int], studentShape: [Int]) throws {
        guard teacherShape.count == 4, studentShape.count == 4 else {
            throw LayerLossError("spkd: maps must be NHWC rank 4, got teacher \(teacherShape) student \(studentShape)")
        }
        guard teacherShape[0] == studentShape[0], teacherShape[0] > 0 else {
            throw LayerLossError("spkd: batch sizes differ or are zero: teacher \(teacherShape) student \(studentShape)")
        }
    }

    /// Ĝ = row-normalised F Fᵀ (B×B, Double) and the row norms of F Fᵀ. F: B×D.
    private func gram(_ f: UnsafeBufferPointer<Float>, batch: Int, dim: Int,
                      scratch: UnsafeMutablePointer<Float>) -> (g: [Double], norms: [Double]) {
        sgemm(false, true, batch, batch, dim, 1, f.baseAddress!, dim, f.baseAddress!, dim, 0, scratch, batch)
        var g = [Double](repeating: 0, count: batch * batch)
        var norms = [Double](repeating: 0, count: batch)
        for i in 0..<batch {
            var sq = 0.0
            for j in 0..<batch { let v = Double(scratch[i * batch + j]); g[i * batch + j] = v; sq += v * v }
            norms[i] = sq.squareRoot()
            let inv = 1 / max(norms[i], Self.eps)
            for j in 0..<batch { g[i * batch + j] *= inv }
        }
        return (g, norms)
    }

    // t: B×(any), s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(cachedTeacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        let batch = s.shape[0]
        precondition(t.shape[0] == batch && batch > 0, "SPKDLoss: teacher \(t.shape) and student \(s.shape) differ in batch")
        let ds = s.count / batch, dt = t.count / batch
        let scratch = ws.get(batch * batch)
        let (gt, _) = t.data.withUnsafeBufferPointer { gram($0, batch: batch, dim: dt, scratch: scratch) }
        let (gs, ns) = s.data.withUnsafeBufferPointer { gram($0, batch: batch, dim: ds, scratch: scratch) }
        let bb = Double(batch * batch)
        var sq = 0.0
        for i in 0..<(batch * batch) { let x = gs[i] - gt[i]; sq += x * x }
        let frob = sq.squareRoot()
        let loss: Double = norm == .frobenius ? frob / bb : sq / bb
        guard computeGradient else { return (Float(loss), nil) }
        // ∂L/∂Ĝs = (Ĝs − Ĝt) / (‖·‖ B²)  or  2 (Ĝs − Ĝt) / B².
        let factor: Double
        switch norm {
        case .frobenius: factor = frob > 0 ? 1 / (frob * bb) : 0
        case .squaredFrobenius: factor = 2 / bb
        }
        // Through the row normalisation: ∂L/∂G_i = (g_i − Ĝ_i (Ĝ_i·g_i)) / ‖G_i‖.
        var gG = [Double](repeating: 0, count: batch * batch)
        for i in 0..<batch {
            var dot = 0.0
            for j in 0..<batch {
                let g = factor * (gs[i * batch + j] - gt[i * batch + j])
                gG[i * batch + j] = g
                dot += g * gs[i * batch + j]
            }
            if ns[i] > Self.eps {
                for j in 0..<batch { gG[i * batch + j] = (gG[i * batch + j] - gs[i * batch + j] * dot) / ns[i] }
            } else {
                for j in 0..<batch { gG[i * batch + j] /= Self.eps }
            }
        }
        // Through G = F Fᵀ: ∂L/∂F = (∂L/∂G + ∂L/∂Gᵀ) F.
        for i in 0..<batch {
            for j in 0..<batch { scratch[i * batch + j] = Float(gG[i * batch + j] + gG[j * batch + i]) }
        }
        var grad = [Float](repeating: 0, count: s.count)
        s.data.withUnsafeBufferPointer { sp in
            grad.withUnsafeMutableBufferPointer { g in
                sgemm(false, false, batch, ds, batch, 1, scratch, batch, sp.baseAddress!, ds, 0, g.baseAddress!, ds)
            }
        }
        return (Float(loss), Tensor(shape: s.shape, data: grad))
    }
}
