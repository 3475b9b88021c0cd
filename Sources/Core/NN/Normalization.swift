/// Running statistics with PyTorch's convention: r ← (1−m)·r + m·batch
/// value, the variance entering unbiased (·n/(n−1)).
@inline(__always)
func updateRunning(_ runningMean: inout [Float], _ runningVar: inout [Float], mean: UnsafePointer<Double>,
                   variance: UnsafePointer<Double>, rows: Int, momentum: Float) {
    let unbias = rows > 1 ? Double(rows) / Double(rows - 1) : 1
    let m = Double(momentum)
    for ch in 0..<runningMean.count {
        runningMean[ch] = Float((1 - m) * Double(runningMean[ch]) + m * mean[ch])
        runningVar[ch] = Float((1 - m) * Double(runningVar[ch]) + m * variance[ch] * unbias)
    }
}

/// Shared state and steps of `BatchNorm` and `Standardize`: per-channel
/// statistics over all leading axes of a channels-last tensor (n = B·H·W
/// values per channel for images, B for flat features), the normalised
/// values x̂ = (x − μ)/√(σ² + ε), and the backward
///   dx = a·dy − b − x̂·d,  a = g/√(σ²+ε), b = a·(1/n)Σ dy, d = a·(1/n)Σ dy·x̂
/// (g = γ for batch norm, 1 without affine; b = d = 0 in evaluation mode).
final class ChannelNormalizer {
    let channels: Int
    let tiling: ChannelTiling
    /// Per channel (Double): mean, variance, 1/√(var+ε), Σdy, Σdy·x̂.
    let stats: UnsafeMutablePointer<Double>
    /// Tiled float coefficients, 6 × L: shift/scale/γ/β forward, a/b/d and
    /// γ/β (the ReLU mask) backward.
    let tiles: UnsafeMutablePointer<Float>
    /// Per-channel float scratch (C floats).
    let scratch: UnsafeMutablePointer<Float>

    init(channels c: Int) {
        channels = c
        tiling = ChannelTiling(channels: c)
        stats = .allocate(capacity: 5 * c)
        stats.initialize(repeating: 0, count: 5 * c)
        tiles = .allocate(capacity: 6 * tiling.lanes)
        tiles.initialize(repeating: 0, count: 6 * tiling.lanes)
        scratch = .allocate(capacity: c)
        scratch.initialize(repeating: 0, count: c)
    }

    deinit {
        stats.deallocate()
        tiles.deallocate()
        scratch.deallocate()
    }

    var mean: UnsafeMutablePointer<Double> { stats }
    var variance: UnsafeMutablePointer<Double> { stats + channels }
    var invStd: UnsafeMutablePointer<Double> { stats + 2 * channels }
    var sumDy: UnsafeMutablePointer<Double> { stats + 3 * channels }
    var sumDyXhat: UnsafeMutablePointer<Double> { stats + 4 * channels }

    /// Fills mean/variance from the batch (training, then updates the
    /// running statistics) or from the running statistics (evaluation), and
    /// invStd (1 when `centerOnly`).
    func statistics(_ x: UnsafePointer<Float>, count: Int, training: Bool, runningMean: Buffer, runningVar: Buffer,
                    eps: Float, momentum: Float, centerOnly: Bool) {
        let c = channels, rows = count / c
        if training {
            channelSumAndSquares(x, count: count, tiling: tiling, sum: mean, sumSq: variance)
            let inv = 1 / Double(rows)
            for ch in 0..<c {
                let m = mean[ch] * inv
                mean[ch] = m
                // E[x²] − E[x]² in Double: the cancellation is invisible at
                // float precision unless |mean| ≫ std by ~10⁴.
                variance[ch] = max(variance[ch] * inv - m * m, 0)
            }
            updateRunning(&runningMean.value, &runningVar.value, mean: mean, variance: variance,
                          rows: rows, momentum: momentum)
        } else {
            for ch in 0..<c {
                mean[ch] = Double(runningMean.value[ch])
                variance[ch] = Double(runningVar.value[ch])
            }
        }
        for ch in 0..<c { invStd[ch] = centerOnly ? 1 : 1 / (variance[ch] + Double(eps)).squareRoot() }
    }

    /// x̂ = (x − μ)·invStd into `xhat`, and y = γ·x̂ + β (max(·, 0) with
    /// `relu`) into `y` when given.
    func normalize(_ x: UnsafePointer<Float>, count: Int, xhat: UnsafeMutablePointer<Float>,
                   gamma: [Float]?, beta: [Float]?, y: UnsafeMutablePointer<Float>?, relu: Bool = false) {
        let c = channels, l = tiling.lanes
        for ch in 0..<c { scratch[ch] = Float(-mean[ch]) }
        tiling.tile(scratch, into: tiles)
        for ch in 0..<c { scratch[ch] = Float(invStd[ch]) }
        tiling.tile(scratch, into: tiles + l)
        if let gamma, let beta, let y {
            gamma.withUnsafeBufferPointer { tiling.tile($0.baseAddress!, into: tiles + 2 * l) }
            beta.withUnsafeBufferPointer { tiling.tile($0.baseAddress!, into: tiles + 3 * l) }
            channelAffine(x, count: count, tiling: tiling, scale: tiles + l, shift: tiles, u: xhat,
                          gamma: tiles + 2 * l, beta: tiles + 3 * l, y: y, relu: relu)
        } else {
            channelAffine(x, count: count, tiling: tiling, scale: tiles + l, shift: tiles, u: xhat,
                          gamma: nil, beta: nil, y: nil)
        }
    }

    /// y = γ·(x − μ)·invStd + β (max(·, 0) with `relu`) in one pass,
    /// without x̂ (inference).
    func normalizeOnly(_ x: UnsafePointer<Float>, count: Int, gamma: [Float], beta: [Float],
                       y: UnsafeMutablePointer<Float>, relu: Bool = false) {
        let c = channels, l = tiling.lanes
        for ch in 0..<c { scratch[ch] = Float(-mean[ch]) }
        tiling.tile(scratch, into: tiles)
        for ch in 0..<c { scratch[ch] = Float(Double(gamma[ch]) * invStd[ch]) }
        tiling.tile(scratch, into: tiles + l)
        beta.withUnsafeBufferPointer { tiling.tile($0.baseAddress!, into: tiles + 2 * l) }
        channelScaleShift(x, count: count, tiling: tiling, shift: tiles, scale: tiles + l, offset: tiles + 2 * l, y: y,
                          relu: relu)
    }

    /// Σdy and Σdy·x̂ per channel (into sumDy, sumDyXhat). With `reluMask`
    /// (γ, β), dy is the gradient of a ReLU that followed y = γ·x̂ + β, and
    /// the sums are of dy·1[y > 0].
    func gradientSums(_ dy: UnsafePointer<Float>, xhat: UnsafePointer<Float>, count: Int,
                      reluMask: (gamma: [Float], beta: [Float])? = nil) {
        if let reluMask {
            let g = tileMask(reluMask)
            channelSumAndDot(dy, xhat, count: count, tiling: tiling, mask: ReLUMask(gamma: g, beta: g + tiling.lanes),
                             sumA: sumDy, sumAB: sumDyXhat)
        } else {
            channelSumAndDot(dy, xhat, count: count, tiling: tiling, mask: NoMask(), sumA: sumDy, sumAB: sumDyXhat)
        }
    }

    /// γ and β tiled into the last two coefficient rows; returns the first.
    private func tileMask(_ mask: (gamma: [Float], beta: [Float])) -> UnsafeMutablePointer<Float> {
        let l = tiling.lanes, g = tiles + 4 * l
        mask.gamma.withUnsafeBufferPointer { tiling.tile($0.baseAddress!, into: g) }
        mask.beta.withUnsafeBufferPointer { tiling.tile($0.baseAddress!, into: g + l) }
        return g
    }

    /// dx = a·dy − b − x̂·d (see the type's comment); `gain` = γ or nil (1);
    /// `useXhatTerm` false drops d (center-only standardisation).
    func inputGradient(_ dy: UnsafePointer<Float>, xhat: UnsafePointer<Float>, count: Int, training: Bool,
                       gain: [Float]?, useXhatTerm: Bool, dx: UnsafeMutablePointer<Float>,
                       reluMask: (gamma: [Float], beta: [Float])? = nil) {
        let c = channels, l = tiling.lanes, n = Double(count / c)
        let a = tiles, b = tiles + l, d = tiles + 2 * l
        for ch in 0..<c { scratch[ch] = Float((gain.map { Double($0[ch]) } ?? 1) * invStd[ch]) }
        tiling.tile(scratch, into: a)
        for ch in 0..<c { scratch[ch] = training ? Float(Double(scratch[ch]) * sumDy[ch] / n) : 0 }
        tiling.tile(scratch, into: b)
        for ch in 0..<c {
            let ach = (gain.map { Double($0[ch]) } ?? 1) * invStd[ch]
            scratch[ch] = training && useXhatTerm ? Float(ach * sumDyXhat[ch] / n) : 0
        }
        tiling.tile(scratch, into: d)
        if let reluMask {
            let g = tileMask(reluMask)
            channelNormBackward(dy, xhat, count: count, tiling: tiling, mask: ReLUMask(gamma: g, beta: g + l),
                                a: a, b: b, d: d, dx: dx)
        } else {
            channelNormBackward(dy, xhat, count: count, tiling: tiling, mask: NoMask(), a: a, b: b, d: d, dx: dx)
        }
    }
}

/// Batch normalisation (Ioffe & Szegedy 2015) over the last (channel) axis,
/// as PyTorch's BatchNorm2d/1d:
///   training:   μ, σ² = batch mean and biased variance per channel over
///               all other axes (n = B·H·W values);
///               x̂ = (x − μ)/√(σ² + ε), y = γ·x̂ + β;
///               running_mean ← 0.9·running_mean + 0.1·μ,
///               running_var  ← 0.9·running_var + 0.1·σ²·n/(n−1).
///   evaluation: x̂ = (x − running_mean)/√(running_var + ε), y = γ·x̂ + β.
/// Backward (training): dβ += Σ dy, dγ += Σ dy·x̂,
///   dx = γ/√(σ²+ε) · (dy − (1/n)Σ dy − x̂·(1/n)Σ dy·x̂);
/// (evaluation): dx = γ/√(running_var+ε) · dy.
/// ε = 1e-5, momentum 0.1; γ = 1, β = 0 initially; γ and β do not decay.
public final class BatchNorm: Layer, RetainsBackwardState {
    public let name: String
    public let channels: Int
    public let eps: Float
    public let momentum: Float
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Buffer
    public let runningVar: Buffer

    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    private let xhat = Workspace<Float>()
    private let norm: ChannelNormalizer
    private var lastTraining = false
    /// The ReLU fused into the last forward, if any.
    private var fusedReLU: ReLU?
    /// True when the last forward ran fused with a ReLU.
    var fusedWithReLU: Bool { fusedReLU != nil }
    /// See `RetainsBackwardState`.
    var retainsBackwardState = true
    private var backwardReady = false

    public init(name: String, channels: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        precondition(channels > 0, "BatchNorm \(name): channels must be positive")
        self.name = name
        self.channels = channels
        self.eps = eps
        self.momentum = momentum
        weight = Parameter(name: name + ".weight", shape: [channels],
                           value: [Float](repeating: 1, count: channels), decays: false)
        bias = Parameter(name: name + ".bias", shape: [channels],
                         value: [Float](repeating: 0, count: channels), decays: false)
        runningMean = Buffer(name: name + ".running_mean", shape: [channels],
                             value: [Float](repeating: 0, count: channels))
        runningVar = Buffer(name: name + ".running_var", shape: [channels],
                            value: [Float](repeating: 1, count: channels))
        norm = ChannelNormalizer(channels: channels)
    }

    public var parameters: [Parameter] { [weight, bias] }
    public var buffers: [Buffer] { [runningMean, runningVar] }

    public func outputShape(for s: [Int]) throws -> [Int] {
        guard s.last == channels else {
            throw NNError("\(name): expects \(channels) channels on the last axis, got shape \(s)")
        }
        return s
    }

    // x: B×…×C → y: same shape
    public func forward(_ x: Tensor, training: Bool) -> Tensor { forward(x, training: training, relu: nil) }

    /// With `relu`, the forward of batch norm then that ReLU in one pass:
    /// max(γ·x̂ + β, 0) goes into the ReLU's output (returned), this layer's
    /// own output is left untouched, and the next `backward` takes the ReLU's
    /// output gradient (the ReLU's own forward and backward are skipped).
    // x: B×…×C → relu(y): same shape
    func forward(_ x: Tensor, training: Bool, relu: ReLU?) -> Tensor {
        precondition(x.rank >= 2 && x.shape.last == channels,
                     "\(name): expects B×…×\(channels), got \(x.shape)")
        precondition(!training || x.count / channels > 1, "\(name): training needs more than one value per channel")
        lastTraining = training
        fusedReLU = relu
        backwardReady = training || retainsBackwardState
        let keepXhat = backwardReady
        x.data.withUnsafeBufferPointer { xb in
            norm.statistics(xb.baseAddress!, count: x.count, training: training, runningMean: runningMean,
                            runningVar: runningVar, eps: eps, momentum: momentum, centerOnly: false)
            func write(_ y: UnsafeMutablePointer<Float>) {
                if keepXhat {
                    let xh = xhat.reserve(x.count).baseAddress!
                    norm.normalize(xb.baseAddress!, count: x.count, xhat: xh, gamma: weight.value, beta: bias.value,
                                   y: y, relu: relu != nil)
                } else {
                    norm.normalizeOnly(xb.baseAddress!, count: x.count, gamma: weight.value, beta: bias.value,
                                       y: y, relu: relu != nil)
                }
            }
            if let relu {
                relu.writeOutput(shape: x.shape, write)
            } else {
                output.reuse(shape: x.shape)
                output.data.withUnsafeMutableBufferPointer { write($0.baseAddress!) }
            }
        }
        return relu?.output ?? output
    }

    // dy: B×…×C → dx: same shape; dγ, dβ accumulate (after a fused forward,
    // dy is the ReLU's output gradient)
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(backwardReady, "\(name): backward after a forward that kept no state (Model.inference)")
        let shape = fusedReLU?.output.shape ?? output.shape
        precondition(gradOutput.shape == shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(shape)")
        let n = gradOutput.count
        gradInput.reuse(shape: shape)
        let xh = UnsafePointer(xhat.buffer.baseAddress!)
        let mask = fusedReLU == nil ? nil : (gamma: weight.value, beta: bias.value)
        gradOutput.data.withUnsafeBufferPointer { dyb in
            let dy = dyb.baseAddress!
            norm.gradientSums(dy, xhat: xh, count: n, reluMask: mask)
            weight.grad.withUnsafeMutableBufferPointer { dg in
                bias.grad.withUnsafeMutableBufferPointer { db in
                    for ch in 0..<channels {
                        dg[ch] += Float(norm.sumDyXhat[ch])
                        db[ch] += Float(norm.sumDy[ch])
                    }
                }
            }
            gradInput.data.withUnsafeMutableBufferPointer { dxb in
                norm.inputGradient(dy, xhat: xh, count: n, training: lastTraining, gain: weight.value,
                                   useXhatTerm: true, dx: dxb.baseAddress!, reluMask: mask)
            }
        }
        return gradInput
    }
}

/// Per-channel standardisation without affine parameters, N(s) of the
/// SubDistill layer loss (docs/methods.md, "SubDistill layer loss"), over the
/// last (channel) axis:
///   `standardize` (default, what the authors' code does):
///     training:   y = (x − μ)/√(σ² + ε) with batch mean and biased variance;
///     evaluation: y = (x − running_mean)/√(running_var + ε).
///   `center` (what the authors' comment says):
///     training: y = x − μ;  evaluation: y = x − running_mean.
/// Running statistics as batch norm (momentum 0.1, running_var unbiased,
/// updated in both modes), ε = 1e-5. Backward (training, standardize):
///   dx = (1/√(σ²+ε))·(dy − (1/n)Σ dy − y·(1/n)Σ dy·y); (center): dx = dy − (1/n)Σ dy;
/// evaluation: dx = dy/√(running_var+ε), resp. dx = dy.
public final class Standardize: Layer {
    public enum Mode: String, Sendable { case standardize, center }
    public let name: String
    public let channels: Int
    public let mode: Mode
    public let eps: Float
    public let momentum: Float
    public let runningMean: Buffer
    public let runningVar: Buffer

    public private(set) var output = Tensor(shape: [0])
    private var gradInput = Tensor(shape: [0])
    private let norm: ChannelNormalizer
    private var lastTraining = false

    public init(name: String, channels: Int, mode: Mode = .standardize, eps: Float = 1e-5, momentum: Float = 0.1) {
        precondition(channels > 0, "Standardize \(name): channels must be positive")
        self.name = name
        self.channels = channels
        self.mode = mode
        self.eps = eps
        self.momentum = momentum
        runningMean = Buffer(name: name + ".running_mean", shape: [channels],
                             value: [Float](repeating: 0, count: channels))
        runningVar = Buffer(name: name + ".running_var", shape: [channels],
                            value: [Float](repeating: 1, count: channels))
        norm = ChannelNormalizer(channels: channels)
    }

    public var buffers: [Buffer] { [runningMean, runningVar] }

    public func outputShape(for s: [Int]) throws -> [Int] {
        guard s.last == channels else {
            throw NNError("\(name): expects \(channels) channels on the last axis, got shape \(s)")
        }
        return s
    }

    // x: B×…×C → y: same shape
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank >= 2 && x.shape.last == channels,
                     "\(name): expects B×…×\(channels), got \(x.shape)")
        precondition(!training || x.count / channels > 1, "\(name): training needs more than one value per channel")
        lastTraining = training
        output.reuse(shape: x.shape)
        x.data.withUnsafeBufferPointer { xb in
            norm.statistics(xb.baseAddress!, count: x.count, training: training, runningMean: runningMean,
                            runningVar: runningVar, eps: eps, momentum: momentum, centerOnly: mode == .center)
            output.data.withUnsafeMutableBufferPointer { yb in
                norm.normalize(xb.baseAddress!, count: x.count, xhat: yb.baseAddress!, gamma: nil, beta: nil, y: nil)
            }
        }
        return output
    }

    // dy: B×…×C → dx: same shape
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        let n = output.count
        gradInput.reuse(shape: output.shape)
        output.data.withUnsafeBufferPointer { yb in
            gradOutput.data.withUnsafeBufferPointer { dyb in
                // In standardize mode y = x̂; center mode has no x̂ term.
                norm.gradientSums(dyb.baseAddress!, xhat: yb.baseAddress!, count: n)
                gradInput.data.withUnsafeMutableBufferPointer { dxb in
                    norm.inputGradient(dyb.baseAddress!, xhat: yb.baseAddress!, count: n, training: lastTraining,
                                       gain: nil, useXhatTerm: mode == .standardize, dx: dxb.baseAddress!)
                }
            }
        }
        return gradInput
    }
}
