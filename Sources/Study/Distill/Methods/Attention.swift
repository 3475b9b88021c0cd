import NN

/// `attention`: attention transfer (Zagoruyko & Komodakis 2017), the
/// normalised spatial energy maps of teacher and student. docs/methods.md, "attention".
public struct AttentionTransfer: DistillationMethod {
    public init() {}
    public var name: String { "attention" }
    public var summary: String { "squared error of l2-normalised spatial attention maps mean_c F^2 (Zagoruyko & Komodakis 2017)" }
    public var defaults: MethodDefaults { MethodDefaults(lambdaLayer: 100) }
    public func teacherTransform(_ p: PairContext) throws -> any TeacherTransform { AttentionMap() }
    public func makeLayerLoss(_ p: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss { AttentionLoss() }
}

/// q(F), the teacher side of attention transfer, cached once per image.
public struct AttentionMap: TeacherTransform {
    public init() {}
    public func outputShape(_ input: [Int]) -> [Int] { [input[0], input[1], 1] }
    // t: B×H×W×d → B×H×W×1
    public func callAsFunction(_ t: Tensor) -> Tensor { AttentionLoss.attention(t) }
}

/// The attention-transfer layer term:
///
///     q(F) = ℓ2-normalise(flatten(mean over channels of F²))     (one H·W vector per image)
///     L    = mean over batch and positions of (q(t) − q(s))²
///
/// Normalisation as F.normalize: q = a / max(‖a‖, 1e-12). The mean over
/// positions (not a sum) follows the reference code (and the authors'), not
/// eq. 2 of the paper. No parameters; teacher and student channel counts may differ.
/// The teacher side q(t) is cached once per image (`AttentionMap`);
/// `forwardBackward(cachedTeacher:…)` reads it.
public final class AttentionLoss: LayerLoss {
    static let eps: Float = 1e-12
    private let ws = Workspace()

    public init() {}

    public var parameters: [Parameter] { [] }

    public var teacherTransform: any TeacherTransform { AttentionMap() }

    /// The cached q(t) must be B×H×W×1 at the student's B×H×W.
    public func validate(cachedTeacherShape t: [Int], studentShape s: [Int]) throws {
        guard t.count == 4, s.count == 4, s[3] > 0 else {
            throw LayerLossError("attention: maps must be NHWC rank 4, got teacher attention \(t) student \(s)")
        }
        guard t == [s[0], s[1], s[2], 1] else {
            throw LayerLossError("attention: the teacher attention map is \(t), expected \([s[0], s[1], s[2], 1]) at the student's size (pool the teacher first)")
        }
    }

    /// q(F) for every image into `q` (B×P); returns nothing. F: B×P×C.
    private static func attentionMap(_ f: UnsafeBufferPointer<Float>, batch: Int, positions: Int,
                                     channels c: Int, into q: UnsafeMutablePointer<Float>,
                                     norms: UnsafeMutablePointer<Float>) {
        let invC = 1 / Float(c)
        for b in 0..<batch {
            var sq = 0.0
            for p in 0..<positions {
                let o = (b * positions + p) * c
                var a: Float = 0
                for ch in 0..<c { a += f[o + ch] * f[o + ch] }
                a *= invC
                q[b * positions + p] = a
                sq += Double(a) * Double(a)
            }
            let n = max(Float(sq.squareRoot()), eps)
            norms[b] = Float(sq.squareRoot())
            for p in 0..<positions { q[b * positions + p] /= n }
        }
    }

    /// q(t) of every image, B×H×W×1: what the loss needs of a frozen teacher
    /// (`AttentionMap`, d times less to store and read than t).
    // t: B×H×W×d → B×H×W×1
    public static func attention(_ t: Tensor) -> Tensor {
        precondition(t.rank == 4, "AttentionLoss: teacher map must be NHWC, got \(t.shape)")
        let batch = t.shape[0], positions = t.shape[1] * t.shape[2]
        var q = [Float](repeating: 0, count: batch * positions)
        var norms = [Float](repeating: 0, count: batch)
        q.withUnsafeMutableBufferPointer { qp in
            norms.withUnsafeMutableBufferPointer { np in
                t.data.withUnsafeBufferPointer {
                    Self.attentionMap($0, batch: batch, positions: positions, channels: t.shape[3],
                                      into: qp.baseAddress!, norms: np.baseAddress!)
                }
            }
        }
        return Tensor(shape: [batch, t.shape[1], t.shape[2], 1], data: q)
    }

    // q(t): B×H×W×1, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(cachedTeacher qtT: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        precondition(qtT.rank == 4 && s.rank == 4 && Array(qtT.shape[0..<3]) == Array(s.shape[0..<3]) && qtT.shape[3] == 1,
                     "AttentionLoss: teacher attention \(qtT.shape) must be B×H×W×1 at the student's \(s.shape)")
        let batch = s.shape[0], positions = s.shape[1] * s.shape[2]
        let k = s.shape[3]
        let m = batch * positions
        let buf = ws.get(2 * m + batch)
        let qs = buf, gq = buf + m, ns = buf + 2 * m
        s.data.withUnsafeBufferPointer { Self.attentionMap($0, batch: batch, positions: positions, channels: k, into: qs, norms: ns) }
        var sum = 0.0
        qtT.data.withUnsafeBufferPointer { qt in
            for i in 0..<m {
                let diff = qs[i] - qt[i]
                sum += Double(diff * diff)
                gq[i] = 2 * diff / Float(m)   // ∂L/∂q(s)
            }
        }
        let loss = Float(sum / Double(m))
        guard computeGradient else { return (loss, nil) }
        // Through the normalisation: ∂L/∂a = (g − q (q·g)) / ‖a‖ (or g / eps when ‖a‖ ≤ eps),
        // then through a = mean_c s²: ∂L/∂s = ∂L/∂a · 2 s / k.
        var gs = [Float](repeating: 0, count: s.count)
        s.data.withUnsafeBufferPointer { sp in
            gs.withUnsafeMutableBufferPointer { g in
                for b in 0..<batch {
                    let o = b * positions
                    if ns[b] > Self.eps {
                        var dot: Float = 0
                        for p in 0..<positions { dot += qs[o + p] * gq[o + p] }
                        for p in 0..<positions { gq[o + p] = (gq[o + p] - qs[o + p] * dot) / ns[b] }
                    } else {
                        for p in 0..<positions { gq[o + p] /= Self.eps }
                    }
                    for p in 0..<positions {
                        let f = 2 * gq[o + p] / Float(k)
                        let r = (o + p) * k
                        for ch in 0..<k { g[r + ch] = f * sp[r + ch] }
                    }
                }
            }
        }
        return (loss, Tensor(shape: s.shape, data: gs))
    }
}
