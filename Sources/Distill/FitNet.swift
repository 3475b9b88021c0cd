import NN

/// `fitnet` layer loss (Romero et al. 2015, single-stage variant of Ahn et al. 2019):
///
///     r(s) = s·W + b                         (1×1 conv k→d with bias; a GEMM over B·H·W rows)
///     L    = (1/B) Σ_b Σ_c mean_hw (r(s) − t)²  =  Σ (r − t)² / (B·H·W)
///
/// With `relu: true` the regressor is followed by a ReLU, r = max(s·W + b, 0):
/// the authors' `fitnet-relu`, which their lambda table uses for CNN teachers
/// (`fitnet-noact`, the METHODS.md form, for NFNet/ViT). Default: no ReLU.
///
/// Weight layout: W is k×d row-major (input-major), so r = s·W needs no transpose.
/// Init: PyTorch's Conv2d default, U(±1/√k) for W and b.
public final class FitNetLoss: LayerLoss {
    public let teacherChannels: Int
    public let studentChannels: Int
    public let relu: Bool
    /// W, k×d.
    public let weight: Parameter
    /// b, d.
    public let bias: Parameter
    private let ws = Workspace()

    public init(name: String, teacherChannels d: Int, studentChannels k: Int, relu: Bool = false,
                rng: inout RNG) {
        precondition(d > 0 && k > 0, "FitNetLoss: channel counts must be positive")
        teacherChannels = d
        studentChannels = k
        self.relu = relu
        weight = Parameter(name: "\(name).regressor.weight", shape: [k, d],
                           value: uniformInit(count: k * d, fanIn: k, rng: &rng))
        bias = Parameter(name: "\(name).regressor.bias", shape: [d],
                         value: uniformInit(count: d, fanIn: k, rng: &rng), decays: false)
    }

    public var parameters: [Parameter] { [weight, bias] }

    public func validate(teacherShape: [Int], studentShape: [Int]) throws {
        try checkMaps("fitnet", teacher: teacherShape, student: studentShape, d: teacherChannels, k: studentChannels)
    }

    // t: B×H×W×d, s: B×H×W×k → L, ∂L/∂s: B×H×W×k
    public func forwardBackward(teacher t: Tensor, student s: Tensor, training: Bool,
                                computeGradient: Bool) -> (loss: Float, gradStudent: Tensor?) {
        let d = teacherChannels, k = studentChannels
        precondition(t.rank == 4 && s.rank == 4 && t.shape[3] == d && s.shape[3] == k
                     && Array(t.shape[0..<3]) == Array(s.shape[0..<3]),
                     "FitNetLoss: shapes teacher \(t.shape) student \(s.shape) do not fit d=\(d) k=\(k)")
        let rows = s.count / k
        let r = ws.get(rows * d)   // r, then ∂L/∂r
        // Forward: r = 1·bᵀ + s·W.
        bias.value.withUnsafeBufferPointer { b in
            for i in 0..<rows { (r + i * d).update(from: b.baseAddress!, count: d) }
        }
        s.data.withUnsafeBufferPointer { sp in
            weight.value.withUnsafeBufferPointer { wp in
                sgemm(false, false, rows, d, k, 1, sp.baseAddress!, k, wp.baseAddress!, d, 1, r, d)
            }
        }
        // L = Σ (r − t)² / rows; ∂L/∂r = 2 (r − t) / rows (masked by the ReLU).
        let scale = 2 / Float(rows)
        var sum = 0.0
        t.data.withUnsafeBufferPointer { tp in
            for i in 0..<(rows * d) {
                var v = r[i]
                if relu && v < 0 { v = 0 }
                let diff = v - tp[i]
                sum += Double(diff * diff)
                r[i] = (relu && r[i] <= 0) ? 0 : scale * diff
            }
        }
        let loss = Float(sum / Double(rows))
        guard computeGradient else { return (loss, nil) }
        // ∂L/∂W += sᵀ·∂L/∂r, ∂L/∂b += Σ_rows ∂L/∂r, ∂L/∂s = ∂L/∂r·Wᵀ.
        var gs = [Float](repeating: 0, count: rows * k)
        s.data.withUnsafeBufferPointer { sp in
            weight.grad.withUnsafeMutableBufferPointer { gw in
                sgemm(true, false, k, d, rows, 1, sp.baseAddress!, k, r, d, 1, gw.baseAddress!, d)
            }
        }
        bias.grad.withUnsafeMutableBufferPointer { gb in
            for i in 0..<rows {
                let o = i * d
                for c in 0..<d { gb[c] += r[o + c] }
            }
        }
        weight.value.withUnsafeBufferPointer { wp in
            gs.withUnsafeMutableBufferPointer { g in
                sgemm(false, true, rows, k, d, 1, r, d, wp.baseAddress!, d, 0, g.baseAddress!, k)
            }
        }
        return (loss, Tensor(shape: s.shape, data: gs))
    }
}
