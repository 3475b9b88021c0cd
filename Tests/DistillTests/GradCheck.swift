import Foundation
@testable import Distill
import NN

/// A random tensor with N(0, scale²) entries (plus `offset`).
func randomTensor(_ shape: [Int], rng: inout RNG, scale: Double = 1, offset: Double = 0) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, data: (0..<n).map { _ in Float(offset + scale * rng.normal()) })
}

/// ‖a − b‖ / ‖b‖ (b the analytic gradient), or ‖a‖ if b is zero.
func relativeError(_ numeric: [Double], _ analytic: [Double]) -> Double {
    var diff = 0.0, norm = 0.0
    for i in numeric.indices {
        diff += (numeric[i] - analytic[i]) * (numeric[i] - analytic[i])
        norm += analytic[i] * analytic[i]
    }
    return norm > 0 ? (diff / norm).squareRoot() : diff.squareRoot()
}

/// Coordinates to probe: all when few, else an evenly spread deterministic subset.
func probeIndices(_ count: Int, max m: Int = 48) -> [Int] {
    count <= m ? Array(0..<count) : (0..<m).map { $0 * count / m }
}

/// Central finite differences of `loss` w.r.t. the chosen coordinates of a
/// value array reached through `get`/`set`.
func finiteDifferences(_ idx: [Int], h: Float, get: (Int) -> Float, set: (Int, Float) -> Void,
                       loss: () -> Double) -> [Double] {
    idx.map { i in
        let x = get(i)
        set(i, x + h)
        let lp = loss()
        set(i, x - h)
        let lm = loss()
        set(i, x)
        return (lp - lm) / (2 * Double(h))
    }
}

/// Gradient check of a layer loss w.r.t. the student map and every parameter.
/// Returns the relative error per name ("student" and the parameter names),
/// and the analytic gradient norms (a check that nothing is trivially zero).
func gradientErrors(_ loss: LayerLoss, teacher t: Tensor, student s0: Tensor, training: Bool,
                    h: Float = 1e-2) -> [(name: String, error: Double, norm: Double)] {
    for p in loss.parameters { p.zeroGrad() }
    let (_, gsOpt) = loss.forwardBackward(teacher: t, student: s0, training: training, computeGradient: true)
    let gs = gsOpt!
    var out: [(String, Double, Double)] = []
    var s = s0
    let idx = probeIndices(s.count)
    let num = finiteDifferences(idx, h: h, get: { s.data[$0] }, set: { s.data[$0] = $1 }) {
        Double(loss.forwardBackward(teacher: t, student: s, training: training, computeGradient: false).loss)
    }
    let ana = idx.map { Double(gs.data[$0]) }
    out.append(("student", relativeError(num, ana), ana.map { $0 * $0 }.reduce(0, +).squareRoot()))
    for p in loss.parameters {
        let pidx = probeIndices(p.count)
        let analytic = pidx.map { Double(p.grad[$0]) }
        let numeric = finiteDifferences(pidx, h: h, get: { p.value[$0] }, set: { p.value[$0] = $1 }) {
            Double(loss.forwardBackward(teacher: t, student: s0, training: training, computeGradient: false).loss)
        }
        out.append((p.name, relativeError(numeric, analytic), analytic.map { $0 * $0 }.reduce(0, +).squareRoot()))
    }
    if ProcessInfo.processInfo.environment["GRADCHECK_PRINT"] != nil {
        for (n, e, g) in out { print("gradcheck \(type(of: loss)) \(n): rel.err \(e) |g| \(g)") }
    }
    return out
}
