import Foundation
import NN

/// `vid` layer loss (variational information distillation, Ahn et al. 2019):
///
///     r(s) = W₃ᵀ·ReLU(W₂ᵀ·ReLU(W₁ᵀ s))      (1×1 convs k→d, d→d, d→d, no biases; per pixel)
///     σ²_c = softplus(α_c) + 1e-5           (per teacher channel; α init so σ²_c = 5)
///     L    = mean over B·H·W·d of ½ [ (r(s) − t)² / σ² + log σ² ]
///
/// As in RepDistiller's VID and the authors' code: α₀ = log(exp(5 − 1e-5) − 1).
/// Weight layout: each Wᵢ is in×out row-major, so a layer is one GEMM X·Wᵢ over
/// the B·H·W pixel rows. Init: PyTorch Conv2d default, U(±1/√fan_in).
public final class VIDLoss: LayerLoss {
    public static let initialVariance: Float = 5
    public static let eps: Float = 1e-5
    public let teacherChannels: Int
    public let studentChannels: Int
    /// W₁ k×d, W₂ d×d, W₃ d×d.
    public let w1: Parameter, w2: Parameter, w3: Parameter
    /// α, d: σ² = softplus(α) + 1e-5.
    public let alpha: Parameter
    private let ws = Workspace(), ws2 = Workspace()

    public init(name: String, teacherChannels d: Int, studentChannels k: Int, rng: inout RNG) {
        precondition(d > 0 && k > 0, "VIDLoss: channel counts must be positive")
        teacherChannels = d
        studentChannels = k
        w1 = Parameter(name: "\(name).regressor.0.weight", shape: [k, d], value: uniformInit(count: k * d, fanIn: k, rng: &rng))
        w2 = Parameter(name: "\(name).regressor.2.weight", shape: [d, d], value: uniformInit(count: d * d, fanIn: d, rng: &rng))
        w3 = Parameter(name: "\(name).regressor.4.weight", shape: [d, d], value: uniformInit(count: d * d, fanIn: d, rng: &rng))
        let a0 = Float(log(exp(Double(Self.initialVariance - Self.eps)) - 1))
        alpha = Parameter(name: "\(name).log_scale", shape: [d], value: [Float](repeating: a0, count: d), decays: false)
    }

    public var parameters: [Parameter] { [w1, w2, w3, alpha] }

    public func validate(teacherShape: [Int], studentShape: [Int]) throws {
        try checkMaps("vid", teacher: teacherShape, student: studentShape, d: teacherChannels, k: studentChannels)
    }

    /// Numerically stable softplus log(1 + eˣ) and its derivative sigmoid(x).
    @inline(__always) static func softplus(_ x: Float) -> Float { x > 20 ? x : log1p(exp(x)) }
    @inline(__always) static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

    // t: B×H×W×d, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(teacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        let d = teacherChannels, k = studentChannels
        precondition(t.rank == 4 && s.rank == 4 && t.shape[3] == d && s.shape[3] == k
                     && Array(t.shape[0..<3]) == Array(s.shape[0..<3]),
                     "VIDLoss: shapes teacher \(t.shape) student \(s.shape) do not fit d=\(d) k=\(k)")
        let rows = s.count / k, m = rows * d
        let buf = ws.get(3 * m + 2 * d)
        let h1 = buf, h2 = buf + m, r = buf + 2 * m          // ReLU outputs, regressor output
        let variance = buf + 3 * m, gVar = variance + d
        // Forward: h₁ = ReLU(s W₁), h₂ = ReLU(h₁ W₂), r = h₂ W₃.
        s.data.withUnsafeBufferPointer { sp in
            w1.value.withUnsafeBufferPointer { sgemm(false, false, rows, d, k, 1, sp.baseAddress!, k, $0.baseAddress!, d, 0, h1, d) }
        }
        for i in 0..<m where h1[i] < 0 { h1[i] = 0 }
        w2.value.withUnsafeBufferPointer { sgemm(false, false, rows, d, d, 1, h1, d, $0.baseAddress!, d, 0, h2, d) }
        for i in 0..<m where h2[i] < 0 { h2[i] = 0 }
        w3.value.withUnsafeBufferPointer { sgemm(false, false, rows, d, d, 1, h2, d, $0.baseAddress!, d, 0, r, d) }
        alpha.value.withUnsafeBufferPointer { a in
            for c in 0..<d { variance[c] = Self.softplus(a[c]) + Self.eps; gVar[c] = 0 }
        }
        // L = (1/m) Σ ½[(r − t)²/σ² + log σ²]; ∂L/∂r = (r − t)/(σ² m);
        // ∂L/∂σ²_c = (1/m) Σ_rows ½[1/σ² − (r − t)²/σ⁴].
        let invM = 1 / Float(m)
        var sum = 0.0
        t.data.withUnsafeBufferPointer { tp in
            for i in 0..<rows {
                let o = i * d
                for c in 0..<d {
                    let diff = r[o + c] - tp[o + c]
                    let v = variance[c]
                    let e2 = diff * diff / v
                    sum += Double(0.5 * (e2 + log(v)))
                    gVar[c] += 0.5 * (1 - e2) / v
                    r[o + c] = diff / v * invM
                }
            }
        }
        let loss = Float(sum / Double(m))
        guard computeGradient else { return (loss, nil) }
        alpha.value.withUnsafeBufferPointer { a in
            alpha.grad.withUnsafeMutableBufferPointer { g in
                for c in 0..<d { g[c] += gVar[c] * invM * Self.sigmoid(a[c]) }
            }
        }
        // Backward through r = h₂W₃, h₂ = ReLU(h₁W₂), h₁ = ReLU(sW₁); ∂L/∂r is in r.
        w3.grad.withUnsafeMutableBufferPointer { sgemm(true, false, d, d, rows, 1, h2, d, r, d, 1, $0.baseAddress!, d) }
        // ∂L/∂(h₁W₂) = ∂L/∂r W₃ᵀ, masked where h₂ = 0.
        let g2 = ws2.get(m)
        w3.value.withUnsafeBufferPointer { sgemm(false, true, rows, d, d, 1, r, d, $0.baseAddress!, d, 0, g2, d) }
        for i in 0..<m where h2[i] <= 0 { g2[i] = 0 }
        w2.grad.withUnsafeMutableBufferPointer { sgemm(true, false, d, d, rows, 1, h1, d, g2, d, 1, $0.baseAddress!, d) }
        // ∂L/∂(sW₁) = ∂L/∂(h₁W₂) W₂ᵀ, masked where h₁ = 0; stored in r (no longer needed).
        w2.value.withUnsafeBufferPointer { sgemm(false, true, rows, d, d, 1, g2, d, $0.baseAddress!, d, 0, r, d) }
        for i in 0..<m where h1[i] <= 0 { r[i] = 0 }
        s.data.withUnsafeBufferPointer { sp in
            w1.grad.withUnsafeMutableBufferPointer { sgemm(true, false, k, d, rows, 1, sp.baseAddress!, k, r, d, 1, $0.baseAddress!, d) }
        }
        var gs = [Float](repeating: 0, count: rows * k)
        w1.value.withUnsafeBufferPointer { wp in
            gs.withUnsafeMutableBufferPointer { sgemm(false, true, rows, k, d, 1, r, d, wp.baseAddress!, d, 0, $0.baseAddress!, k) }
        }
        return (loss, Tensor(shape: s.shape, data: gs))
    }
}
