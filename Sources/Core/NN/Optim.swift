#if canImport(Glibc)
import Glibc
#else
import Foundation
#endif

/// A first-order optimiser over a fixed list of `Parameter`s.
///
/// `step()` reads each parameter's `grad` and updates its `value` in place;
/// it never modifies `grad`. The whole state (moments, momentum buffers, the
/// step counter, the current learning rate) round-trips through
/// `exportState()` / `importState(_:)` as named float arrays, so that a run
/// resumed from a checkpoint continues bit-for-bit like an uninterrupted one.
public protocol Optimizer: AnyObject {
    /// The parameters updated by `step()`, in a fixed order.
    var parameters: [Parameter] { get }
    /// Current learning rate; a schedule sets it at every epoch.
    var learningRate: Float { get set }
    /// Number of `step()` calls so far (PyTorch's `state["step"]`).
    var stepCount: Int { get }
    func step()
    func zeroGrad()
    /// Named arrays (name, shape, values): `step`, `lr` and per parameter
    /// `<name>.<buffer>`.
    func exportState() -> [(String, [Int], [Float])]
    /// Restores what `exportState()` produced for the same parameter list;
    /// throws on a missing, extra or mis-shaped entry.
    func importState(_ state: [(String, [Int], [Float])]) throws
}

extension Optimizer {
    /// Sets every parameter's gradient to zero.
    public func zeroGrad() {
        for p in parameters { p.zeroGrad() }
    }
}

// MARK: - SGD

/// Stochastic gradient descent with momentum and Nesterov momentum, PyTorch
/// semantics (`torch.optim.SGD`):
///
///     g ← ∇θ + wd·θ                      (L2 decay, only if `decays`)
///     b ← g                 at the first step,
///     b ← μ·b + (1 − τ)·g   afterwards  (μ momentum, τ dampening)
///     d ← g + μ·b (Nesterov)  or  d ← b   (μ = 0: d ← g)
///     θ ← θ − lr·d
public final class SGD: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let momentum: Float
    public let dampening: Float
    public let weightDecay: Float
    public let nesterov: Bool
    public private(set) var stepCount = 0
    private var buffers: [[Float]]

    public init(parameters: [Parameter], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) throws {
        try checkUniqueNames(parameters)
        guard learningRate >= 0 else { throw TrainError("SGD: learning rate must be ≥ 0, got \(learningRate)") }
        guard momentum >= 0 else { throw TrainError("SGD: momentum must be ≥ 0, got \(momentum)") }
        guard weightDecay >= 0 else { throw TrainError("SGD: weight decay must be ≥ 0, got \(weightDecay)") }
        if nesterov && (momentum <= 0 || dampening != 0) {
            throw TrainError("SGD: Nesterov momentum requires momentum > 0 and zero dampening")
        }
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        self.buffers = momentum > 0 ? parameters.map { [Float](repeating: 0, count: $0.count) } : []
    }

    public func step() {
        let lr = learningRate, mu = momentum, oneMinusTau = 1 - dampening
        let first = stepCount == 0
        for (k, p) in parameters.enumerated() {
            let wd = p.decays ? weightDecay : 0
            let n = p.count
            p.grad.withUnsafeBufferPointer { g in
                p.value.withUnsafeMutableBufferPointer { th in
                    if mu == 0 {
                        for i in 0..<n { th[i] -= lr * (g[i] + wd * th[i]) }
                        return
                    }
                    buffers[k].withUnsafeMutableBufferPointer { b in
                        for i in 0..<n {
                            let gi = wd != 0 ? g[i] + wd * th[i] : g[i]
                            let bi = first ? gi : mu * b[i] + oneMinusTau * gi
                            b[i] = bi
                            let d = nesterov ? gi + mu * bi : bi
                            th[i] -= lr * d
                        }
                    }
                }
            }
        }
        stepCount += 1
    }

    public func exportState() -> [(String, [Int], [Float])] {
        var out = commonState(stepCount, learningRate)
        for (k, p) in buffers.isEmpty ? [] : Array(parameters.enumerated()) {
            out.append(("\(p.name).momentum_buffer", p.shape, buffers[k]))
        }
        return out
    }

    public func importState(_ state: [(String, [Int], [Float])]) throws {
        var reader = try StateReader(state, owner: "SGD")
        let (count, lr) = try reader.common()
        var newBuffers = buffers
        for (k, p) in buffers.isEmpty ? [] : Array(parameters.enumerated()) {
            newBuffers[k] = try reader.take("\(p.name).momentum_buffer", shape: p.shape)
        }
        try reader.finish()
        buffers = newBuffers
        stepCount = count
        learningRate = lr
    }
}

// MARK: - Adam / AdamW

/// Adam (Kingma & Ba 2015) with PyTorch's exact update (`torch.optim.Adam`,
/// single-tensor path): bias correction, ε added outside the square root.
///
///     g ← ∇θ + wd·θ                     (Adam's L2 decay, only if `decays`)
///     θ ← θ·(1 − lr·wd)                  (AdamW's decoupled decay instead, only if `decays`)
///     m ← m + (1 − β1)(g − m)            (= β1·m + (1 − β1)·g)
///     v ← β2·v + (1 − β2)·g²
///     θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
///
/// t counts steps from 1. Scalars are formed in Double, as PyTorch does in
/// Python, and applied in Float.
public class Adam: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    public let weightDecay: Float
    /// true: AdamW's decoupled decay; false: Adam's L2 term in the gradient.
    public let decoupledWeightDecay: Bool
    public private(set) var stepCount = 0
    private var m: [[Float]]
    private var v: [[Float]]

    public init(parameters: [Parameter], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0, decoupledWeightDecay: Bool = false) throws {
        try checkUniqueNames(parameters)
        guard learningRate >= 0 else { throw TrainError("Adam: learning rate must be ≥ 0, got \(learningRate)") }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw TrainError("Adam: betas must lie in [0, 1), got (\(beta1), \(beta2))")
        }
        guard epsilon >= 0 else { throw TrainError("Adam: epsilon must be ≥ 0, got \(epsilon)") }
        guard weightDecay >= 0 else { throw TrainError("Adam: weight decay must be ≥ 0, got \(weightDecay)") }
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        self.m = parameters.map { [Float](repeating: 0, count: $0.count) }
        self.v = parameters.map { [Float](repeating: 0, count: $0.count) }
    }

    public func step() {
        stepCount += 1
        let t = Double(stepCount)
        let lr = Double(learningRate)
        let stepSize = Float(lr / (1 - pow(Double(beta1), t)))
        let bc2Sqrt = Float((1 - pow(Double(beta2), t)).squareRoot())
        let w1 = Float(1 - Double(beta1))
        let b2 = beta2, w2 = Float(1 - Double(beta2)), eps = epsilon
        let decayFactor = Float(1 - lr * Double(weightDecay))
        for (k, p) in parameters.enumerated() {
            let n = p.count
            let l2 = (!decoupledWeightDecay && p.decays) ? weightDecay : 0
            let decoupled = decoupledWeightDecay && p.decays && weightDecay != 0
            p.grad.withUnsafeBufferPointer { g in
                p.value.withUnsafeMutableBufferPointer { th in
                    m[k].withUnsafeMutableBufferPointer { mm in
                        v[k].withUnsafeMutableBufferPointer { vv in
                            for i in 0..<n {
                                var theta = th[i]
                                if decoupled { theta *= decayFactor }
                                let gi = l2 != 0 ? g[i] + l2 * theta : g[i]
                                let mi = mm[i] + w1 * (gi - mm[i])
                                let vi = vv[i] * b2 + w2 * gi * gi
                                mm[i] = mi
                                vv[i] = vi
                                let denom = vi.squareRoot() / bc2Sqrt + eps
                                th[i] = theta - stepSize * (mi / denom)
                            }
                        }
                    }
                }
            }
        }
    }

    public func exportState() -> [(String, [Int], [Float])] {
        var out = commonState(stepCount, learningRate)
        for (k, p) in parameters.enumerated() {
            out.append(("\(p.name).exp_avg", p.shape, m[k]))
            out.append(("\(p.name).exp_avg_sq", p.shape, v[k]))
        }
        return out
    }

    public func importState(_ state: [(String, [Int], [Float])]) throws {
        var reader = try StateReader(state, owner: decoupledWeightDecay ? "AdamW" : "Adam")
        let (count, lr) = try reader.common()
        var newM = m, newV = v
        for (k, p) in parameters.enumerated() {
            newM[k] = try reader.take("\(p.name).exp_avg", shape: p.shape)
            newV[k] = try reader.take("\(p.name).exp_avg_sq", shape: p.shape)
        }
        try reader.finish()
        m = newM
        v = newV
        stepCount = count
        learningRate = lr
    }
}

/// AdamW (Loshchilov & Hutter 2019), PyTorch semantics (`torch.optim.AdamW`):
/// Adam with decoupled weight decay θ ← θ − lr·wd·θ applied before the
/// moment update, only to parameters with `decays == true`. PyTorch's
/// default wd is 0.01; the reference setup (docs/methods.md, "Training defaults") uses lr 1e-3, wd 0.
public final class AdamW: Adam {
    public init(parameters: [Parameter], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0.01) throws {
        try super.init(parameters: parameters, learningRate: learningRate, beta1: beta1, beta2: beta2,
                       epsilon: epsilon, weightDecay: weightDecay, decoupledWeightDecay: true)
    }
}

// MARK: - Learning-rate schedule

/// Step decay (PyTorch `StepLR`): lr(epoch) = base · γ^⌊epoch / stepSize⌋,
/// epochs counted from 0. Closed form, so the rate at any epoch (also after
/// a resume) does not depend on the history of calls.
public struct StepLR: Equatable {
    public let baseLearningRate: Float
    public let stepSize: Int
    public let gamma: Float

    public init(baseLearningRate: Float, stepSize: Int, gamma: Float) throws {
        guard stepSize > 0 else { throw TrainError("StepLR: step size must be positive, got \(stepSize)") }
        guard gamma > 0 else { throw TrainError("StepLR: gamma must be positive, got \(gamma)") }
        self.baseLearningRate = baseLearningRate
        self.stepSize = stepSize
        self.gamma = gamma
    }

    /// The reference setup (docs/methods.md, "Training defaults"): ×γ (0.5) every quarter of the
    /// epochs, stepSize = ⌈epochs / 4⌉, so a run sees the rates
    /// base, base·γ, base·γ², base·γ³ in (about) four equal parts.
    public static func quarterly(baseLearningRate: Float, epochs: Int, gamma: Float = 0.5) throws -> StepLR {
        guard epochs > 0 else { throw TrainError("StepLR: epochs must be positive, got \(epochs)") }
        return try StepLR(baseLearningRate: baseLearningRate, stepSize: (epochs + 3) / 4, gamma: gamma)
    }

    public func learningRate(epoch: Int) -> Float {
        let k = max(epoch, 0) / stepSize
        return Float(Double(baseLearningRate) * pow(Double(gamma), Double(k)))
    }
}

// MARK: - Gradient clipping

/// Global ℓ2 norm of all gradients, √(Σ_p Σ_i g_pi²), accumulated in Double.
public func globalGradientNorm(_ parameters: [Parameter]) -> Float {
    var total = 0.0
    for p in parameters {
        p.grad.withUnsafeBufferPointer { g in
            for x in g { total += Double(x) * Double(x) }
        }
    }
    return Float(total.squareRoot())
}

/// Global gradient-norm clipping (PyTorch `clip_grad_norm_`): with
/// N = global ℓ2 norm, scales every gradient by min(1, maxNorm / (N + 1e-6)).
/// Returns N measured before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    let norm = globalGradientNorm(parameters)
    let coef = Double(maxNorm) / (Double(norm) + 1e-6)
    if coef < 1 {
        let c = Float(coef)
        for p in parameters {
            p.grad.withUnsafeMutableBufferPointer { g in
                for i in g.indices { g[i] *= c }
            }
        }
    }
    return norm
}

// MARK: - State helpers

private func checkUniqueNames(_ parameters: [Parameter]) throws {
    var seen = Set<String>()
    for p in parameters where !seen.insert(p.name).inserted {
        throw TrainError("optimiser: two parameters are named '\(p.name)'; state is keyed by name")
    }
}

/// The step counter as two floats, each exact (< 2^24): lo = n mod 2^20,
/// hi = n / 2^20; counts up to 2^44 survive a float32 artifact exactly.
private func commonState(_ stepCount: Int, _ lr: Float) -> [(String, [Int], [Float])] {
    let lo = Float(stepCount & 0xFFFFF), hi = Float(stepCount >> 20)
    return [("step", [2], [lo, hi]), ("lr", [1], [lr])]
}

/// Checks names and shapes of an imported optimiser state.
private struct StateReader {
    var entries: [String: ([Int], [Float])] = [:]
    var used = Set<String>()
    let owner: String

    init(_ state: [(String, [Int], [Float])], owner: String) throws {
        self.owner = owner
        for (name, shape, values) in state {
            guard entries[name] == nil else { throw TrainError("\(owner) state: entry '\(name)' appears twice") }
            entries[name] = (shape, values)
        }
    }

    mutating func take(_ name: String, shape: [Int]) throws -> [Float] {
        guard let (s, values) = entries[name] else {
            throw TrainError("\(owner) state: no entry '\(name)'")
        }
        guard s == shape, values.count == shape.reduce(1, *) else {
            throw TrainError("\(owner) state: entry '\(name)' has shape \(s) (\(values.count) values), expected \(shape)")
        }
        used.insert(name)
        return values
    }

    mutating func common() throws -> (Int, Float) {
        let step = try take("step", shape: [2])
        let lr = try take("lr", shape: [1])
        guard step.allSatisfy({ $0 >= 0 && $0 == $0.rounded() && $0 < 0x1p24 }), step[0] < 0x1p20 else {
            throw TrainError("\(owner) state: malformed step counter \(step)")
        }
        return (Int(step[0]) | (Int(step[1]) << 20), lr[0])
    }

    func finish() throws {
        let extra = entries.keys.filter { !used.contains($0) }.sorted()
        if !extra.isEmpty {
            throw TrainError("\(owner) state: unexpected entries \(extra.joined(separator: ", ")) (state of another optimiser or model?)")
        }
    }
}
