import Foundation
import NN

/// `vid`: variational information distillation (Ahn et al. 2019), a
/// three-layer 1×1 regressor with a learned per-channel variance.
/// docs/methods.md, "vid".
public struct VID: DistillationMethod {
    public init() {}
    public var name: String { "vid" }
    public var summary: String { "Gaussian likelihood of the teacher map under a 3-layer 1x1 regressor, learned variance (Ahn et al. 2019)" }
    public var defaults: MethodDefaults { MethodDefaults(lambdaLayer: 100) }
    public func makeLayerLoss(_ p: PairContext, config: DistillConfig, rng: inout RNG) throws -> LayerLoss {
        VIDLoss(name: p.label, teacherChannels: p.teacherChannels, studentChannels: p.studentChannels, rng: &rng)
    }
}

/// The VID layer term:
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
    private let ws = Workspace()

    public init(name: String, teacherChannels d: Int, studentChannels k: Int, rng: inout RNG) {
        precondition(d > 0 && k > 0, "VIDLoss: channel counts must be positive")
        teacherChannels = d
        studentChannels = k
        w1 = Parameter(name: "\(name).regressor.0.weight", shape: [k, d], value: uniformInit(count: k * d, fanIn: k, rng: &rng))
        w2 = Parameter(name: "\(name).regressor.2.weight", shape: [d, d], value: uniformInit(count: d * d, fanIn: d, rng: &rng))
        w3 = Parameter(name: "\(name).regressor.4.weight", shape: [d, d], value: uniformInit(count: d * d, fanIn: d, rng: &rng))
        let a0 = Float(log(exp(Double(Self.initialVariance - Self.eps)) - 1))
        alpha = Parameter(name: "\(name).log_scale", shape: [d], value: [Float](repeating: a0, count: d), decays: false)
        chunkRows = RowChunks.defaultChunkRows(d: d)
    }

    public var parameters: [Parameter] { [w1, w2, w3, alpha] }

    /// `variance`: σ² per teacher channel.
    public var exportedValues: [(String, [Int], [Float])] {
        [("variance", [teacherChannels], alpha.value.map { Self.softplus($0) + Self.eps })]
    }

    public func validate(cachedTeacherShape teacherShape: [Int], studentShape: [Int]) throws {
        try checkMaps("vid", teacher: teacherShape, student: studentShape, d: teacherChannels, k: studentChannels)
    }

    /// Numerically stable softplus log(1 + eˣ) and its derivative sigmoid(x).
    @inline(__always) static func softplus(_ x: Float) -> Float { x > 20 ? x : log1p(exp(x)) }
    @inline(__always) static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

    /// Pixel rows per parallel chunk (`RowChunks.defaultChunkRows`);
    /// settable for tests of the chunking.
    public var chunkRows: Int

    // t: B×H×W×d, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    //
    // Every row (pixel) is independent given σ², so each chunk of rows runs
    // forward, loss and backward on its own; only Σ(r − t)²/σ² per channel
    // and the weight gradients are reduced, in chunk order, after the join.
    public func forwardBackward(cachedTeacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        let d = teacherChannels, k = studentChannels
        precondition(t.rank == 4 && s.rank == 4 && t.shape[3] == d && s.shape[3] == k
                     && Array(t.shape[0..<3]) == Array(s.shape[0..<3]),
                     "VIDLoss: shapes teacher \(t.shape) student \(s.shape) do not fit d=\(d) k=\(k)")
        let rows = s.count / k, m = rows * d
        let split = RowChunks(rows: rows, chunkRows: chunkRows), chunks = split.count
        let wCount = k * d + 2 * d * d                       // ∂W₁, ∂W₂, ∂W₃ of one chunk
        let buf = ws.get(4 * m + 2 * d + chunks * d + (computeGradient ? chunks * wCount : 0))
        let h1 = buf, h2 = buf + m, r = buf + 2 * m, g2 = buf + 3 * m   // ReLU outputs, regressor output, ∂ before W₂ᵀ
        let variance = buf + 4 * m, invVar = variance + d
        let e2Parts = invVar + d                              // per chunk: Σ_rows (r − t)²/σ², d each
        let wParts = e2Parts + chunks * d                     // per chunk: ∂W₁ ∂W₂ ∂W₃
        alpha.value.withUnsafeBufferPointer { a in
            for c in 0..<d {
                variance[c] = Self.softplus(a[c]) + Self.eps
                invVar[c] = 1 / variance[c]
            }
        }
        let invM = 1 / Float(m)
        var gs = [Float](repeating: 0, count: computeGradient ? rows * k : 0)
        s.data.withUnsafeBufferPointer { sBuf in
        t.data.withUnsafeBufferPointer { tBuf in
        gs.withUnsafeMutableBufferPointer { gsBuf in
        w1.value.withUnsafeBufferPointer { w1p in
        w2.value.withUnsafeBufferPointer { w2p in
        w3.value.withUnsafeBufferPointer { w3p in
            let sp = sBuf.baseAddress!, tp = tBuf.baseAddress!
            let W1 = w1p.baseAddress!, W2 = w2p.baseAddress!, W3 = w3p.baseAddress!
            FixedChunks.forEach(chunks) { chunk, _ in
                let (r0, n) = split.range(chunk)
                let o = r0 * d, cm = n * d
                let x = sp + r0 * k, h1c = h1 + o, h2c = h2 + o, rc = r + o, g2c = g2 + o
                // Forward: h₁ = ReLU(s W₁), h₂ = ReLU(h₁ W₂), r = h₂ W₃.
                sgemm(false, false, n, d, k, 1, x, k, W1, d, 0, h1c, d)
                reluInPlace(h1c, cm)
                sgemm(false, false, n, d, d, 1, h1c, d, W2, d, 0, h2c, d)
                reluInPlace(h2c, cm)
                sgemm(false, false, n, d, d, 1, h2c, d, W3, d, 0, rc, d)
                // rc ← ∂L/∂r = (r − t)/(σ² m); e2 ← Σ_rows (r − t)²/σ².
                Self.residuals(rc, tp + o, rows: n, d: d, invVar: invVar, invM: invM, e2: e2Parts + chunk * d)
                guard computeGradient else { return }
                let dW1 = wParts + chunk * wCount, dW2 = dW1 + k * d, dW3 = dW2 + d * d
                // Backward through r = h₂W₃, h₂ = ReLU(h₁W₂), h₁ = ReLU(sW₁).
                sgemm(true, false, d, d, n, 1, h2c, d, rc, d, 0, dW3, d)
                sgemm(false, true, n, d, d, 1, rc, d, W3, d, 0, g2c, d)
                reluMaskInPlace(g2c, by: h2c, cm)
                sgemm(true, false, d, d, n, 1, h1c, d, g2c, d, 0, dW2, d)
                // ∂L/∂(sW₁) = ∂L/∂(h₁W₂) W₂ᵀ masked where h₁ = 0; into rc (no longer needed).
                sgemm(false, true, n, d, d, 1, g2c, d, W2, d, 0, rc, d)
                reluMaskInPlace(rc, by: h1c, cm)
                sgemm(true, false, k, d, n, 1, x, k, rc, d, 0, dW1, d)
                sgemm(false, true, n, k, d, 1, rc, d, W1, d, 0, gsBuf.baseAddress! + r0 * k, k)
            }
        }}}}}}
        // L = (1/m) Σ ½[(r − t)²/σ² + log σ²] = ½(Σ_c E2_c + rows·Σ_c log σ²_c)/m.
        var e2Total = [Double](repeating: 0, count: d)
        for chunk in 0..<chunks {
            for c in 0..<d { e2Total[c] += Double(e2Parts[chunk * d + c]) }
        }
        var sum = 0.0
        for c in 0..<d { sum += e2Total[c] + Double(rows) * Double(log(variance[c])) }
        let loss = Float(0.5 * sum / Double(m))
        guard computeGradient else { return (loss, nil) }
        // ∂L/∂σ²_c = (1/m) Σ_rows ½[1/σ² − (r − t)²/σ⁴] = ½(rows − E2_c)/(σ²_c m); σ² = softplus(α).
        alpha.value.withUnsafeBufferPointer { a in
            alpha.grad.withUnsafeMutableBufferPointer { g in
                for c in 0..<d {
                    let gVar = Float(0.5 * (Double(rows) - e2Total[c])) * invVar[c]
                    g[c] += gVar * invM * Self.sigmoid(a[c])
                }
            }
        }
        for chunk in 0..<chunks {
            let part = wParts + chunk * wCount
            addInto(w1, part, k * d)
            addInto(w2, part + k * d, d * d)
            addInto(w3, part + k * d + d * d, d * d)
        }
        return (loss, Tensor(shape: s.shape, data: gs))
    }

    /// r ← (r − t)·(1/σ²)/m row by row, and e2[c] = Σ_rows (r − t)²/σ²_c
    /// (overwritten). SIMD over channels in blocks of 8.
    @inline(__always)
    static func residuals(_ r: UnsafeMutablePointer<Float>, _ t: UnsafePointer<Float>, rows: Int, d: Int,
                          invVar: UnsafePointer<Float>, invM: Float, e2: UnsafeMutablePointer<Float>) {
        let blocks = d / 8
        for c in 0..<d { e2[c] = 0 }
        for i in 0..<rows {
            let ri = r + i * d, ti = t + i * d
            for b in 0..<blocks {
                let c = b * 8
                let iv = UnsafeRawPointer(invVar + c).loadUnaligned(as: SIMD8<Float>.self)
                let diff = UnsafeRawPointer(ri + c).loadUnaligned(as: SIMD8<Float>.self)
                    - UnsafeRawPointer(ti + c).loadUnaligned(as: SIMD8<Float>.self)
                let scaled = diff * iv
                let acc = UnsafeRawPointer(e2 + c).loadUnaligned(as: SIMD8<Float>.self) + diff * scaled
                UnsafeMutableRawPointer(e2 + c).storeBytes(of: acc, as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(ri + c).storeBytes(of: scaled * invM, as: SIMD8<Float>.self)
            }
            for c in (blocks * 8)..<d {
                let diff = ri[c] - ti[c], scaled = diff * invVar[c]
                e2[c] += diff * scaled
                ri[c] = scaled * invM
            }
        }
    }
}
