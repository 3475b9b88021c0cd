import COpenBLAS
import Foundation
import NN

/// `rkd`: relational knowledge distillation (Park et al. 2019) on the
/// penultimate embeddings (the global-average-pool outputs; teacher and
/// student widths may differ): the student keeps the teacher's pairwise
/// distances and triplet angles within the batch. Weights as in the authors'
/// code and mdistiller: 25 · distance + 50 · angle, λ_layer 1 on top.
/// docs/methods.md, "rkd".
public struct RKD: DistillationMethod {
    public init() {}
    public var name: String { "rkd" }
    public var summary: String { "relational KD: 25*distance + 50*angle smooth-L1 on the batch's penultimate embeddings (Park et al. 2019)" }
    public var defaults: MethodDefaults { MethodDefaults(lambdaLayer: 1) }
    public var pairing: Pairing { .embedding }
    public var poolsTeacherToStudentSize: Bool { false }
    public func makeLayerLoss(_ p: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss { RKDLoss() }
}

/// The RKD term on B embeddings e_i (teacher t_i ∈ R^{D_t}, student s_i ∈ R^{D_s}):
///
///     ψ_D(i, j) = ‖e_i − e_j‖ / μ,   μ = mean_{i≠j} ‖e_i − e_j‖     (ψ_D(i, i) = 0)
///     ψ_A(i, j, k) = ⟨n(e_j − e_i), n(e_k − e_i)⟩,  n(v) = v / max(‖v‖, 1e-12)
///     L = w_D · (1/B²) Σ_ij h(ψ_D^s − ψ_D^t) + w_A · (1/B³) Σ_ijk h(ψ_A^s − ψ_A^t)
///
/// h is the smooth-L1 (Huber, β = 1) loss, w_D = 25, w_A = 50. Distances
/// below √1e-12 are clamped there (no gradient), as in the reference code;
/// the means run over every entry, diagonal and degenerate triplets
/// included (they are zero on both sides), as `F.smooth_l1_loss` does.
///
/// Gradient: with g_ij = w_D h'(·)/B², S = Σ g_ij ψ_D^s(i, j) and n = B(B−1),
/// ∂L/∂‖e_i − e_j‖ = g_ij/μ − S/(n μ) (i ≠ j), then (e_i − e_j)/‖e_i − e_j‖.
/// For the angles, with G_i[j, k] = w_A h'(·)/B³ and u_ij = n(e_j − e_i),
/// ∂L/∂u_ij = Σ_k (G_i[j, k] + G_i[k, j]) u_ik, then through n and
/// v_ij = e_j − e_i into e_j (+) and e_i (−). Per anchor the angle matrix
/// U_i U_iᵀ and the product (G_i + G_iᵀ) U_i are one dgemm each (Double).
public final class RKDLoss: LayerLoss {
    public static let distanceWeight = 25.0
    public static let angleWeight = 50.0
    static let eps = 1e-12

    public init() {}

    public var parameters: [Parameter] { [] }

    /// Both sides are B×(anything) with the same B ≥ 2.
    public func validate(cachedTeacherShape t: [Int], studentShape s: [Int]) throws {
        guard t.count >= 2, s.count >= 2, t[0] == s[0], t[0] >= 2 else {
            throw LayerLossError("rkd: teacher \(t) and student \(s) must be batches of the same size B ≥ 2")
        }
    }

    /// Relational structure of one side: normalised distances and, per anchor, unit difference vectors.
    private struct Relations {
        /// B×B, ‖e_i − e_j‖ (clamped, 0 on the diagonal).
        var distance: [Double]
        /// mean over i ≠ j.
        var mean: Double
        /// B×B×D: u_ij = n(e_j − e_i), and ‖e_j − e_i‖ per (i, j).
        var unit: [Double]
        var norm: [Double]
        /// B×B×B: ψ_A(i, j, k).
        var angle: [Double]
    }

    private static func relations(_ e: Tensor) -> Relations {
        let b = e.shape[0], dim = e.count / b
        var r = Relations(distance: [Double](repeating: 0, count: b * b), mean: 0,
                          unit: [Double](repeating: 0, count: b * b * dim), norm: [Double](repeating: 0, count: b * b),
                          angle: [Double](repeating: 0, count: b * b * b))
        e.data.withUnsafeBufferPointer { x in
            var sum = 0.0
            for i in 0..<b {
                for j in 0..<b where j != i {
                    var q = 0.0
                    let o = (i * b + j) * dim
                    for c in 0..<dim {
                        let v = Double(x[j * dim + c]) - Double(x[i * dim + c])
                        r.unit[o + c] = v
                        q += v * v
                    }
                    let n = q.squareRoot()
                    r.norm[i * b + j] = n
                    r.distance[i * b + j] = max(q, eps).squareRoot()
                    sum += r.distance[i * b + j]
                    let inv = 1 / max(n, eps)
                    for c in 0..<dim { r.unit[o + c] *= inv }
                }
            }
            r.mean = sum / Double(b * (b - 1))
        }
        r.unit.withUnsafeBufferPointer { u in
            r.angle.withUnsafeMutableBufferPointer { a in
                for i in 0..<b {
                    // A_i = U_i U_iᵀ, U_i the B×D rows u_ij.
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(b), Int32(b), Int32(dim), 1,
                                u.baseAddress! + i * b * dim, Int32(dim), u.baseAddress! + i * b * dim, Int32(dim),
                                0, a.baseAddress! + i * b * b, Int32(b))
                }
            }
        }
        return r
    }

    @inline(__always) private static func huber(_ x: Double) -> Double { abs(x) < 1 ? 0.5 * x * x : abs(x) - 0.5 }
    @inline(__always) private static func huberSlope(_ x: Double) -> Double { min(max(x, -1), 1) }

    // t: B×D_t (cached teacher embeddings), s: B×D_s → L, ∂L/∂s: B×D_s
    public func forwardBackward(cachedTeacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        let b = s.shape[0], dim = s.count / b
        precondition(t.shape[0] == b && b >= 2, "RKDLoss: teacher \(t.shape) and student \(s.shape) must share a batch of at least 2")
        let rt = Self.relations(t), rs = Self.relations(s)
        let bb = Double(b * b), bbb = Double(b * b * b)
        // Distance term.
        var lossD = 0.0, sumGD = 0.0
        var gD = [Double](repeating: 0, count: b * b)
        for i in 0..<b {
            for j in 0..<b where j != i {
                let ps = rs.distance[i * b + j] / rs.mean, pt = rt.distance[i * b + j] / rt.mean
                lossD += Self.huber(ps - pt)
                let g = Self.distanceWeight * Self.huberSlope(ps - pt) / bb
                gD[i * b + j] = g
                sumGD += g * ps
            }
        }
        // Angle term.
        var lossA = 0.0
        var gA = [Double](repeating: 0, count: b * b * b)
        for m in 0..<(b * b * b) {
            let x = rs.angle[m] - rt.angle[m]
            lossA += Self.huber(x)
            gA[m] = Self.angleWeight * Self.huberSlope(x) / bbb
        }
        let loss = Self.distanceWeight * lossD / bb + Self.angleWeight * lossA / bbb
        guard computeGradient else { return (Float(loss), nil) }

        var grad = [Double](repeating: 0, count: b * dim)
        // Through ψ_D = d/μ and the clamp into e_i − e_j.
        let n = Double(b * (b - 1))
        s.data.withUnsafeBufferPointer { x in
            for i in 0..<b {
                for j in 0..<b where j != i {
                    let q = rs.norm[i * b + j]
                    guard q * q > Self.eps else { continue }   // clamped: constant distance
                    let dd = gD[i * b + j] / rs.mean - sumGD / (n * rs.mean)
                    let f = dd / q
                    for c in 0..<dim {
                        let v = Double(x[i * dim + c]) - Double(x[j * dim + c])
                        grad[i * dim + c] += f * v
                        grad[j * dim + c] -= f * v
                    }
                }
            }
        }
        // Angles: W_i = (G_i + G_iᵀ) U_i, then through the normalisation into v_ij = e_j − e_i.
        var sym = [Double](repeating: 0, count: b * b), w = [Double](repeating: 0, count: b * dim)
        var gv = [Double](repeating: 0, count: dim)
        for i in 0..<b {
            for j in 0..<b { for k in 0..<b { sym[j * b + k] = gA[(i * b + j) * b + k] + gA[(i * b + k) * b + j] } }
            rs.unit.withUnsafeBufferPointer { u in
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(b), Int32(dim), Int32(b), 1,
                            sym, Int32(b), u.baseAddress! + i * b * dim, Int32(dim), 0, &w, Int32(dim))
            }
            for j in 0..<b where j != i {
                let o = (i * b + j) * dim
                let norm = rs.norm[i * b + j]
                if norm > Self.eps {
                    var dot = 0.0
                    for c in 0..<dim { dot += rs.unit[o + c] * w[j * dim + c] }
                    for c in 0..<dim { gv[c] = (w[j * dim + c] - rs.unit[o + c] * dot) / norm }
                } else {
                    for c in 0..<dim { gv[c] = w[j * dim + c] / Self.eps }
                }
                for c in 0..<dim {
                    grad[j * dim + c] += gv[c]
                    grad[i * dim + c] -= gv[c]
                }
            }
        }
        return (Float(loss), Tensor(shape: s.shape, data: grad.map { Float($0) }))
    }
}
