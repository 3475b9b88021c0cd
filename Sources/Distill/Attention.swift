import NN

/// `attention` layer loss (attention transfer, Zagoruyko & Komodakis 2017):
///
///     q(F) = ℓ2-normalise(flatten(mean over channels of F²))     (one H·W vector per image)
///     L    = mean over batch and positions of (q(t) − q(s))²
///
/// Normalisation as F.normalize: q = a / max(‖a‖, 1e-12). The mean over
/// positions (not a sum) follows the reference code (and the authors'), not
/// eq. 2 of the paper. No parameters; teacher and student channel counts may differ.
/// `teacherAttention(_:)` gives q(t) once for a frozen teacher (the training
/// loop caches it), `forwardBackward(teacherAttention:…)` uses it.
public final class AttentionLoss: LayerLoss {
    static let eps: Float = 1e-12
    private let ws = Workspace()

    public init() {}

    public var parameters: [Parameter] { [] }

    public func validate(teacherShape: [Int], studentShape: [Int]) throws {
        guard teacherShape.count == 4, studentShape.count == 4, teacherShape[3] > 0, studentShape[3] > 0 else {
            throw LayerLossError("attention: maps must be NHWC rank 4, got teacher \(teacherShape) student \(studentShape)")
        }
        try checkMaps("attention", teacher: teacherShape, student: studentShape,
                      d: teacherShape[3], k: studentShape[3])
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

    /// q(t) of every image, B×H×W×1: what the loss needs of a frozen teacher,
    /// so a training loop can compute it once per image and call
    /// `forwardBackward(teacherAttention:…)` (d times less to store and read).
    public func teacherAttention(_ t: Tensor) -> Tensor {
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

    // t: B×H×W×d, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(teacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        forwardBackward(teacherAttention: teacherAttention(t), student: s, training: training,
                        computeGradient: computeGradient)
    }

    // q(t): B×H×W×1, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(teacherAttention qtT: Tensor, student s: Tensor, training: Bool,
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
