/// Per-channel statistics over all leading axes of a channels-last tensor
/// (rows = B·H·W for images, B for flat features); sums in Double.
@inline(__always)
func channelMeanVariance(_ x: UnsafePointer<Float>, rows: Int, channels c: Int,
                         mean: UnsafeMutablePointer<Double>, variance: UnsafeMutablePointer<Double>) {
    for ch in 0..<c { mean[ch] = 0; variance[ch] = 0 }
    var p = x
    for _ in 0..<rows {
        for ch in 0..<c {
            let v = Double(p[ch])
            mean[ch] += v
            variance[ch] += v * v
        }
        p += c
    }
    let inv = 1 / Double(rows)
    for ch in 0..<c {
        let m = mean[ch] * inv
        mean[ch] = m
        // E[x²] − E[x]² in Double: the cancellation costs nothing visible at
        // float precision unless |mean| ≫ std by ~10⁴.
        variance[ch] = max(variance[ch] * inv - m * m, 0)
    }
}

/// Σ_rows dy and Σ_rows dy·x̂ per channel (the two reductions of every
/// normalisation backward).
@inline(__always)
func channelGradientSums(_ dy: UnsafePointer<Float>, _ xhat: UnsafePointer<Float>, rows: Int, channels c: Int,
                         sumDy: UnsafeMutablePointer<Double>, sumDyXhat: UnsafeMutablePointer<Double>) {
    for ch in 0..<c { sumDy[ch] = 0; sumDyXhat[ch] = 0 }
    var g = dy, h = xhat
    for _ in 0..<rows {
        for ch in 0..<c {
            let d = Double(g[ch])
            sumDy[ch] += d
            sumDyXhat[ch] += d * Double(h[ch])
        }
        g += c; h += c
    }
}

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
public final class BatchNorm: Layer {
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
    /// Per channel: mean, variance, 1/√(var+ε) of the last forward, then the
    /// two gradient sums in backward.
    private let stats = Workspace<Double>()
    private var lastTraining = false

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
        stats.reserve(5 * channels)
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
    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        precondition(x.rank >= 2 && x.shape.last == channels,
                     "\(name): expects B×…×\(channels), got \(x.shape)")
        let c = channels, rows = x.count / c
        precondition(!training || rows > 1, "\(name): training needs more than one value per channel")
        lastTraining = training
        output.reuse(shape: x.shape)
        let xh = xhat.reserve(x.count).baseAddress!
        let st = stats.buffer.baseAddress!
        let mean = st, variance = st + c, invStd = st + 2 * c
        x.data.withUnsafeBufferPointer { xb in
            let xp = xb.baseAddress!
            if training {
                channelMeanVariance(xp, rows: rows, channels: c, mean: mean, variance: variance)
                updateRunning(&runningMean.value, &runningVar.value, mean: mean, variance: variance,
                              rows: rows, momentum: momentum)
            } else {
                for ch in 0..<c { mean[ch] = Double(runningMean.value[ch]); variance[ch] = Double(runningVar.value[ch]) }
            }
            for ch in 0..<c { invStd[ch] = 1 / (variance[ch] + Double(eps)).squareRoot() }
            normalize(xp, xh, rows: rows, mean: mean, invStd: invStd)
        }
        weight.value.withUnsafeBufferPointer { g in
            bias.value.withUnsafeBufferPointer { bt in
                output.data.withUnsafeMutableBufferPointer { yb in
                    var y = yb.baseAddress!, h = UnsafePointer(xh)
                    for _ in 0..<rows {
                        for ch in 0..<c { y[ch] = g[ch] * h[ch] + bt[ch] }
                        y += c; h += c
                    }
                }
            }
        }
        return output
    }

    private func normalize(_ x: UnsafePointer<Float>, _ xh: UnsafeMutablePointer<Float>, rows: Int,
                           mean: UnsafePointer<Double>, invStd: UnsafePointer<Double>) {
        let c = channels
        // Float copies of the per-channel constants keep the row loop in
        // float SIMD.
        let mf = UnsafeMutablePointer<Float>.allocate(capacity: 2 * c)
        defer { mf.deallocate() }
        for ch in 0..<c { mf[ch] = Float(mean[ch]); mf[c + ch] = Float(invStd[ch]) }
        var src = x, dst = xh
        for _ in 0..<rows {
            for ch in 0..<c { dst[ch] = (src[ch] - mf[ch]) * mf[c + ch] }
            src += c; dst += c
        }
    }

    // dy: B×…×C → dx: same shape; dγ, dβ accumulate
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        let c = channels, rows = output.count / c
        gradInput.reuse(shape: output.shape)
        let st = stats.buffer.baseAddress!
        let invStd = st + 2 * c, sumDy = st + 3 * c, sumDyXhat = st + 4 * c
        let xh = UnsafePointer(xhat.buffer.baseAddress!)
        let coef = UnsafeMutablePointer<Float>.allocate(capacity: 3 * c)
        defer { coef.deallocate() }
        gradOutput.data.withUnsafeBufferPointer { dyb in
            let dy = dyb.baseAddress!
            channelGradientSums(dy, xh, rows: rows, channels: c, sumDy: sumDy, sumDyXhat: sumDyXhat)
            weight.grad.withUnsafeMutableBufferPointer { dg in
                bias.grad.withUnsafeMutableBufferPointer { db in
                    for ch in 0..<c { dg[ch] += Float(sumDyXhat[ch]); db[ch] += Float(sumDy[ch]) }
                }
            }
            // dx = a·dy − b − x̂·d per channel.
            let n = Double(rows)
            for ch in 0..<c {
                let a = Double(weight.value[ch]) * invStd[ch]
                coef[ch] = Float(a)
                coef[c + ch] = lastTraining ? Float(a * sumDy[ch] / n) : 0
                coef[2 * c + ch] = lastTraining ? Float(a * sumDyXhat[ch] / n) : 0
            }
            gradInput.data.withUnsafeMutableBufferPointer { dxb in
                var g = dy, h = xh, dx = dxb.baseAddress!
                for _ in 0..<rows {
                    for ch in 0..<c { dx[ch] = coef[ch] * g[ch] - coef[c + ch] - h[ch] * coef[2 * c + ch] }
                    g += c; h += c; dx += c
                }
            }
        }
        return gradInput
    }
}

/// Per-channel standardisation without affine parameters, N(s) of the
/// SubDistill layer loss (METHODS.md, "SubDistill layer loss"), over the
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
    private let stats = Workspace<Double>()
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
        stats.reserve(5 * channels)
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
        let c = channels, rows = x.count / c
        precondition(!training || rows > 1, "\(name): training needs more than one value per channel")
        lastTraining = training
        output.reuse(shape: x.shape)
        let st = stats.buffer.baseAddress!
        let mean = st, variance = st + c, invStd = st + 2 * c
        let mf = UnsafeMutablePointer<Float>.allocate(capacity: 2 * c)
        defer { mf.deallocate() }
        x.data.withUnsafeBufferPointer { xb in
            let xp = xb.baseAddress!
            if training {
                channelMeanVariance(xp, rows: rows, channels: c, mean: mean, variance: variance)
                updateRunning(&runningMean.value, &runningVar.value, mean: mean, variance: variance,
                              rows: rows, momentum: momentum)
            } else {
                for ch in 0..<c { mean[ch] = Double(runningMean.value[ch]); variance[ch] = Double(runningVar.value[ch]) }
            }
            for ch in 0..<c {
                invStd[ch] = mode == .center ? 1 : 1 / (variance[ch] + Double(eps)).squareRoot()
                mf[ch] = Float(mean[ch]); mf[c + ch] = Float(invStd[ch])
            }
            output.data.withUnsafeMutableBufferPointer { yb in
                var src = xp, dst = yb.baseAddress!
                for _ in 0..<rows {
                    for ch in 0..<c { dst[ch] = (src[ch] - mf[ch]) * mf[c + ch] }
                    src += c; dst += c
                }
            }
        }
        return output
    }

    // dy: B×…×C → dx: same shape
    public func backward(_ gradOutput: Tensor) -> Tensor {
        precondition(gradOutput.shape == output.shape,
                     "\(name): gradient shape \(gradOutput.shape) ≠ output shape \(output.shape)")
        let c = channels, rows = output.count / c
        gradInput.reuse(shape: output.shape)
        let st = stats.buffer.baseAddress!
        let invStd = st + 2 * c, sumDy = st + 3 * c, sumDyY = st + 4 * c
        let coef = UnsafeMutablePointer<Float>.allocate(capacity: 3 * c)
        defer { coef.deallocate() }
        output.data.withUnsafeBufferPointer { yb in
            gradOutput.data.withUnsafeBufferPointer { dyb in
                let dy = dyb.baseAddress!, y = yb.baseAddress!
                // In standardize mode y = x̂; in center mode the x̂ term is absent.
                channelGradientSums(dy, y, rows: rows, channels: c, sumDy: sumDy, sumDyXhat: sumDyY)
                let n = Double(rows)
                for ch in 0..<c {
                    coef[ch] = Float(invStd[ch])
                    coef[c + ch] = lastTraining ? Float(invStd[ch] * sumDy[ch] / n) : 0
                    coef[2 * c + ch] = lastTraining && mode == .standardize ? Float(invStd[ch] * sumDyY[ch] / n) : 0
                }
                gradInput.data.withUnsafeMutableBufferPointer { dxb in
                    var g = dy, h = y, dx = dxb.baseAddress!
                    for _ in 0..<rows {
                        for ch in 0..<c { dx[ch] = coef[ch] * g[ch] - coef[c + ch] - h[ch] * coef[2 * c + ch] }
                        g += c; h += c; dx += c
                    }
                }
            }
        }
        return gradInput
    }
}
